"""The gate's decision, its message, fingerprint comparison and the paired sign test."""

from __future__ import annotations

import math
from dataclasses import replace

import pytest
from hypothesis import given
from hypothesis import strategies as st

from pytest_opro import PromptTask
from pytest_opro.opro.stats import sign_test_one_sided
from pytest_opro.prompts.examples import examples_from_records
from pytest_opro.prompts.gate import FINGERPRINT_LABELS, GateDecision, decide, stale_for, stale_parts
from pytest_opro.prompts.splits import DEFAULT_FRACTIONS, EARLIER_DEFAULT_FRACTIONS


def outcomes(n: int, wrong: range | list[int] = ()) -> dict[str, float]:
    """`n` examples e000.. all right except the indices in `wrong`."""
    bad = set(wrong)
    return {f"e{i:03d}": 0.0 if i in bad else 1.0 for i in range(n)}


# -- sign test ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "worse, better, expected",
    [
        (0, 0, 1.0),
        (0, 5, 1.0),
        (1, 0, 0.5),
        (5, 0, 1 / 32),
        (6, 0, 1 / 64),
        (2, 1, 4 / 8),  # P(X >= 2), X ~ Bin(3, 1/2) = (3 + 1) / 8
        (8, 2, 56 / 1024),  # (45 + 10 + 1) / 1024
        (5, 5, 638 / 1024),
    ],
)
def test_sign_test_exact_values(worse: int, better: int, expected: float) -> None:
    assert sign_test_one_sided(worse, better) == pytest.approx(expected)


@given(st.integers(0, 60), st.integers(0, 60))
def test_sign_test_is_a_tail_probability(worse: int, better: int) -> None:
    p = sign_test_one_sided(worse, better)
    assert 0.0 < p <= 1.0
    n = worse + better
    if worse:
        direct = sum(math.comb(n, k) for k in range(worse, n + 1)) / 2**n
        assert p == pytest.approx(direct)
    # one more flip to worse never makes the drop look less significant
    assert sign_test_one_sided(worse + 1, better) <= p + 1e-12


# -- decide ------------------------------------------------------------------------------------


def test_unchanged_outcomes_pass() -> None:
    rec = outcomes(30, wrong=[3, 4])
    decision = decide(rec, dict(rec))
    assert decision.passed and decision.verdict == "pass"
    assert decision.recorded == decision.now == pytest.approx(28 / 30)
    assert decision.delta == 0 and decision.p_value == 1.0 and decision.n == 30
    assert decision.worse_ids == [] and decision.better_ids == []


def test_significant_drop_beyond_tolerance_fails() -> None:
    decision = decide(outcomes(20), outcomes(20, wrong=range(6)), tolerance=0.02, alpha=0.05)
    assert not decision.passed and decision.verdict == "regression"
    assert decision.delta == pytest.approx(-0.3)
    assert decision.p_value == pytest.approx(1 / 64)
    assert decision.worse_ids == [f"e{i:03d}" for i in range(6)]


def test_drop_that_is_not_significant_passes() -> None:
    # 3 of 20 flipped (-15 points) but p = 1/8: could be noise
    decision = decide(outcomes(20), outcomes(20, wrong=range(3)), tolerance=0.02, alpha=0.05)
    assert decision.passed and decision.verdict == "pass"
    assert decision.p_value == pytest.approx(0.125)


def test_significant_drop_within_tolerance_passes() -> None:
    # 6 of 400 flipped: significant (p = 1/64) but only 1.5 points
    decision = decide(outcomes(400), outcomes(400, wrong=range(6)), tolerance=0.02)
    assert decision.p_value < 0.05
    assert decision.passed and decision.verdict == "pass"
    assert not decide(outcomes(400), outcomes(400, wrong=range(6)), tolerance=0.01).passed


