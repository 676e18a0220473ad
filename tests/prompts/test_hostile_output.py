"""Hostile and odd model output is plain data: never rendered, formatted or executed.

Odd candidates are rejected with a counted reason; extraction and metrics never crash or hang.
"""

from __future__ import annotations

import time

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pytest_opro import PromptTask, metrics, optimize
from pytest_opro.errors import MetricError
from pytest_opro.opro.trajectory import normalise
from pytest_opro.prompts.artifact import artifact_from_result, load_artifact, write_artifact
from pytest_opro.prompts.examples import Example, examples_from_records
from pytest_opro.prompts.extraction import extract_instruction, strip_invisible
from tests.support.loop_brain import make_records

JINJA = "{{ 7*7 }}"
LOOP = "{% for x in range(3) %}loop{% endfor %}"
BRACES = "Use {0} and {input} and {{instruction}} braces, %s %(name)s"
UNICODE = "Réponds 😀 étape par étape, 一步一步, ﷽"
ZERO_WIDTH = "\u200b\u200d\ufeff\u2060"
HOSTILE_REPLIES = [
    f"<INS>{JINJA}</INS>",
    f"<INS>{LOOP}</INS>",
    f"<INS>{BRACES}</INS>",
    f"<INS>{UNICODE}</INS>",
    f"<INS>{ZERO_WIDTH}</INS>",  # only invisible characters: empty
    "x" * 100_000,  # 100 KB without tags: too long
    "<INS>outer <INS>inner</INS> tail</INS>",  # nested
    "<INS>unclosed tail with {{ x }}",  # unclosed
    f"<INS>{JINJA}{ZERO_WIDTH}</INS>",  # the first one again behind zero-width characters
]
ACCEPTED = [JINJA, LOOP, BRACES, UNICODE, "outer inner", "unclosed tail with {{ x }}"]


@pytest.fixture
def hostile_run(fake_llm, tmp_path):
    records = make_records(20, "h")
    fake_llm.learn(examples_from_records(records))
    fake_llm.optimizer = HOSTILE_REPLIES
    task = PromptTask(
        name="hostile",
        examples=examples_from_records(records),
        metric="choice",
        scorer="fake/scorer",
        optimizer="fake/optimizer",
        settings={"max_steps": 2, "candidates": len(HOSTILE_REPLIES), "patience": 0},
    )
    result = optimize(task, cache=None)
    return fake_llm, result


def test_odd_candidates_are_rejected_with_counted_reasons(hostile_run):
    _, result = hostile_run
    step1 = [c for c in result.trajectory if c.step == 1]
    assert sorted(c.text for c in step1 if c.rejection is None) == sorted(ACCEPTED)
    assert {r: sum(1 for c in step1 if c.rejection == r) for r in ("empty", "too long", "duplicate")} == {
        "empty": 1,
        "too long": 1,
        "duplicate": 1,
    }
    # step 2 proposes the same texts again: everything is a duplicate or odd
    assert result.rejections == {"empty": 2, "too long": 2, "duplicate": 1 + 7}
    too_long = next(c for c in step1 if c.rejection == "too long")
    assert len(too_long.text) <= 501  # stored truncated, not 100 KB


def test_model_text_reaches_the_scorer_and_meta_prompt_verbatim(hostile_run):
    brain, _ = hostile_run
    scorer_prompts = [m[-1]["content"] for model, m in brain.log if model == "fake/scorer"]
    for text in ACCEPTED:
        assert any(p.startswith(text + "\n") for p in scorer_prompts), text  # Q_begin, literally
    assert not any("49" in p or "looploop" in p for p in scorer_prompts)
    meta_prompts = [m[-1]["content"] for model, m in brain.log if model == "fake/optimizer"]
    step2 = meta_prompts[-1]
    for text in ACCEPTED:
        assert f"\n{text}\n" in step2, text  # shown in the trajectory as written
    assert "looploop" not in step2 and "\n49\n" not in step2


def test_hostile_instruction_survives_the_artifact_roundtrip(hostile_run, tmp_path):
    _, result = hostile_run
    data = result.to_dict()
    top = [c.to_dict() for c in result.top_candidates(10)]
    path = write_artifact(tmp_path / "hostile.yaml", artifact_from_result(data, "0", top))
    loaded = load_artifact(path).data
    assert {c["text"] for c in loaded["top_candidates"]} >= set(ACCEPTED) - {""}
    assert loaded["instruction"] == result.instruction


def test_slot_template_keeps_instruction_and_example_text_literal(fake_llm):
    records = [{"id": f"s{i}", "input": "{{ 6*7 }} {% raw %}", "target": "yes"} for i in range(1)]
    records += [{"id": f"t{i}", "input": f"plain {i} {{0}}", "target": "no"} for i in range(9)]
    task = PromptTask(
        name="slot",
        examples=examples_from_records(records),
        template="Q: {{ input }}\n{{ instruction }}",
        fractions=(0.4, 0.2, 0.4),
        split_seed=1,
    )
    example = task.examples[0]
    (message,) = task.messages("{{ input }} {% for %} {0}", example)
    assert message["content"] == "Q: {{ 6*7 }} {% raw %}\n{{ input }} {% for %} {0}"


