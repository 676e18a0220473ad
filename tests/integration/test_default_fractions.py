"""An artifact written under the earlier default split fractions still gates under the new default."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from pytest_opro.prompts.splits import EARLIER_DEFAULT_FRACTIONS
from tests.support.lucky_task import CONFTEST_HEAD

REPO = Path(__file__).resolve().parents[2]

CONFTEST = (
    CONFTEST_HEAD
    + """

def scorer(messages):
    text = "\\n".join(m["content"] for m in messages)
    question = next(q for q in TARGETS if q in text)
    return TARGETS[question] if int(question.split()[1]) % 3 else "I am not sure."


@pytest.fixture
def lucky_task():
    install(FakeBrain(scorer=scorer, optimizer=["<INS>Think.</INS>"]))
    fractions = json.loads(os.environ["OPRO_TEST_FRACTIONS"])  # null: the task leaves the default
    split = {{"fractions": tuple(fractions)}} if fractions else {{}}
    return PromptTask(name="lucky", examples=examples_from_records(ROWS), metric="choice", scorer="fake/scorer",
                      optimizer="fake/optimizer", initial_instruction="Answer.",
                      settings={{"max_steps": 1, "candidates": 1, "patience": 0}}, **split)
"""
)


@pytest.fixture
def project(pytester: pytest.Pytester, inline_ready: None) -> pytest.Pytester:
    pytester.makeconftest(CONFTEST.format(repo=str(REPO)))
    pytester.makepyfile(test_lucky="def test_lucky(opro, lucky_task):\n    opro.check(lucky_task)\n")
    return pytester


def run(pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch, fractions: object, *args: str) -> pytest.RunResult:
    monkeypatch.setenv("OPRO_TEST_FRACTIONS", json.dumps(fractions))
    return pytester.runpytest("-p", "no:cacheprovider", "--opro-cache=off", *args)


def test_an_artifact_under_the_earlier_default_gates_unchanged(
    project: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    # written as the earlier default split it (the task then left the fractions at that default)
    written = run(project, monkeypatch, EARLIER_DEFAULT_FRACTIONS[0], "--opro-optimize", "--opro-allow-no-gain")
    written.assert_outcomes(passed=1)
    artifact = yaml.safe_load((project.path / "__opro__" / "lucky.yaml").read_text(encoding="utf-8"))
    assert artifact["scores"]["validation"]["n"] == 20  # 100 examples at 30 / 20 / 50

    # the same task on today's default: not stale, gated on the same 50 test examples
    gate = run(project, monkeypatch, None, "--opro-report=g.json")
    gate.assert_outcomes(passed=1)
    assert "stale" not in gate.stdout.str()
    [task] = json.loads((project.path / "g.json").read_text(encoding="utf-8"))["tasks"]
    assert task["status"] == "passed" and task["gate"]["n"] == 50

    # a task that sets other fractions of its own is compared with its own split: stale
    other = run(project, monkeypatch, [0.2, 0.3, 0.5])
    other.assert_outcomes(failed=1)
    other.stdout.fnmatch_lines(["*is stale: changed since it was written: train examples, validation examples*"])
