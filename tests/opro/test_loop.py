"""The OPRO loop on a deterministic fake provider: meta-prompt, extraction, winner, stopping, budgets, replay."""

from __future__ import annotations

import re
import zlib

import pytest

from pytest_opro import OptimizerSettings, PromptTask, optimize
from pytest_opro.models.config import Budget
from pytest_opro.opro.meta_prompt import bucketize
from pytest_opro.opro.trajectory import Candidate, Trajectory
from pytest_opro.prompts.examples import examples_from_records
from pytest_opro.prompts.extraction import extract_instruction
from tests.support.fake_provider import FakeBrain


def make_examples(n: int = 40):
    records = [{"id": f"q{i:03d}", "input": f"What is {i} plus {i}?", "target": str(2 * i)} for i in range(n)]
    return examples_from_records(records)


def make_task(examples=None, **kw) -> PromptTask:
    kw.setdefault("metric", "numeric")
    return PromptTask(
        name="sums",
        examples=examples or make_examples(),
        scorer="fake/scorer",
        optimizer="fake/optimizer",
        **kw,
    )


def keyword_scorer(task: PromptTask, keyword_rules):
    """A scorer answering right when the prompt holds a keyword that `keyword_rules` allows for that example."""
    by_input = {ex.input: ex for ex in task.examples}

    def score(messages):
        text = "\n".join(m["content"] for m in messages)
        for question, ex in by_input.items():
            if question in text:
                return ex.target if keyword_rules(text, ex) else "no idea"
        return "no idea"

    return score


def test_meta_prompt_shows_top_k_ascending_with_bucketed_scores(fake_llm: FakeBrain, tmp_path) -> None:
    task = make_task()
    train_ids = {ex.input for ex in task.splits.train}
    ranked = sorted(train_ids)

    # Instruction "level k" answers the first k/10 of train questions correctly: distinct known scores.
    def rules(text, ex):
        match = re.search(r"level (\d+)", text)
        if not match or ex.input not in train_ids:
            return False
        return ranked.index(ex.input) < len(ranked) * int(match.group(1)) / 10

    fake_llm.scorer = keyword_scorer(task, rules)
    fake_llm.optimizer = [f"<INS>Use level {k}.</INS>" for k in (3, 9, 1, 6, 5, 7, 2, 8)]
    optimize(
        task,
        settings=OptimizerSettings(max_steps=2, patience=0, top_k=4, score_buckets=20, screening="off"),
        cache=None,
    )
    metas = [m[0]["content"] for model, m in fake_llm.log if model == "fake/optimizer"]
    step2 = metas[-1]
    texts = re.findall(r"text:\n(.*)\nscore:\n(\d+)", step2)
    assert [t for t, _ in texts] == ["Use level 6.", "Use level 7.", "Use level 8.", "Use level 9."]
    scores = [int(s) for _, s in texts]
    assert scores == sorted(scores) and all(s % 5 == 0 for s in scores)  # 20 buckets -> multiples of 5
    assert "Generate an instruction that is different" in step2
    assert step2.count("Problem:") == 3 and step2.count("Ground truth answer:") == 3


def test_no_scores_mode_hides_scores(fake_llm: FakeBrain) -> None:
    task = make_task()
    fake_llm.optimizer = ["<INS>Think.</INS>"]
    optimize(task, settings=OptimizerSettings(max_steps=2, patience=0, show_scores=False, candidates=2), cache=None)
    metas = [m[0]["content"] for model, m in fake_llm.log if model == "fake/optimizer"]
    assert "score:" not in metas[-1] and "text:\nThink." in metas[-1]


@pytest.mark.parametrize(
    "reply, expected",
    [
        ("Sure! <INS>Solve carefully.</INS> Hope it helps", "Solve carefully."),
        ("<INS><INS>Inner</INS></INS>", "Inner"),
        ("<INS>Unclosed instruction", "Unclosed instruction"),
        ("New one: [Add the numbers.]", "Add the numbers."),
        ("  Just the text  ", "Just the text"),
        ("<INS>Ze\u200brо width</INS>", "Zerо width"),
        ("{{ 7*7 }}", "{{ 7*7 }}"),
    ],
)
def test_extraction(reply: str, expected: str) -> None:
    assert extract_instruction(reply) == expected


