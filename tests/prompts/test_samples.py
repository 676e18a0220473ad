"""Repeated samples: k scorer calls per example (sample indices 0..k-1), their aggregate, the cache
replaying them call for call, the estimate, and what the fingerprint records.

The scorer is scripted and nondeterministic by sample index: the n-th identical call (n = the
sample index, since each index is asked once) answers right or wrong from a table.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Callable

import pytest

from pytest_opro import OptimizerSettings, PromptTask, metrics
from pytest_opro.errors import ConfigError
from pytest_opro.models.cache import ResponseCache
from pytest_opro.models.client import LLMClient, run_sync
from pytest_opro.models.config import ModelConfig
from pytest_opro.opro.stats import aggregate_samples
from pytest_opro.prompts.examples import examples_from_records
from pytest_opro.prompts.gate import FINGERPRINT_LABELS, decide, stale_parts
from pytest_opro.prompts.instruction_problem import score_instructions
from pytest_opro.prompts.optimization import estimate, fingerprint, run_key
from tests.support.fake_provider import FakeBrain

SCORER = ModelConfig("fake/scorer", params={"temperature": 0.7})

#: Per example: what each sample index answers (True = right). q0 always right, q3 always wrong.
TABLE = {
    "q0": (True, True, True),
    "q1": (True, True, False),
    "q2": (True, False, False),
    "q3": (False, False, False),
}


def task(counts: tuple[int, int, int] = (0, 0, len(TABLE))) -> PromptTask:
    records = [{"id": i, "input": f"Question {i}?", "target": "yes", "choices": ["yes", "no"]} for i in TABLE]
    return PromptTask(
        name="noisy",
        examples=examples_from_records(records),
        metric=metrics.choice,
        scorer=SCORER,
        counts=counts,
    )


def by_sample(table: dict[str, tuple[bool, ...]]) -> Callable[[list[dict]], str]:
    """A scorer whose n-th identical call answers from `table` (n is the sample index)."""
    seen: Counter[str] = Counter()

    def reply(messages: list[dict]) -> str:
        text = "\n".join(m["content"] for m in messages)
        n = seen[text]
        seen[text] += 1
        ex = next(i for i in table if f"Question {i}?" in text)
        return "yes" if table[ex][n % len(table[ex])] else "no"

    return reply


@pytest.mark.parametrize(
    "values, mean, all_, majority",
    [
        ([1, 1, 1], 1.0, 1.0, 1.0),
        ([1, 1, 0], 2 / 3, 0.0, 1.0),
        ([1, 0, 0], 1 / 3, 0.0, 0.0),
        ([1, 0], 0.5, 0.0, 0.0),  # a tie is not a majority
        ([0.5, 1.0, 1.0], 2.5 / 3, 0.0, 1.0),  # graded: a sample is right when it scores 1
        ([1], 1.0, 1.0, 1.0),
    ],
)
def test_aggregates(values: list[float], mean: float, all_: float, majority: float) -> None:
    assert aggregate_samples(values, "mean") == pytest.approx(mean)
    assert aggregate_samples(values, "all") == all_
    assert aggregate_samples(values, "majority") == majority
    with pytest.raises(ValueError, match="unknown aggregate"):
        aggregate_samples(values, "median")


def test_settings_check_samples_and_aggregate() -> None:
    assert OptimizerSettings(samples=5, aggregate="all").samples == 5
    with pytest.raises(ConfigError, match="samples=0"):
        OptimizerSettings(samples=0)
    with pytest.raises(ConfigError, match="aggregate='median'"):
        OptimizerSettings(aggregate="median")  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "how, outcomes",
    [
        ("mean", {"q0": 1.0, "q1": 2 / 3, "q2": 1 / 3, "q3": 0.0}),
        ("all", {"q0": 1.0, "q1": 0.0, "q2": 0.0, "q3": 0.0}),
        ("majority", {"q0": 1.0, "q1": 1.0, "q2": 0.0, "q3": 0.0}),
    ],
)
def test_each_aggregate_scores_the_samples(fake_llm: FakeBrain, how: str, outcomes: dict[str, float]) -> None:
    fake_llm.scorer = by_sample(TABLE)
    t = task()
    (score,) = run_sync(
        score_instructions(t, LLMClient(), SCORER, ["Answer."], t.splits.test, samples=3, aggregate=how)
    )
    assert score.outcomes == pytest.approx(outcomes)
    assert score.n == 4 and score.failures == 0
    assert score.value == pytest.approx(sum(outcomes.values()) / 4)
    assert fake_llm.calls["fake/scorer"] == 12


def test_samples_are_cached_by_index_and_replayed_with_no_call(fake_llm: FakeBrain, tmp_path: Path) -> None:
    fake_llm.scorer = by_sample(TABLE)
    t = task()
    cache = ResponseCache(tmp_path / "cache")
    first = run_sync(score_instructions(t, LLMClient(cache=cache), SCORER, ["Answer."], t.splits.test, samples=3))
    assert fake_llm.calls["fake/scorer"] == 12
    for ex in t.splits.test:
        messages = t.messages("Answer.", ex)
        replies = [cache.get(cache.key(SCORER.model, messages, SCORER.params, s)) for s in range(3)]
        assert [r["text"] if r else None for r in replies] == ["yes" if ok else "no" for ok in TABLE[ex.id]]
        assert cache.get(cache.key(SCORER.model, messages, SCORER.params, 3)) is None  # only 0..k-1
    replay = LLMClient(cache=cache)
    again = run_sync(score_instructions(t, replay, SCORER, ["Answer."], t.splits.test, samples=3))
    assert fake_llm.calls["fake/scorer"] == 12  # not one more call
    totals = replay.ledger.total()
    assert totals.calls == 0 and totals.cache_hits == 12
    assert again[0].outcomes == first[0].outcomes
    # one sample reads index 0 only: the same entry a one-sample run always used
    (one,) = run_sync(score_instructions(t, LLMClient(cache=cache), SCORER, ["Answer."], t.splits.test))
    assert fake_llm.calls["fake/scorer"] == 12
    assert one.outcomes == {ex_id: 1.0 if row[0] else 0.0 for ex_id, row in TABLE.items()}


def test_a_failed_sample_fails_its_example(fake_llm: FakeBrain) -> None:
    import litellm

    fake_llm.scorer = by_sample(TABLE)
    calls = Counter[str]()

    def fail(model: str, messages: list[dict]) -> BaseException | None:
        text = messages[-1]["content"]
        calls[text] += 1
        if "q1" in text and calls[text] == 2:
            return litellm.BadRequestError(message="boom", model="x", llm_provider="fake")
        return None

    fake_llm.fail = fail
    t = task()
    (score,) = run_sync(score_instructions(t, LLMClient(), SCORER, ["Answer."], t.splits.test, samples=3))
    assert set(score.outcomes or {}) == {"q0", "q2", "q3"}
    assert score.failures == 1 and "boom" in (score.error or "")


def test_estimate_multiplies_scorer_calls_by_k() -> None:
    t = task(counts=(2, 1, 1))
    opt = ModelConfig("fake/optimizer")
    one = estimate(t, OptimizerSettings(), SCORER, opt)
    three = estimate(t, OptimizerSettings(samples=3), SCORER, opt)
    assert three.scorer_calls == 3 * one.scorer_calls
    assert three.expected_scorer_calls == 3 * (one.expected_scorer_calls or 0)
    assert three.optimizer_calls == one.optimizer_calls


def test_fingerprint_records_k_and_aggregate_only_when_not_the_default() -> None:
    t = task()
    plain = t.fingerprint(SCORER)
    assert fingerprint(t, SCORER, OptimizerSettings()) == plain  # one sample: as before
    assert "samples" not in plain and "aggregate" not in plain
    assert fingerprint(t, SCORER, OptimizerSettings(samples=3)) == {**plain, "samples": "3"}
    assert fingerprint(t, SCORER, OptimizerSettings(samples=3, aggregate="all")) == {
        **plain,
        "samples": "3",
        "aggregate": "all",
    }
    opt = ModelConfig("fake/optimizer")
    assert run_key(t, SCORER, opt, OptimizerSettings()) != run_key(t, SCORER, opt, OptimizerSettings(samples=2))


def test_changing_k_or_the_aggregate_is_stale_and_an_old_artifact_reads_as_one_sample() -> None:
    t = task()
    old = t.fingerprint(SCORER)  # an artifact written before samples existed
    assert stale_parts(old, fingerprint(t, SCORER, OptimizerSettings())) == []
    assert stale_parts(old, fingerprint(t, SCORER, OptimizerSettings(samples=3))) == [
        f"{FINGERPRINT_LABELS['samples']} (1 -> 3)"
    ]
    three = fingerprint(t, SCORER, OptimizerSettings(samples=3))
    assert stale_parts(three, fingerprint(t, SCORER, OptimizerSettings())) == [
        f"{FINGERPRINT_LABELS['samples']} (3 -> 1)"
    ]
    assert stale_parts(three, fingerprint(t, SCORER, OptimizerSettings(samples=3, aggregate="majority"))) == [
        f"{FINGERPRINT_LABELS['aggregate']} (mean -> majority)"
    ]


def test_gate_message_names_k_and_uses_the_permutation_test_on_means() -> None:
    recorded = {f"e{i}": 1.0 for i in range(20)}
    now = {f"e{i}": (1 / 3 if i < 8 else 1.0) for i in range(20)}
    decision = decide(recorded, now, samples=3, aggregate="mean")
    assert decision.test == "permutation" and not decision.passed
    text = decision.message("noisy")
    assert "each example scored 3 times, mean of 3" in text
    assert decide(recorded, now).message("noisy").count("scored 3 times") == 0
    passk = decide(recorded, {i: (0.0 if v < 1 else 1.0) for i, v in now.items()}, samples=3, aggregate="all")
    assert passk.test == "sign" and "right only when all 3 are (pass^k)" in passk.message("noisy")
