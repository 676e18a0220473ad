"""The live scoring line: its text, how often it is written on a terminal and elsewhere, and -q."""

from __future__ import annotations

import re

import pytest

from pytest_opro.models.client import BatchProgress
from pytest_opro.plugin.progress import PLAIN_INTERVAL, TTY_INTERVAL, ScoringLine, scoring_text


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def run_pass(line: ScoringLine, clock: Clock, total: int, seconds_per_call: float, role: str = "scorer") -> None:
    """A batch of `total` calls answered one after another, `seconds_per_call` apart."""
    line(BatchProgress(role, 0, total, 0.0))
    for done in range(1, total + 1):
        clock.now += seconds_per_call
        line(BatchProgress(role, done, total, done * seconds_per_call))


def test_the_text_says_calls_time_and_time_left() -> None:
    assert scoring_text(BatchProgress("scorer", 120, 400, 35.0)) == "scoring 120/400 calls, 35 s, ~82 s left"
    assert scoring_text(BatchProgress("scorer", 0, 400, 0.2)) == "scoring 0/400 calls, 0 s"


def test_on_a_terminal_the_line_is_rewritten_a_few_times_a_second_and_erased_at_the_end() -> None:
    clock, rewrites, lines = Clock(), [], []
    line = ScoringLine(rewrites.append, lines.append, tty=True, clock=clock)
    run_pass(line, clock, total=400, seconds_per_call=0.01)  # 4 s of calls, one every 10 ms
    assert lines == []
    shown = [r for r in rewrites if r]
    assert 4 / TTY_INTERVAL - 2 <= len(shown) <= 4 / TTY_INTERVAL  # at most every TTY_INTERVAL, not per call
    assert re.fullmatch(r"scoring 2[56]/400 calls, 0 s, ~4 s left", shown[0]) and rewrites[-1] == ""


def test_elsewhere_a_plain_line_at_most_every_30_seconds() -> None:
    clock, rewrites, lines = Clock(), [], []
    line = ScoringLine(rewrites.append, lines.append, tty=False, clock=clock)
    run_pass(line, clock, total=100, seconds_per_call=0.2)  # a 20 s pass: nothing to say
    assert lines == []
    run_pass(line, clock, total=400, seconds_per_call=0.5)  # 200 s
    assert rewrites == [] and len(lines) == int(200 // PLAIN_INTERVAL)
    assert lines[0] == "scoring 60/400 calls, 30 s, ~170 s left"


def test_only_scorer_batches_make_a_line() -> None:
    clock, rewrites, lines = Clock(), [], []
    line = ScoringLine(rewrites.append, lines.append, tty=True, clock=clock)
    run_pass(line, clock, total=50, seconds_per_call=1.0, role="optimizer")
    assert rewrites == lines == []


PROMPT_TEST = """
import pathlib, sys
sys.path.insert(0, {repo!r})
from pytest_opro import PromptTask, load_examples
from tests.support.fake_provider import FakeBrain, install


def test_sports(opro):
    examples = load_examples(pathlib.Path(__file__).parent / "sports.jsonl")
    brain = install(FakeBrain())
    brain.learn(examples)
    brain.latency = 0.05  # seconds per call, one call at a time: passes of a few seconds
    opro.check(PromptTask(name="sports", examples=examples, scorer="fake/scorer", optimizer="fake/optimizer",
                          metric="choice", settings={{"max_steps": 1, "select_alpha": 1, "screening": "off"}}))
"""


FASTER_PLAIN_LINES = """
import pytest_opro.plugin.progress

pytest_opro.plugin.progress.PLAIN_INTERVAL = 1.0  # a plain line a second at most, not every 30
"""


@pytest.mark.parametrize("quiet", [False, True])
def test_a_run_without_a_terminal_prints_no_scoring_flood_and_q_quiets_it(
    pytester: pytest.Pytester, quiet: bool
) -> None:
    from tests.plugin.test_plugin import OTHER_PLUGINS_OFF, REPO, example_lines

    pytester.path.joinpath("sports.jsonl").write_text(example_lines(30), encoding="utf-8")
    pytester.makeconftest(FASTER_PLAIN_LINES)
    pytester.makepyfile(test_sports=PROMPT_TEST.format(repo=str(REPO)))
    args = ["--opro-optimize", "--opro-cache=off", "--opro-concurrency=1", *OTHER_PLUGINS_OFF] + (
        ["-q"] if quiet else []
    )
    result = pytester.runpytest_subprocess(*args)  # output to a pipe: not a terminal
    result.assert_outcomes(passed=1)
    scoring = [line for line in result.outlines if line.startswith("scoring ")]
    if quiet:
        assert scoring == []
    else:
        assert scoring and all(re.fullmatch(r"scoring \d+/\d+ calls, \d+ s(, ~\d+ s left)?", s) for s in scoring)
        assert len(scoring) < 30  # at most one a second here, never one per call
