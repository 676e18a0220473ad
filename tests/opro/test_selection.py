"""Choosing the winner: a paired test on validation, alpha shared by train order, and more than min_delta."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

import pytest

from pytest_opro import OptimizerSettings, PromptTask, optimize
from pytest_opro.opro.selection import CORRECTION, fixed_sequence, holm, select, train_weights, weighted_holm
from pytest_opro.prompts.artifact import artifact_from_result
from pytest_opro.prompts.examples import examples_from_records
from tests.support.fake_provider import FakeBrain

# -- the rule, on constructed outcomes ---------------------------------------------------------


@dataclass
class Cand:
    step: int
    call: int
    outcomes: dict[str, float]
    train: float | None = None

    @property
    def score(self) -> float:
        return sum(self.outcomes.values()) / len(self.outcomes)


def cand(step: int, right: set[int], n: int = 30, call: int = 0, train: float | None = None) -> Cand:
    return Cand(step, call, {f"v{i:02d}": 1.0 if i in right else 0.0 for i in range(n)}, train)


def choose(base: Cand, cands: list[Cand], alpha: float = 0.05, min_delta: float = 0.0, **kwargs):
    """`select` as the loop calls it: candidates ordered by train score when they have one."""
    order = (lambda c: c.train) if any(c.train is not None for c in cands) else None
    return select(
        base,
        cands,
        outcomes=lambda c: c.outcomes,
        score=lambda c: c.score,
        alpha=alpha,
        min_delta=min_delta,
        order=order,
        **kwargs,
    )


def test_holm_adjusted_p_values() -> None:
    assert holm([0.01, 0.04, 0.03]) == pytest.approx([0.03, 0.06, 0.06])
    assert holm([0.5]) == [0.5]
    assert holm([0.2, 0.9]) == pytest.approx([0.4, 0.9])
    assert holm([0.4, 0.4, 0.4]) == pytest.approx([1.0, 1.0, 1.0])


def test_weighted_holm_and_the_fixed_sequence() -> None:
    assert weighted_holm([0.01, 0.04, 0.03], [1, 1, 1]) == pytest.approx(holm([0.01, 0.04, 0.03]))
    # 80% of alpha on the first in train order, the rest shared: 0.03 / 0.8 = 0.0375 ...
    weights = train_weights([0, 1, 2])
    assert weights == pytest.approx([0.8, 0.1, 0.1])
    adjusted = weighted_holm([0.03, 0.004, 0.5], weights)
    # ... comes first (0.004 / 0.1 = 0.04 is larger); once it is confirmed its share passes on: the
    # second has 0.1 of the 0.2 left (0.004 * 2 = 0.008, raised to the running 0.0375), the third all of 0.1
    assert adjusted == pytest.approx([0.0375, 0.0375, 0.5])
    assert train_weights([0]) == [1.0]
    assert fixed_sequence([0.01, 0.2, 0.03], [0, 2, 1]) == pytest.approx([0.01, 0.2, 0.03])


def test_the_issue_example_keeps_the_baseline_with_the_counts() -> None:
    # 17 better, 12 worse, 1 tie of 30 (sign test p = 0.23), best of 8 candidates
    base = cand(0, set(range(12)) | {29})
    best = cand(1, set(range(12, 29)) | {29})
    others = [cand(s, set(range(10)), call=c) for s in (1, 2, 3, 4) for c in (1, 2)][:7]
    winner, selection = choose(base, [best, *others])
    assert winner is base and selection.kept_baseline
    assert selection.comparisons == 8 and selection.correction == CORRECTION
    assert selection.best.better == 17 and selection.best.worse == 12 and selection.best.n == 30
    assert selection.reason == (
        "kept the baseline: best candidate 17 better / 12 worse of 30 on validation, p=0.23 "
        "(adjusted 0.29, 1st of 8 on train, 80% of alpha; needs <0.05); "
        "about 105 validation examples would confirm a gain this size at 0.05"
    )
    assert selection.examples_needed == 105 and selection.to_dict()["examples_needed"] == 105


def test_a_real_gain_is_shipped() -> None:
    base = cand(0, set(range(10)))
    good = cand(2, set(range(22)), call=1)  # 12 better, 0 worse: p = 2^-12
    winner, selection = choose(base, [cand(1, set(range(9))), good])
    assert winner is good and not selection.kept_baseline
    assert selection.chosen.better == 12 and selection.chosen.worse == 0
    assert selection.chosen.p_value == pytest.approx(2**-12)
    assert selection.chosen.adjusted_p == pytest.approx(2**-12 / 0.2)  # second in order: 20% of alpha
    assert selection.reason.startswith(
        "shipped the step 2 candidate: 12 better / 0 worse of 30 on validation (+40.0 points)"
    )


def test_a_gain_the_holm_rule_threw_away_now_ships() -> None:
    base = cand(0, set(range(10)))
    lucky = cand(1, set(range(15)), train=0.7)  # 5 better, 0 worse: p = 1/32 = 0.031, best on train
    crowd = [lucky] + [cand(1, set(range(9)), call=c, train=0.5) for c in (1, 2, 3)]
    # the earlier rule: Holm multiplies the smallest p by the 4 compared -> 0.125, baseline kept
    winner, selection = choose(base, crowd, rule="holm")
    assert winner is base and selection.correction == "holm"
    assert "Holm-adjusted 0.12 after 4 comparisons; needs <0.05" in selection.reason
    # the default: the best on train gets 80% of alpha, 0.031 / 0.8 = 0.039 < 0.05
    winner, selection = choose(base, crowd)
    assert winner is lucky and not selection.kept_baseline
    assert selection.chosen.rank == 1 and selection.chosen.adjusted_p == pytest.approx(1 / 32 / 0.8)
    assert selection.reason == (
        "shipped the step 1 candidate: 5 better / 0 worse of 30 on validation (+16.7 points), "
        "p=0.031 adjusted 0.039 < 0.05 (1st of 4 on train, 80% of alpha)"
    )


def test_the_order_is_the_train_score_not_the_validation_score() -> None:
    base = cand(0, set(range(10)))
    lucky = cand(1, set(range(15)), train=0.4)  # p = 0.031, but last on train: 20% / 3 of alpha
    crowd = [lucky] + [cand(1, set(range(9)), call=c, train=0.6 + c / 100) for c in (1, 2, 3)]
    winner, selection = choose(base, crowd)
    assert winner is base and selection.best.rank == 4
    assert selection.best.adjusted_p == pytest.approx(min(1.0, (1 / 32) * 3 / 0.2))
    assert "4th of 4 on train, 7% of alpha; needs <0.05" in selection.reason


def test_the_false_ship_rate_of_a_null_world_stays_under_alpha() -> None:
    """Eight candidates exactly as good as the baseline, 2,000 seeded worlds: the default rule ships
    one in at most alpha of them (plus three binomial standard errors)."""
    import random

    shipped = 0
    worlds = 2000
    for seed in range(worlds):
        rng = random.Random(seed)
        easy = [rng.random() for _ in range(40)]  # examples shared by every instruction: correlated outcomes

        def outcomes(rng: random.Random = rng, easy: list[float] = easy) -> set[int]:
            return {i for i, e in enumerate(easy) if 0.7 * e + 0.3 * rng.random() > 0.5}

        base = cand(0, outcomes(), n=40)
        crowd = [cand(1 + k // 2, outcomes(), n=40, call=k % 2, train=rng.random()) for k in range(8)]
        winner, _ = choose(base, crowd)
        shipped += winner is not base
    assert shipped / worlds <= 0.05 + 3 * (0.05 * 0.95 / worlds) ** 0.5


def test_min_delta_still_applies_to_a_significant_gain() -> None:
    base = cand(0, set(range(10)), n=200)
    small = cand(1, set(range(22)), n=200)  # 12 better of 200: significant, but +6 points
    winner, selection = choose(base, [small], min_delta=0.1)
    assert winner is base
    assert "but +6.0 points is not more than min_delta 10 points" in selection.reason


def test_alpha_one_switches_the_test_off() -> None:
    base = cand(0, set(range(10)))
    one_more = cand(1, set(range(11)))
    winner, selection = choose(base, [one_more], alpha=1.0)
    assert winner is one_more and "no significance required" in selection.reason


def test_graded_scores_use_the_permutation_test() -> None:
    base = Cand(0, 0, {f"v{i}": 0.4 for i in range(12)})
    better = Cand(1, 0, {f"v{i}": 0.9 for i in range(12)})
    winner, selection = choose(base, [better])
    assert winner is better and selection.chosen.method == "permutation"
    assert selection.chosen.p_value == pytest.approx(1 / 4096)


def test_nothing_scored_on_validation_keeps_the_baseline() -> None:
    base = cand(0, set(range(10)))
    winner, selection = choose(base, [])
    assert winner is base and selection.reason == "kept the baseline: no candidate was scored on validation"


# -- the loop, with scripted providers -----------------------------------------------------------


def records(n: int = 100) -> list[dict]:
    return [
        {
            "id": f"q{i:03d}",
            "input": f"Is {i} a lucky number?",
            "target": "yes" if i % 2 else "no",
            "choices": ["yes", "no"],
        }
        for i in range(n)
    ]


def coin(*parts: str) -> bool:
    return hashlib.sha256("|".join(parts).encode()).digest()[0] % 2 == 0


def noise_scorer(targets: dict[str, str]):
    """Every instruction is right on a pseudo-random half of the examples: nothing is truly better."""

    def score(messages):
        text = "\n".join(m["content"] for m in messages)
        question = next(q for q in targets if q in text)
        instruction = text.split("\n")[0] if "\n" in text else ""
        right = coin(instruction, question)
        return targets[question] if right else ("no" if targets[question] == "yes" else "yes")

    return score


def task_over(examples) -> PromptTask:
    return PromptTask(
        name="lucky",
        examples=examples,
        metric="choice",
        template="{{ input }}",
        initial_instruction="Answer.",
        scorer="fake/scorer",
        optimizer="fake/optimizer",
    )


def test_a_noise_only_world_keeps_the_baseline(fake_llm: FakeBrain) -> None:
    examples = examples_from_records(records())
    task = task_over(examples)
    fake_llm.scorer = noise_scorer({ex.input: ex.target for ex in examples})
    settings = dict(
        max_steps=4, candidates=4, patience=0, validate_top=2, screening="off"
    )  # every candidate on all of train

    def run(**extra):
        proposed = iter(range(1000))  # the same sixteen proposals for both rules
        fake_llm.optimizer = lambda meta, n: f"<INS>Answer, variant {next(proposed)}.</INS>"
        return optimize(task, settings=OptimizerSettings(**settings, **extra), cache=None)

    assert run(select_alpha=1).improved  # the old rule: the best of eight coin-flippers beats the baseline's coin
    result = run()
    assert not result.improved and result.instruction == "Answer."
    selection = result.selection
    assert selection["kept_baseline"] and selection["comparisons"] == 8
    assert selection["best"]["better"] > selection["best"]["worse"]  # it did look better...
    assert selection["reason"].startswith(
        f"kept the baseline: best candidate {selection['best']['better']} better / {selection['best']['worse']} "
        f"worse of {len(task.splits.validation)} on validation"
    )  # ... and the summary says why it was not shipped
    assert "of 8 on train" in selection["reason"] and "needs <0.05" in selection["reason"]


def test_a_real_gain_is_accepted_and_recorded_in_the_artifact(fake_llm: FakeBrain) -> None:
    examples = examples_from_records(records())
    task = task_over(examples)
    targets = {ex.input: ex.target for ex in examples}
    base = noise_scorer(targets)

    def scorer(messages):
        text = "\n".join(m["content"] for m in messages)
        if text.startswith("Think it through."):
            return targets[next(q for q in targets if q in text)]
        return base(messages)

    fake_llm.scorer = scorer
    fake_llm.optimizer = ["<INS>Think it through.</INS>", "<INS>Answer briefly.</INS>"]
    result = optimize(task, settings=OptimizerSettings(max_steps=2, candidates=2, patience=0), cache=None)
    assert result.improved and result.instruction == "Think it through."
    chosen = result.selection["chosen"]
    assert chosen["worse"] == 0 and chosen["better"] >= 6 and chosen["adjusted_p"] < 0.05
    artifact = artifact_from_result(result.to_dict(), "test", [c.to_dict() for c in result.top_candidates(3)])
    block = artifact["selection"]
    assert block["kept_baseline"] is False and block["correction"] == CORRECTION and block["alpha"] == 0.05
    assert block["comparisons"] == result.selection["comparisons"]
    assert block["chosen"]["better"] == chosen["better"] and block["chosen"]["p_value"] == round(chosen["p_value"], 4)
