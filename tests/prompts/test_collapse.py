"""Answer collapse: flagged in the progress line, the terminal summary, the reports, the artifact and the gate."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Callable

import pytest
import yaml

from pytest_opro.opro.collapse import collapse, distribution
from tests.support.lucky_task import CONFTEST_HEAD

REPO = Path(__file__).resolve().parents[2]

CONFTEST = (
    CONFTEST_HEAD
    + """

def scorer(messages):
    text = "\\n".join(m["content"] for m in messages)
    question = next(q for q in TARGETS if q in text)
    if "Always say yes" in text:
        return "yes"
    if "Think" in text:
        return TARGETS[question]
    return "I am not sure."


@pytest.fixture
def lucky_task():
    examples = examples_from_records(ROWS, source="lucky")
    brain = install(FakeBrain(scorer=scorer))
    brain.optimizer = json.loads(os.environ["OPRO_FAKE_SCRIPT"])
    return PromptTask(name="lucky", examples=examples, metric="choice", scorer="fake/scorer",
                      optimizer="fake/optimizer", initial_instruction="Answer.",
                      settings={{"max_steps": 1, "candidates": 2, "patience": 0, "screening": "off"}})
"""
)


@pytest.fixture
def suite(pytester: pytest.Pytester, inline_ready: None) -> pytest.Pytester:
    pytester.makeconftest(CONFTEST.format(repo=str(REPO)))
    pytester.makepyfile(test_lucky="def test_lucky(opro, lucky_task):\n    opro.check(lucky_task)\n")
    return pytester


def run(pytester: pytest.Pytester, *args: str) -> pytest.RunResult:
    return pytester.runpytest("-p", "no:cacheprovider", "--opro-cache=off", *args)


def test_distribution_counts_answers_and_the_share_is_over_all_examples() -> None:
    counts = distribution(["yes"] * 26 + ["no"] * 2 + [None] * 2)
    assert counts == {"yes": 26, "no": 2}  # examples without an answer are not an answer...
    assert collapse(counts, 28) is not None  # 26 of 28 = 93%
    assert collapse(counts, 30) is None  # ... but they count in n: 26 of 30 = 87%


def test_ninety_percent_is_flagged_and_less_is_not() -> None:
    found = collapse({"plausible": 27, "implausible": 3}, 30)
    assert found is not None and found.describe() == 'answers "plausible" to 27 of 30'
    assert collapse({"plausible": 26, "implausible": 4}, 30) is None
    assert collapse({"plausible": 26, "implausible": 4}, 30, threshold=0.8) is not None
    assert collapse({}, 30) is None


def test_a_collapsed_candidate_is_flagged_everywhere(suite: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPRO_FAKE_SCRIPT", json.dumps(["<INS>Always say yes.</INS>", "<INS>Think.</INS>"]))
    result = run(suite, "--opro-optimize", "--opro-report=r.json")
    result.assert_outcomes(passed=1)
    flag = 'answers "yes" to 35 of 35'  # 100 examples: 35 on validation by default
    # the progress line of the step
    result.stdout.fnmatch_lines(
        [f"opro lucky: step 1/1 best train * | collapse: a step 1 candidate {flag} on validation"]
    )
    # the terminal summary
    result.stdout.fnmatch_lines(
        [f"*answer collapse: 1 validated candidate (≥ 90% one answer), e.g. step 1: {flag} on validation"]
    )
    # the JSON report
    [task] = json.loads((suite.path / "r.json").read_text(encoding="utf-8"))["tasks"]
    assert task["instruction"] == "Think."
    [flagged] = task["collapse"]["candidates"]
    assert (
        flagged["text"] == "Always say yes." and flagged["answer"] == "yes" and flagged["count"] == flagged["n"] == 35
    )
    assert task["steps"][0]["collapsed"][0]["share"] == 1.0
    assert next(c for c in task["candidates"] if c["text"] == "Always say yes.")["top_answer"]["share"] == 1.0
    # the artifact
    artifact = yaml.safe_load((suite.path / "__opro__" / "lucky.yaml").read_text(encoding="utf-8"))
    assert artifact["collapse"]["candidates"][0]["answer"] == "yes"
    assert artifact["collapse"]["winner"] == {"validation": None, "test": None}  # "Think." answers both labels
    assert artifact["answers"]["winner"]["test"] == {"no": 25, "yes": 25}
    top = {c["text"]: c for c in artifact["top_candidates"]}
    assert top["Always say yes."]["top_answer"] == {"answer": "yes", "count": 35, "n": 35, "share": 1.0}
    # the markdown report
    md = run(suite, "--opro-optimize", "--opro-report=r.md")
    md.assert_outcomes(passed=1)
    text = (suite.path / "r.md").read_text(encoding="utf-8")
    assert "- **answer collapse**: 1 validated candidate" in text and f"e.g. step 1: {flag} on validation" in text
    assert "| yes 35/35 |" in text


def test_a_collapsed_candidate_is_not_shipped_and_the_summary_says_why(
    suite: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    # the baseline answers nothing; "always yes" is right on every yes-example: significant, but constant
    monkeypatch.setenv("OPRO_FAKE_SCRIPT", json.dumps(["<INS>Always say yes.</INS>"]))
    result = run(suite, "--opro-optimize", "--opro-allow-no-gain", "--opro-report=r.json")
    result.assert_outcomes(passed=1)
    why = (
        "kept the baseline: the step 1 candidate was better (17 better / 0 worse of 35 on validation, p=8e-06) "
        'but its answers collapsed (it answers "yes" to 35 of 35 on validation, where the most common target covers 50%)'
    )
    result.stdout.fnmatch_lines([f"*{why}*"])
    [task] = json.loads((suite.path / "r.json").read_text(encoding="utf-8"))["tasks"]
    assert task["instruction"] == "Answer."
    [test] = task["selection"]["tests"]  # still in the report, with its counts and the reason
    assert test["better"] == 17 and test["adjusted_p"] < 0.05 and test["rejected"].startswith("its answers collapsed")
    artifact = yaml.safe_load((suite.path / "__opro__" / "lucky.yaml").read_text(encoding="utf-8"))
    assert artifact["instruction"] == "Answer." and artifact["selection"]["reason"] == why


def test_a_collapsed_winner_is_flagged_and_the_gate_says_so(suite: pytest.Pytester, monkeypatch) -> None:
    # collapse="flag" (today's behaviour before rejection): "always yes" ships, flagged everywhere
    monkeypatch.setenv("OPRO_FAKE_SCRIPT", json.dumps(["<INS>Always say yes.</INS>"]))
    result = run(suite, "--opro-optimize", "--opro-collapse=flag")
    result.assert_outcomes(passed=1)
    result.stdout.fnmatch_lines(
        [
            '*answer collapse: the shipped instruction answers "yes" to 35 of 35 on validation, '
            'and answers "yes" to 50 of 50 on test',
        ]
    )
    artifact = yaml.safe_load((suite.path / "__opro__" / "lucky.yaml").read_text(encoding="utf-8"))
    assert artifact["instruction"] == "Always say yes."
    assert artifact["collapse"]["winner"]["test"] == {"answer": "yes", "count": 50, "n": 50, "share": 1.0}
    assert artifact["selection"]["kept_baseline"] is False

    gate = run(suite, "--opro-report=g.json")
    gate.assert_outcomes(passed=1)
    gate.stdout.fnmatch_lines(['*answer collapse: the committed instruction answers "yes" to 50 of 50 on test'])
    [task] = json.loads((suite.path / "g.json").read_text(encoding="utf-8"))["tasks"]
    assert task["gate"]["collapse"]["answer"] == "yes"
    assert (
        'answer collapse: the committed instruction answers "yes" to 50 of 50 test examples; '
        "its score is that label's share of the split, not skill at the task"
    ) in task["message"]


# -- rejection on constructed tasks (scripted provider, no pytest run) ------------------------------


def _task(targets: list[str], fake_llm: Any, replies: Callable[[str, int, str], str], **settings: Any) -> Any:
    from pytest_opro import PromptTask
    from pytest_opro.prompts.examples import examples_from_records

    rows = [
        {"id": f"q{i:03d}", "input": f"Is {i} a lucky number?", "target": t, "choices": ["yes", "no"]}
        for i, t in enumerate(targets)
    ]
    by_input = {r["input"]: (i, r["target"]) for i, r in enumerate(rows)}

    def scorer(messages: list[dict[str, str]]) -> str:
        text = "\n".join(m["content"] for m in messages)
        i, target = next(v for q, v in by_input.items() if q in text)
        return replies(text.split("\n")[0], i, target)

    fake_llm.scorer = scorer
    return PromptTask(
        name="lucky",
        examples=examples_from_records(rows),
        metric="choice",
        scorer="fake/scorer",
        optimizer="fake/optimizer",
        initial_instruction="Answer.",
        counts=(20, 60, 20),
        settings={"max_steps": 1, "candidates": 2, "validate_top": 2, "patience": 0, "screening": "off", **settings},
    )


def _replies(instruction: str, i: int, target: str) -> str:
    """Baseline right on a tenth of the examples and unreadable elsewhere; "Always say yes." constant;
    "Think." right on three in ten and wrong (the other label) elsewhere: varied and truly better."""
    other = "no" if target == "yes" else "yes"
    if instruction.startswith("Always say yes"):
        return "yes"
    if instruction.startswith("Think"):
        return target if i % 10 < 3 else other
    return target if i % 10 < 1 else "I am not sure."


def test_the_varied_candidate_ships_instead_of_the_constant_one(fake_llm: Any) -> None:
    from pytest_opro import optimize

    fake_llm.optimizer = ["<INS>Always say yes.</INS>", "<INS>Think.</INS>"]
    task = _task(["yes" if i % 2 else "no" for i in range(100)], fake_llm, _replies)
    result = optimize(task, cache=None)
    assert result.instruction == "Think."  # 30% on validation, below the constant's 50%, but it varies
    tests = {t["call"]: t for t in result.selection["tests"]}
    constant = next(t for t in tests.values() if t["rejected"])
    assert constant["score"] > result.selection["chosen"]["score"] and constant["adjusted_p"] < 0.05
    assert "where the most common target covers 50%" in constant["rejected"]

    fake_llm.optimizer = ["<INS>Always say yes.</INS>", "<INS>Think.</INS>"]
    flagged = optimize(task, cache=None, settings=_settings(task, collapse="flag"))
    assert flagged.instruction == "Always say yes."  # "flag": the best validation score ships, flagged


def test_a_majority_answer_is_legitimate_when_the_targets_are_as_skewed(fake_llm: Any) -> None:
    from pytest_opro import optimize

    fake_llm.optimizer = ["<INS>Always say yes.</INS>"]
    # 95% of the targets are "yes": answering "yes" to everything is what the data asks for
    task = _task(["no" if i % 20 == 0 else "yes" for i in range(100)], fake_llm, _replies)
    result = optimize(task, cache=None)
    assert result.instruction == "Always say yes." and not result.selection["kept_baseline"]
    assert result.selection["chosen"]["rejected"] is None


def _settings(task: Any, **extra: Any) -> Any:
    from pytest_opro.prompts.optimization import settings_for

    return settings_for(task, extra)
