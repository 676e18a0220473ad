"""Racing on train: scripted worlds where the right answer is known.

The race itself runs against scripted per-example outcomes; the loop runs the real ``optimize`` on
the fake provider (tests/support/fake_provider.py), whose scorer answers by keyword rules.
"""

from __future__ import annotations

import asyncio
import random
import re

import pytest

from pytest_opro import OptimizerSettings, optimize
from pytest_opro.models.config import Budget
from pytest_opro.opro.problem import Score
from pytest_opro.opro.racing import expected_race_calls, race, rung_sizes, stratified_order
from pytest_opro.prompts.optimization import estimate
from tests.opro.test_loop import keyword_scorer, make_examples, make_task
from tests.support.fake_provider import FakeBrain


def scripted(outcomes: dict[str, dict[str, float]], log: list[tuple[str, list[str]]] | None = None):
    """A race scorer reading fixed per-example outcomes; `log` records (text, ids) per call."""

    async def score(texts: list[str], ids: list[str]) -> list[Score]:
        out = []
        for text in texts:
            if log is not None:
                log.append((text, list(ids)))
            got = {i: outcomes[text][i] for i in ids}
            out.append(Score(sum(got.values()) / len(got), n=len(got), outcomes=got))
        return out

    return score


def run_race(outcomes, order, **kw):
    return asyncio.run(race(list(outcomes), order, scripted(outcomes), **kw))


def test_rungs_double_and_end_at_the_split() -> None:
    assert rung_sizes(30, 5) == [5, 10, 20, 30]
    assert rung_sizes(10, 10) == [10]
    assert rung_sizes(7, 5) == [5, 7]


def test_stratified_order_keeps_classes_in_proportion_in_every_prefix() -> None:
    strata = {f"e{i}": ("yes" if i < 60 else "no") for i in range(100)}
    order = stratified_order(strata, seed="s")
    assert sorted(order) == sorted(strata)
    for size in (10, 20, 50):
        yes = sum(1 for i in order[:size] if strata[i] == "yes")
        assert abs(yes - 0.6 * size) <= 1
    assert order == stratified_order(strata, seed="s") != stratified_order(strata, seed="t")


@pytest.mark.parametrize("rule", ["halving", "significance"])
def test_a_clearly_bad_candidate_stops_after_the_first_minibatch(rule: str) -> None:
    ids = [f"e{i}" for i in range(40)]
    outcomes = {
        "good": {i: 1.0 for i in ids},
        "ok": {i: float(k % 4 != 0) for k, i in enumerate(ids)},
        "bad": {i: 0.0 for i in ids},
    }
    log: list[tuple[str, list[str]]] = []
    result = asyncio.run(race(list(outcomes), ids, scripted(outcomes, log), first=5, keep=2, rule=rule))
    bad = result.entrants[2]
    assert [len(ids_) for text, ids_ in log if text == "bad"] == [5]
    assert bad.calls == 5 and not result.finished[2] and bad.score().n == 5
    assert result.finished[0]
    assert result.calls < result.full_calls and result.saved == result.full_calls - result.calls


def test_once_no_cut_is_left_the_rest_of_the_split_goes_in_one_batch() -> None:
    ids = [f"e{i}" for i in range(30)]
    # on the first four examples a is right 4 times, b 3, c 2, d once: halving keeps a and b
    outcomes = {
        name: {i: float(k >= 4 or k < right) for k, i in enumerate(ids)} for name, right in zip("abcd", (4, 3, 2, 1))
    }
    log: list[tuple[str, list[str]]] = []
    asyncio.run(race(list(outcomes), ids, scripted(outcomes, log), first=4, keep=2, rule="halving", alpha=0.0))
    batches = {name: [len(b) for text, b in log if text == name] for name in outcomes}
    assert batches == {"a": [4, 26], "b": [4, 26], "c": [4], "d": [4]}  # rungs would have been 4, 8, 16, 30
    two: list[tuple[str, list[str]]] = []
    asyncio.run(race(["a", "b"], ids, scripted(outcomes, two), first=4, keep=2, rule="halving", alpha=0.0))
    assert [len(b) for _, b in two] == [4, 4, 26, 26]  # two candidates, keep 2: nothing to cut
    # the significance rule keeps its rungs: its test may stop a candidate at any of them
    sig: list[tuple[str, list[str]]] = []
    asyncio.run(race(["a", "b"], ids, scripted(outcomes, sig), first=4, keep=2, rule="significance", alpha=0.0))
    assert [len(b) for text, b in sig if text == "a"] == [4, 4, 8, 14]


