"""Answer collapse: flagged in the progress line, the terminal summary, the reports, the artifact and the gate."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from pytest_opro.opro.collapse import collapse, distribution

REPO = Path(__file__).resolve().parents[2]

CONFTEST = """
import json
import os
import sys

sys.path.insert(0, {repo!r})

import pytest
from pytest_opro import PromptTask
from pytest_opro.prompts.examples import examples_from_records
from tests.support.fake_provider import FakeBrain, install

ROWS = [{{"id": f"q{{i:03d}}", "input": f"Is {{i}} a lucky number?", "target": "yes" if i % 2 else "no",
         "choices": ["yes", "no"]}} for i in range(100)]
TARGETS = {{r["input"]: r["target"] for r in ROWS}}


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
    flag = 'answers "yes" to 20 of 20'
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
        flagged["text"] == "Always say yes." and flagged["answer"] == "yes" and flagged["count"] == flagged["n"] == 20
    )
    assert task["steps"][0]["collapsed"][0]["share"] == 1.0
    assert next(c for c in task["candidates"] if c["text"] == "Always say yes.")["top_answer"]["share"] == 1.0
    # the artifact
    artifact = yaml.safe_load((suite.path / "__opro__" / "lucky.yaml").read_text(encoding="utf-8"))
    assert artifact["collapse"]["candidates"][0]["answer"] == "yes"
    assert artifact["collapse"]["winner"] == {"validation": None, "test": None}  # "Think." answers both labels
    assert artifact["answers"]["winner"]["test"] == {"no": 25, "yes": 25}
    top = {c["text"]: c for c in artifact["top_candidates"]}
    assert top["Always say yes."]["top_answer"] == {"answer": "yes", "count": 20, "n": 20, "share": 1.0}
    # the markdown report
    md = run(suite, "--opro-optimize", "--opro-report=r.md")
    md.assert_outcomes(passed=1)
    text = (suite.path / "r.md").read_text(encoding="utf-8")
    assert "- **answer collapse**: 1 validated candidate" in text and f"e.g. step 1: {flag} on validation" in text
    assert "| yes 20/20 |" in text


def test_a_collapsed_winner_is_flagged_and_the_gate_says_so(suite: pytest.Pytester, monkeypatch) -> None:
    # the baseline answers nothing; "always yes" is right on every yes-example: a real, significant gain
    monkeypatch.setenv("OPRO_FAKE_SCRIPT", json.dumps(["<INS>Always say yes.</INS>"]))
    result = run(suite, "--opro-optimize")
    result.assert_outcomes(passed=1)
    result.stdout.fnmatch_lines(
        [
            '*answer collapse: the shipped instruction answers "yes" to 20 of 20 on validation, '
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