def test_rejections_are_counted_by_reason(fake_llm: FakeBrain) -> None:
    task = make_task()
    fake_llm.optimizer = [
        "<INS>Add them.</INS>",
        "<INS>add   THEM.</INS>",  # duplicate after normalising case and spaces
        "<INS></INS>",  # empty
        "<INS>" + "x" * 600 + "</INS>",  # too long
        "<INS>{% for x in range(3) %}{{ x }}{% endfor %}</INS>",  # Jinja stays data
    ]
    result = optimize(task, settings=OptimizerSettings(max_steps=1, candidates=5, patience=0), cache=None)
    assert result.rejections == {"duplicate": 1, "empty": 1, "too long": 1}
    accepted = [c.text for c in result.trajectory if c.step == 1 and c.rejection is None]
    assert accepted == ["Add them.", "{% for x in range(3) %}{{ x }}{% endfor %}"]
    # the Jinja candidate was sent to the scorer verbatim, never rendered
    scorer_prompts = [m[-1]["content"] for model, m in fake_llm.log if model == "fake/scorer"]
    assert any(p.startswith("{% for x in range(3) %}{{ x }}{% endfor %}\n") for p in scorer_prompts)


def test_winner_is_chosen_on_validation_not_train(fake_llm: FakeBrain) -> None:
    task = make_task()
    train = {ex.input for ex in task.splits.train}

    def rules(text, ex):
        if "memorise" in text:  # great on train, useless elsewhere
            return ex.input in train
        if "general" in text:  # right on about 80% of every split, whatever the process's hash seed
            return zlib.crc32(ex.id.encode("utf-8")) % 10 < 8
        return False

    fake_llm.scorer = keyword_scorer(task, rules)
    fake_llm.optimizer = ["<INS>memorise the training set</INS>", "<INS>a general method</INS>"]
    # select_alpha=1: this is about which split picks the winner, not about the significance test
    settings = OptimizerSettings(max_steps=1, candidates=2, patience=0, select_alpha=1)
    result = optimize(task, settings=settings, cache=None)
    by_text = {c.text: c for c in result.trajectory}
    assert by_text["memorise the training set"].train == 1.0
    assert by_text["memorise the training set"].validation == 0.0
    general = by_text["a general method"]
    assert general.train < by_text["memorise the training set"].train  # worse on train ...
    assert general.validation > 0.5  # ... and far better on validation, where the winner is chosen
    assert result.instruction == "a general method"
    assert result.scores["validation"].value == general.validation


def test_early_stopping_before_max_steps(fake_llm: FakeBrain) -> None:
    task = make_task()
    fake_llm.scorer = keyword_scorer(task, lambda text, ex: "good" in text)
    # The first step finds the best possible instruction; nothing after improves.
    fake_llm.optimizer = lambda meta, n: f"<INS>good idea {meta.count('text:')}-{n}</INS>"
    result = optimize(task, settings=OptimizerSettings(max_steps=10, patience=2, candidates=2), cache=None)
    assert result.steps_run == 3
    assert result.stop_reason.startswith("early stop")
    assert result.best_step == 1


@pytest.mark.parametrize(
    "budget, reason",
    [
        (Budget(max_calls=60), "max_calls=60"),
        (Budget(max_tokens=700), "max_tokens=700"),
        (Budget(max_cost_usd=0.5), "max_cost_usd=0.5"),
    ],
)
def test_each_budget_stops_the_run_cleanly(fake_llm: FakeBrain, budget: Budget, reason: str) -> None:
    fake_llm.cost_per_call = 0.01
    task = make_task()
    result = optimize(
        task, settings=OptimizerSettings(max_steps=20, patience=0, candidates=4), budget=budget, cache=None
    )
    assert result.stop_reason.startswith("budget:") and reason in result.stop_reason
    assert result.steps_run < 20
    # the best result so far is still returned, scored on every split
    assert result.scores["test"].n > 0 and result.instruction is not None


def test_second_identical_run_is_replayed_from_cache(fake_llm: FakeBrain, tmp_path) -> None:
    task = make_task()
    fake_llm.learn(task.examples)
    settings = OptimizerSettings(max_steps=3, patience=0)
    first = optimize(task, settings=settings, cache=tmp_path / "cache")
    calls_after_first = sum(fake_llm.calls.values())
    second = optimize(task, settings=settings, cache=tmp_path / "cache")
    assert sum(fake_llm.calls.values()) == calls_after_first  # zero provider calls
    assert all(u["calls"] == 0 for u in second.usage.values())
    assert sum(u["cache_hits"] for u in second.usage.values()) == sum(u["calls"] for u in first.usage.values())
    strip = lambda d: {k: v for k, v in d.items() if k not in ("usage", "usage_by_role", "wall_seconds", "reports")}
    assert strip(second.to_dict()) == strip(first.to_dict())