def test_the_dominating_candidate_is_never_eliminated() -> None:
    """Worlds where one candidate is right wherever any other is (and more often): it always finishes."""
    for seed in range(300):
        rng = random.Random(seed)
        n = rng.choice([10, 20, 30, 60])
        ids = [f"e{i}" for i in range(n)]
        count = rng.randint(2, 10)
        others = {f"c{k}": {i: float(rng.random() < rng.uniform(0.2, 0.9)) for i in ids} for k in range(count)}
        best = {i: max([o[i] for o in others.values()] + [float(rng.random() < 0.3)]) for i in ids}
        outcomes = dict(others)
        position = rng.randint(0, count)
        names = list(outcomes)
        names.insert(position, "best")
        outcomes["best"] = best
        ordered = {name: outcomes[name] for name in names}
        incumbent = others["c0"] if rng.random() < 0.5 else None
        result = run_race(
            ordered,
            stratified_order({i: "x" for i in ids}, str(seed)),
            first=rng.choice([3, 5, 8]),
            keep=rng.choice([1, 2]),
            rule=rng.choice(["halving", "significance"]),
            incumbent=incumbent,
        )
        assert result.finished[position], seed
        assert result.entrants[position].value == sum(best.values()) / n


def test_a_race_never_costs_more_than_full_scoring_nor_halving_more_than_expected_without_ties() -> None:
    rng = random.Random(1)
    for _ in range(100):
        n, count, first = rng.randint(5, 60), rng.randint(1, 10), rng.randint(1, 12)
        ids = [f"e{i}" for i in range(n)]
        # distinct means on every prefix: no ties, so halving cuts exactly half
        outcomes = {f"c{k}": {i: (k + 1) / (count + 1) for i in ids} for k in range(count)}
        result = run_race(outcomes, ids, first=first, keep=2, rule="halving", alpha=0.0)
        assert result.calls == expected_race_calls(count, n, first, 2, "halving") <= count * n


def write_scorer(fake_llm: FakeBrain, task, levels: dict[str, float]) -> None:
    """The scorer answers example k right when the prompt's "level L" puts k below L x |examples|."""
    order = {ex.input: k for k, ex in enumerate(sorted(task.examples, key=lambda e: e.id))}
    n = len(order)

    def rules(text, ex):
        match = re.search(r"level (\d+)", text)
        return bool(match) and (order[ex.input] * 7919) % n < n * int(match.group(1)) / 10

    fake_llm.scorer = keyword_scorer(task, rules)


PROPOSALS = [f"<INS>Use level {k}.</INS>" for k in (3, 9, 1, 6, 5, 7, 2, 8, 4, 10, 0, 2)]


@pytest.mark.parametrize("rule", ["halving", "significance"])
def test_racing_and_full_scoring_pick_the_same_winner_for_fewer_calls(fake_llm: FakeBrain, rule: str) -> None:
    task = make_task(examples=make_examples(120))
    write_scorer(fake_llm, task, {})
    fake_llm.optimizer = PROPOSALS
    base = dict(max_steps=3, candidates=4, patience=0)
    full = optimize(task, settings=OptimizerSettings(**base, screening="off"), cache=None)
    full_calls = sum(1 for model, _ in fake_llm.log if model == "fake/scorer")
    fake_llm.log.clear()
    raced = optimize(task, settings=OptimizerSettings(**base, screening="race", race_rule=rule), cache=None)
    race_calls = sum(1 for model, _ in fake_llm.log if model == "fake/scorer")
    assert raced.instruction == full.instruction == "Use level 10."
    assert raced.scores["test"].value == full.scores["test"].value
    assert race_calls < full_calls
    steps = raced.reports
    full_train = sum(r.train_calls for r in full.reports)
    assert full_train == sum(r.accepted for r in full.reports) * len(task.splits.train)
    n_val = len(task.splits.validation)  # calls_saved also counts the validation of finalists not validated
    assert sum(r.train_calls + r.calls_saved - r.not_validated * n_val for r in steps) == full_train
    # validation may be spared too (a step whose candidates all lost to the incumbent validates none)
    assert race_calls <= full_calls - sum(r.calls_saved for r in steps)
    assert sum(r.screened_out for r in steps) == sum(1 for c in raced.trajectory if c.partial_train is not None) > 0
    for cand in raced.trajectory:
        if cand.partial_train is not None:  # screened out: partial score with its n, no train score
            assert cand.train is None and 0 < cand.train_n < len(task.splits.train)
        elif cand.train is not None:
            assert cand.train_n == len(task.splits.train)
    assert all(r.screened_out == 0 and r.calls_saved == 0 for r in full.reports)