def test_drop_of_exactly_the_tolerance_passes() -> None:
    # 5 of 250 flipped = exactly 2.0 points; float arithmetic gives 0.020000000000000018
    decision = decide(outcomes(250), outcomes(250, wrong=range(5)), tolerance=0.02)
    assert decision.p_value < 0.05
    assert decision.passed, decision.message("t")
    assert not decide(outcomes(250), outcomes(250, wrong=range(6)), tolerance=0.02).passed


def test_alpha_is_respected() -> None:
    rec, now = outcomes(20), outcomes(20, wrong=range(5))  # p = 1/32
    assert not decide(rec, now, alpha=0.05).passed
    assert decide(rec, now, alpha=0.01).passed


def test_improvement_passes_with_its_own_verdict() -> None:
    decision = decide(outcomes(20, wrong=range(8)), outcomes(20, wrong=[0]))
    assert decision.passed and decision.verdict == "improved"
    assert decision.delta == pytest.approx(0.35)
    assert decision.better_ids == [f"e{i:03d}" for i in range(1, 8)]


def test_mixed_flips_are_paired() -> None:
    rec = outcomes(20, wrong=range(10, 12))
    now = outcomes(20, wrong=range(0, 8))  # 8 right->wrong, 2 wrong->right
    decision = decide(rec, now)
    assert len(decision.worse_ids) == 8 and len(decision.better_ids) == 2
    assert decision.p_value == pytest.approx(56 / 1024)
    assert decision.passed  # p = 0.055 > 0.05


def test_floor_fails_even_without_a_drop() -> None:
    rec = outcomes(10, wrong=range(5))
    decision = decide(rec, dict(rec), floor=0.6)
    assert not decision.passed and decision.verdict == "below floor"
    assert "under the floor 60.0%" in decision.message("t")
    assert decide(rec, dict(rec), floor=0.5).passed


def test_only_shared_ids_are_compared() -> None:
    rec = {"a": 1.0, "b": 1.0, "gone": 0.0}
    now = {"a": 1.0, "b": 0.0, "new": 1.0}
    decision = decide(rec, now)
    assert decision.n == 2 and decision.recorded == 1.0 and decision.now == 0.5
    assert decision.worse_ids == ["b"]


def test_graded_outcomes() -> None:
    rec = {"a": 0.5, "b": 1.0}
    now = {"a": 0.25, "b": 1.0}
    decision = decide(rec, now)
    assert decision.worse_ids == ["a"]
    assert decision.delta == pytest.approx(-0.125)


def test_graded_scores_rounded_by_the_artifact_are_not_a_change() -> None:
    """The artifact keeps 4 decimals: a fresh 2/3 equals its recorded 0.6667, so nothing flipped."""
    fresh = {f"e{i}": (2 / 3 if i % 2 else 1 / 3) for i in range(24)}
    recorded = {k: round(v, 4) for k, v in fresh.items()}
    d = decide(recorded, fresh)
    assert (d.worse_ids, d.better_ids, d.p_value, d.delta) == ([], [], 1.0, 0.0)
    # a real change at the fourth decimal still counts
    fresh["e1"] = 0.6665
    assert decide(recorded, fresh).worse_ids == ["e1"]


def test_failure_message_names_scores_delta_p_n_and_ids() -> None:
    decision = decide(outcomes(40), outcomes(40, wrong=range(12)), tolerance=0.02, alpha=0.05)
    text = decision.message("sports")
    lines = text.splitlines()
    assert lines[0] == "opro gate FAILED for task 'sports': accuracy dropped"
    assert lines[1].strip() == "recorded 100.0% -> now 70.0%  (delta -30.0 points, n=40)"
    assert "12 right->wrong, 0 wrong->right, one-sided p=0.000244" in lines[2]
    assert "fails when p < 0.05 and drop > 2 points" in lines[2]
    # the first ten flipped ids, then an ellipsis
    assert (
        lines[3].strip() == "first ids that flipped right->wrong: " + ", ".join(f"e{i:03d}" for i in range(10)) + " ..."
    )
    assert "pytest --opro-optimize" in lines[4]