# -- extraction: property-based -----------------------------------------------------------------
TAG = st.sampled_from(["<INS>", "</INS>", "<ins>", "</Ins>", "[", "]", "{{", "}}", "{%", "%}", ZERO_WIDTH, "\n"])
ODD_TEXT = st.lists(st.one_of(st.text(max_size=20), TAG), max_size=12).map("".join)


@settings(max_examples=300, deadline=None)
@given(ODD_TEXT)
def test_extraction_always_gives_clean_text(text):
    out = extract_instruction(text)
    assert isinstance(out, str)
    assert out == out.strip()
    assert "<ins>" not in out.lower() and "</ins>" not in out.lower()
    assert strip_invisible(out) == out


@settings(max_examples=200, deadline=None)
@given(st.text(max_size=60).filter(lambda s: "<" not in s and "[" not in s and "]" not in s), ODD_TEXT, ODD_TEXT)
def test_tagged_instruction_is_taken_verbatim(inner, before, after):
    clean = strip_invisible(inner).strip()
    if not clean or "<ins>" in before.lower() or "<ins" in after.lower():
        return
    assert extract_instruction(f"{before.replace('<', '')}<INS>{inner}</INS>{after}") == clean


def test_nested_and_unclosed_tags():
    assert extract_instruction("<INS><INS>nested</INS></INS>") == "nested"
    assert extract_instruction("<INS></INS><INS>second</INS>") == "second"
    assert extract_instruction("preamble <INS>unclosed") == "unclosed"
    assert extract_instruction("a </INS> b") == "a  b"
    assert extract_instruction("no tags [in brackets] here") == "in brackets"
    assert extract_instruction(ZERO_WIDTH) == ""


BIG = {
    "plain": "x" * 100_000,
    "open-tags": "<INS>" * 20_000,
    "close-tags": "</INS>" * 16_000,
    "brackets": "[" * 100_000,
    "unclosed": "<INS>" + "a" * 100_000,
    "decimals": "1." * 50_000,
    "dashes": "-" * 100_000 + "1",
    "parens": "(" * 50_000 + ")" * 50_000,
    "words": "one two " * 12_500,
    "choices": "yes no " * 14_000,
    "spaces": " " * 100_000 + "yes",
    "digits": "9" * 100_000,
}


@pytest.mark.parametrize("text", list(BIG.values()), ids=list(BIG))
def test_100kb_outputs_are_handled_quickly(text):
    example = Example(id="e", input="q", target="42", choices=("yes", "no"))
    # CPU time of this thread, not wall time: other processes on a loaded machine do not count.
    # About 0.1-0.2 s each; quadratic (or regex backtracking) work on 100 kB would take minutes.
    start = time.thread_time()
    extract_instruction(text)
    for metric in (metrics.exact, metrics.normalized, metrics.contains, metrics.numeric, metrics.choice):
        assert 0.0 <= metric(text, example) <= 1.0
    assert time.thread_time() - start < 2.0


# -- metrics: property-based ---------------------------------------------------------------------
ANY_OUTPUT = st.one_of(st.text(max_size=200), ODD_TEXT, st.from_regex(r"-?\d{1,8}([.,]\d{1,4})?( %| dollars)?"))
TARGETS = st.one_of(
    st.sampled_from(["42", "-3.5", "yes", "no", "(A)", "1,000", "zero"]), st.text(min_size=1, max_size=10)
)


@settings(max_examples=300, deadline=None)
@given(output=ANY_OUTPUT, target=TARGETS)
def test_every_metric_scores_any_output_in_unit_interval(output, target):
    if not target.strip():
        return
    example = Example(id="e", input="q", target=target, choices=("yes", "no", target), aliases=(target.upper(),))
    for metric in (
        metrics.exact,
        metrics.normalized,
        metrics.contains,
        metrics.numeric,
        metrics.choice,
        metrics.regex(r"\d+"),
    ):
        try:
            score = metric(output, example)
        except MetricError as exc:  # a bad target is the user's input error, never the output's
            assert metric is metrics.numeric and "is not a number" in str(exc) and "\n" not in str(exc)
            continue
        assert isinstance(score, float) and 0.0 <= score <= 1.0, (metric.name, output, target)


@settings(max_examples=200, deadline=None)
@given(target=st.sampled_from(["yes", "no", "42"]), noise=ODD_TEXT)
def test_exact_answer_wins_whatever_the_surrounding_text(target, noise):
    example = Example(id="e", input="q", target=target, choices=("yes", "no", "42"))
    assert metrics.exact(target, example) == 1.0
    assert metrics.normalized(f"  {target.upper()}. ", example) == 1.0
    assert normalise(noise + ZERO_WIDTH) == normalise(noise)