def test_the_meta_prompt_shows_only_fully_scored_candidates(fake_llm: FakeBrain) -> None:
    task = make_task(examples=make_examples(120))
    write_scorer(fake_llm, task, {})
    fake_llm.optimizer = PROPOSALS
    result = optimize(task, settings=OptimizerSettings(max_steps=2, candidates=6, patience=0), cache=None)
    metas = [m[0]["content"] for model, m in fake_llm.log if model == "fake/optimizer"]
    shown = set(re.findall(r"text:\n(.*)\nscore:", metas[-1]))
    partial = {c.text for c in result.trajectory if c.partial_train is not None and c.step == 1}
    full = {c.text for c in result.trajectory if c.train is not None}
    assert partial and not (partial & shown) and shown <= full


def test_race_show_partial_marks_stopped_candidates_with_their_examples(fake_llm: FakeBrain) -> None:
    task = make_task(examples=make_examples(120))
    write_scorer(fake_llm, task, {})
    fake_llm.optimizer = PROPOSALS
    settings = OptimizerSettings(max_steps=2, candidates=6, patience=0, race_show_partial=True)
    result = optimize(task, settings=settings, cache=None)
    metas = [m[0]["content"] for model, m in fake_llm.log if model == "fake/optimizer"]
    marked = dict(re.findall(r"text:\n(.*)\nscore:\n\d+ \(partial: (\d+) of \d+ examples\)", metas[-1]))
    stopped = {c.text: c.train_n for c in result.trajectory if c.partial_train is not None and c.step == 1}
    assert stopped and {text: int(n) for text, n in marked.items()} == stopped
    assert f"of {len(task.splits.train)} examples)" in metas[-1]
    # fully scored candidates are shown unmarked, as without the setting
    full = {c.text for c in result.trajectory if c.train is not None}
    assert full & set(re.findall(r"text:\n(.*)\nscore:\n\d+\n", metas[-1]))


def test_finalists_below_the_best_earlier_candidate_on_train_are_not_validated(fake_llm: FakeBrain) -> None:
    """Validation is the race's last rung: step 2's best (levels 8 and 7) trail step 1's level 9 on train."""
    task = make_task(examples=make_examples(120))
    write_scorer(fake_llm, task, {})
    fake_llm.optimizer = [f"<INS>Use level {k}.</INS>" for k in (3, 9, 1, 6, 5, 7, 2, 8)]
    base = dict(max_steps=2, candidates=4, patience=0, validate_top=2)
    # race_alpha 0: no significance stops, so level 8 and 7 finish the race (halving keeps two of four)
    raced = optimize(task, settings=OptimizerSettings(**base, race_alpha=0.0), cache=None)
    by_text = {c.text: c for c in raced.trajectory}
    assert by_text["Use level 9."].validation is not None  # step 1: it beat the baseline on train
    assert by_text["Use level 8."].train is not None and by_text["Use level 8."].validation is None
    assert by_text["Use level 7."].validation is None
    step2 = raced.reports[1]
    n_val = len(task.splits.validation)
    assert step2.not_validated == 2 and step2.calls_saved >= 2 * n_val
    assert raced.reports[0].not_validated == 0

    fake_llm.log.clear()
    full = optimize(task, settings=OptimizerSettings(**base, screening="off"), cache=None)
    assert {c.text for c in full.trajectory if c.step == 2 and c.validation is not None} == {
        "Use level 8.",
        "Use level 7.",
    }
    assert all(r.not_validated == 0 for r in full.reports)
    assert raced.instruction == full.instruction == "Use level 9."


def test_estimate_maximum_is_never_exceeded_and_expected_is_below_it(fake_llm: FakeBrain) -> None:
    task = make_task(examples=make_examples(120))
    write_scorer(fake_llm, task, {})
    for seed in range(3):
        fake_llm.log.clear()
        fake_llm.optimizer = PROPOSALS[seed:] + PROPOSALS[:seed]
        settings = OptimizerSettings(max_steps=3, candidates=5, patience=0, seed=seed)
        guess = estimate(task, settings, task.scorer_config(None), task.optimizer_config(None))
        optimize(task, settings=settings, cache=None)
        scorer_calls = sum(1 for model, _ in fake_llm.log if model == "fake/scorer")
        assert scorer_calls <= guess.scorer_calls
        assert guess.expected_scorer_calls is not None and guess.expected_scorer_calls < guess.scorer_calls
    off = estimate(
        task,
        OptimizerSettings(max_steps=3, candidates=5, screening="off"),
        task.scorer_config(None),
        task.optimizer_config(None),
    )
    assert off.expected_scorer_calls == off.scorer_calls == guess.scorer_calls