def test_baseline_and_splits_are_reported(fake_llm: FakeBrain) -> None:
    task = make_task(initial_instruction="Answer.")
    fake_llm.learn(task.examples)
    result = optimize(task, settings=OptimizerSettings(max_steps=1, patience=0), cache=None)
    assert result.baseline_instruction == "Answer."
    for split in ("train", "validation", "test"):
        assert result.scores[split].n == len(task.splits.get(split))
        assert 0.0 <= result.scores[split].ci_low <= result.scores[split].value <= result.scores[split].ci_high <= 1.0
    assert set(result.scores["test"].outcomes) == {ex.id for ex in task.splits.test}
    assert result.estimate.calls >= sum(u["calls"] for u in result.usage.values())


def test_trajectory_top_is_ascending_and_deduplicated() -> None:
    traj = Trajectory()
    for i, (text, score) in enumerate([("a", 0.5), ("b", 0.9), ("A ", 0.7), ("c", 0.1)]):
        traj.add(Candidate(step=i, text=text, train=score))
    assert [(c.text, c.train) for c in traj.top(2)] == [("A ", 0.7), ("b", 0.9)]


@pytest.mark.parametrize("value, buckets, shown", [(0.613, 100, 61), (0.613, 20, 60), (0.613, 10, 60), (1.0, 100, 100)])
def test_bucketize(value: float, buckets: int, shown: int) -> None:
    assert bucketize(value, buckets) == shown


@pytest.mark.parametrize(
    "select_alpha, min_delta, winner",
    [
        (1.0, 0.0, "one more right"),  # no significance test: the old rule ships one lucky example
        (1.0, 0.2, ""),  # ... unless min_delta asks for more
        (0.05, 0.0, ""),  # one example better of eight is no evidence (p = 0.5)
    ],
)
def test_a_gain_within_min_delta_or_noise_keeps_the_baseline(
    fake_llm: FakeBrain, select_alpha: float, min_delta: float, winner: str
) -> None:
    task = make_task()
    lucky = task.splits.validation[0].input
    fake_llm.scorer = keyword_scorer(task, lambda text, ex: "one more right" in text and ex.input == lucky)
    fake_llm.optimizer = ["<INS>one more right</INS>"]
    settings = OptimizerSettings(max_steps=1, candidates=1, patience=0, min_delta=min_delta, select_alpha=select_alpha)
    result = optimize(task, settings=settings, cache=None)
    assert result.instruction == winner
    assert result.improved is (winner != "")
    assert result.selection["best"]["better"] == 1 and result.selection["best"]["worse"] == 0


def test_stop_reasons_are_one_enum_whose_text_is_rendered() -> None:
    from pytest_opro.opro.stopping import StopReason

    assert StopReason.MAX_STEPS.text(10) == "max_steps=10 reached"
    assert StopReason.OPTIMUM.text() == "optimum reached"
    assert StopReason.NO_GAIN.text(3) == "early stop: no validation gain for 3 steps"
    assert StopReason.BUDGET.text("max_calls=60 reached") == "budget: max_calls=60 reached"


def test_the_loop_result_keeps_the_stop_reason_as_a_member(fake_llm: FakeBrain) -> None:
    from pytest_opro.models.client import LLMClient, run_sync
    from pytest_opro.opro.loop import run_loop
    from pytest_opro.opro.stopping import StopReason
    from pytest_opro.prompts.instruction_problem import InstructionProblem

    task = make_task()
    fake_llm.scorer = keyword_scorer(task, lambda text, ex: "good" in text)
    fake_llm.optimizer = lambda meta, n: f"<INS>good idea {meta.count('text:')}-{n}</INS>"
    client = LLMClient()
    problem = InstructionProblem(task, client, task.scorer_config(None), task.optimizer_config(None))
    settings = OptimizerSettings(max_steps=10, patience=2, candidates=2)
    loop = run_sync(run_loop(problem, client, settings))
    assert loop.stopped is StopReason.NO_GAIN and loop.stop_reason == StopReason.NO_GAIN.text(2)