def test_passing_message_has_no_rerun_hint() -> None:
    text = decide(outcomes(10), outcomes(10)).message("sports")
    assert text.splitlines()[0] == "opro gate passed for task 'sports'"
    assert "re-run" not in text and "flipped" not in text


def test_decision_round_trips_as_plain_data() -> None:
    decision = decide(outcomes(10), outcomes(10, wrong=[1]))
    data = decision.to_dict()
    assert GateDecision(**data) == decision
    assert data["worse_ids"] == ["e001"]


# -- stale_parts -------------------------------------------------------------------------------


FINGERPRINT = {
    "template": "t1",
    "examples_train": "a",
    "examples_validation": "b",
    "examples_test": "c",
    "metric": "choice@1",
    "scorer_model": "fake/scorer",
    "scorer_params": "p1",
}


def test_identical_fingerprints_are_not_stale() -> None:
    assert stale_parts(FINGERPRINT, dict(FINGERPRINT)) == []


def test_stale_parts_name_what_changed() -> None:
    now = dict(FINGERPRINT, template="t2", examples_test="c2", scorer_model="openai/gpt-4o-mini", metric="exact@1")
    assert stale_parts(FINGERPRINT, now) == [
        "test examples",
        "metric (choice@1 -> exact@1)",
        "scorer model (fake/scorer -> openai/gpt-4o-mini)",
        "template (or position / system prompt)",
    ]


def test_stale_parts_keys_present_on_one_side_only() -> None:
    old = dict(FINGERPRINT)
    del old["scorer_params"]
    assert stale_parts(old, FINGERPRINT) == [FINGERPRINT_LABELS["scorer_params"]]
    assert stale_parts(dict(FINGERPRINT, extra="x"), FINGERPRINT) == ["extra"]


# -- artifacts recorded under an earlier default of the split fractions -------------------------


def _labelled_task(**split: object) -> PromptTask:
    rows = [
        {
            "id": f"q{i:03d}",
            "input": f"Is {i} lucky?",
            "target": ("yes", "no", "maybe")[i % 3],
            "choices": ["yes", "no", "maybe"],
        }
        for i in range(120)
    ]
    return PromptTask(
        name="lucky", examples=examples_from_records(rows), metric="choice", scorer="fake/scorer", **split
    )  # type: ignore[arg-type]


@pytest.mark.parametrize("stratify", ["auto", False])
def test_an_artifact_under_the_earlier_default_fractions_is_still_current(stratify: object) -> None:
    task = _labelled_task(stratify=stratify)
    assert task.default_fractions and DEFAULT_FRACTIONS != EARLIER_DEFAULT_FRACTIONS[0]
    earlier = replace(task, fractions=EARLIER_DEFAULT_FRACTIONS[0])
    scorer = task.scorer_config()
    recorded = earlier.fingerprint(scorer)  # what an artifact written before the change holds
    # train and validation moved; test, the split the gate scores, did not
    assert stale_parts(recorded, task.fingerprint(scorer)) == ["train examples", "validation examples"]
    assert [e.id for e in task.splits.test] == [e.id for e in earlier.splits.test]
    assert stale_for(task, recorded, lambda t: t.fingerprint(scorer)) == []
    assert stale_for(task, task.fingerprint(scorer), lambda t: t.fingerprint(scorer)) == []


def test_explicit_fractions_and_real_changes_are_still_stale() -> None:
    scorer = _labelled_task().scorer_config()
    recorded = _labelled_task(fractions=EARLIER_DEFAULT_FRACTIONS[0]).fingerprint(scorer)
    # a task that set its own fractions is compared with its own split only
    own = _labelled_task(fractions=(0.2, 0.3, 0.5))
    assert not own.default_fractions and stale_for(own, recorded, lambda t: t.fingerprint(scorer)) == [
        "train examples",
        "validation examples",
    ]
    # a default-fraction task whose test examples changed is stale whatever the fractions
    changed = dict(recorded, examples_test="0" * 16)
    assert "test examples" in stale_for(_labelled_task(), changed, lambda t: t.fingerprint(scorer))