def test_a_budget_hit_mid_race_resumes_to_an_identical_result(fake_llm: FakeBrain, tmp_path) -> None:
    task = make_task(examples=make_examples(120))
    write_scorer(fake_llm, task, {})
    fake_llm.optimizer = PROPOSALS
    settings = OptimizerSettings(max_steps=3, candidates=4, patience=0)
    # One call at a time: the scripted optimizer hands out its replies in the order calls reach it,
    # and concurrent calls of one step reach it in an order the machine's load decides.
    one = dict(settings=settings, concurrency=1)
    whole = optimize(task, cache=tmp_path / "whole", **one)
    whole_calls = sum(1 for model, _ in fake_llm.log if model == "fake/scorer")
    # Stop inside step 2's race: after the baseline, step 1 and a few of step 2's minibatch calls.
    stop_at = whole.reports[0].calls + 4 + 7  # step 2's four proposals, then 7 of its first minibatch
    checkpoint = tmp_path / "run.json"
    fake_llm.log.clear()
    stopped = optimize(task, cache=tmp_path / "cache", checkpoint=checkpoint, budget=Budget(max_calls=stop_at), **one)
    assert stopped.stop_reason.startswith("budget") and stopped.steps_run == 1
    paid_before = sum(1 for model, _ in fake_llm.log if model == "fake/scorer")
    fake_llm.log.clear()
    # Run again without the budget: what the stopped run paid comes from the response cache.
    resumed = optimize(task, cache=tmp_path / "cache", checkpoint=checkpoint, **one)
    assert resumed.instruction == whole.instruction
    assert [c.to_dict() for c in resumed.trajectory] == [c.to_dict() for c in whole.trajectory]
    assert [(r.screened_out, r.train_calls, r.calls_saved) for r in resumed.reports] == [
        (r.screened_out, r.train_calls, r.calls_saved) for r in whole.reports
    ]
    paid_after = sum(1 for model, _ in fake_llm.log if model == "fake/scorer")
    # Nothing paid twice: the resumed run paid for what the whole run needed and the stopped one had
    # not (the stopped run's own test pass scored its interim winner, which the whole run never did).
    interim_test = (
        0 if stopped.instruction in (whole.instruction, whole.baseline_instruction) else len(task.splits.test)
    )
    assert paid_before + paid_after == whole_calls + interim_test


def test_screening_setting_is_validated() -> None:
    from pytest_opro.errors import ConfigError

    with pytest.raises(ConfigError, match="screening"):
        OptimizerSettings(screening="fast")
    with pytest.raises(ConfigError, match="race_rule"):
        OptimizerSettings(race_rule="ucb")


def test_problems_without_example_scoring_are_scored_in_full() -> None:
    from pytest_opro.opro.problem import supports_example_scoring
    from pytest_opro.problems.linear_regression import LinearRegressionProblem

    assert not supports_example_scoring(LinearRegressionProblem.__new__(LinearRegressionProblem))


def test_racing_totals_for_the_summary_and_report() -> None:
    from pytest_opro.reporting.terminal import describe_racing, racing_totals

    totals = racing_totals(
        [
            {"screened_out": 3, "train_calls": 60, "calls_saved": 40},
            {"screened_out": 1, "not_validated": 2, "train_calls": 90, "calls_saved": 10},
            {},
        ]
    )
    assert totals == {"screened_out": 4, "not_validated": 2, "train_calls": 150, "calls_saved": 50}
    assert describe_racing(totals) == "4 candidates screened out, 2 not validated, 50 scorer calls saved"
    assert describe_racing({**totals, "not_validated": 0}) == "4 candidates screened out, 50 scorer calls saved"


def test_a_step_that_validated_nothing_counts_against_patience_unless_told_not_to(fake_llm: FakeBrain) -> None:
    """Steps 2 and 3 propose nothing that reaches step 1's level 9 on train, so they validate nothing."""
    task = make_task(examples=make_examples(120))
    write_scorer(fake_llm, task, {})
    proposals = [f"<INS>Use level {k}.</INS>" for k in (3, 9, 1, 6, 5, 7, 2, 8, 4, 0, 2, 1)]
    base = dict(max_steps=3, candidates=4, patience=1, validate_top=2, race_alpha=0.0)

    fake_llm.optimizer = list(proposals)
    counted = optimize(task, settings=OptimizerSettings(**base), cache=None)
    assert counted.steps_run == 2 and counted.stop_reason == "early stop: no validation gain for 1 steps"
    assert counted.reports[1].not_validated == 2

    fake_llm.optimizer = list(proposals)
    uncounted = optimize(task, settings=OptimizerSettings(**base, patience_counts_unvalidated=False), cache=None)
    assert uncounted.steps_run == 3 and uncounted.stop_reason == "max_steps=3 reached"
    assert uncounted.instruction == counted.instruction == "Use level 9."
