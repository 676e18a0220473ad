"""`optimize()`: run OPRO on a PromptTask without pytest, and score instructions on a split."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any, Mapping

from pytest_opro.errors import ConfigError
from pytest_opro.hashing import canonical_json, sha256_hex
from pytest_opro.models.cache import Cache, open_cache
from pytest_opro.models.client import LLMClient, run_sync
from pytest_opro.models.config import Budget, ModelConfig, ModelSpec
from pytest_opro.models.pricing import estimate_cost
from pytest_opro.opro.checkpoint import Checkpoint
from pytest_opro.opro.collapse import distribution
from pytest_opro.opro.loop import CandidateCallback, StepCallback, run_loop
from pytest_opro.opro.problem import Score, check_failure_rate
from pytest_opro.opro.racing import expected_race_calls
from pytest_opro.opro.selection import LEAD
from pytest_opro.opro.settings import OptimizerSettings
from pytest_opro.opro.stats import smallest_confirmable
from pytest_opro.opro.trajectory import Candidate, LoopSplit
from pytest_opro.prompts.instruction_problem import InstructionProblem, score_instructions
from pytest_opro.prompts.result import Estimate, Result, SplitScore
from pytest_opro.prompts.task import PromptTask

#: Rough prompt size used for the cost estimate when a task has no examples to measure (tokens).
_CHARS_PER_TOKEN = 4


def build_settings(*layers: Mapping[str, Any] | None, origin: str = "settings") -> OptimizerSettings:
    """OptimizerSettings from `layers`, later ones winning; None values do not override."""
    merged: dict[str, Any] = {}
    for layer in layers:
        merged.update({k: v for k, v in dict(layer or {}).items() if v is not None})
    known = set(OptimizerSettings.__dataclass_fields__)
    unknown = sorted(set(merged) - known)
    if unknown:
        raise ConfigError(
            f"{origin}: unknown optimizer setting(s) {', '.join(unknown)}; known: {', '.join(sorted(known))}"
        )
    return OptimizerSettings(**merged)


def settings_for(task: PromptTask, overrides: Mapping[str, Any] | None = None) -> OptimizerSettings:
    """OptimizerSettings from the task's own `settings`, then `overrides` on top."""
    return build_settings(task.settings, overrides, origin=f"task {task.name!r}")


def estimate(task: PromptTask, settings: OptimizerSettings, scorer: ModelConfig, optimizer: ModelConfig) -> Estimate:
    """The most calls a run can make, the calls it is expected to make, and their cost where known.

    With ``screening="race"`` a step's train scoring costs at most what full scoring costs (a race
    where nothing is ever cut) and is expected to cost the successive-halving schedule.
    """
    splits = task.splits
    n_train, n_val, n_test = len(splits.train), len(splits.validation), len(splits.test)
    per_step_opt = settings.candidates * (settings.reask + 1)
    optimizer_calls = settings.max_steps * per_step_opt
    full_train = settings.candidates * n_train
    max_train = expected_train = full_train  # a race where nothing is ever cut costs full scoring
    if settings.screening == "race":
        expected_train = expected_race_calls(
            settings.candidates, n_train, settings.race_minibatch, settings.validate_top, settings.race_rule
        )
    fixed = (
        (n_train + n_val) * len(task.starting_instructions())
        + settings.max_steps * settings.validate_top * n_val
        + 2 * n_test
    )
    # Every scoring pass asks each example `samples` times.
    k = settings.samples
    scorer_calls = (fixed + settings.max_steps * max_train) * k
    sample = task.messages(task.initial_instruction, splits.train[0])
    prompt_tokens = sum(len(m["content"]) for m in sample) // _CHARS_PER_TOKEN + 8
    scorer_out = int(scorer.params.get("max_tokens", 64))
    meta_tokens = 200 + settings.top_k * 40 + settings.exemplars * prompt_tokens
    opt_out = int(optimizer.params.get("max_tokens", 200))
    scorer_cost = estimate_cost(scorer.model, prompt_tokens * scorer_calls, scorer_out * scorer_calls, scorer_calls)
    optimizer_cost = estimate_cost(
        optimizer.model, meta_tokens * optimizer_calls, opt_out * optimizer_calls, optimizer_calls
    )
    cost = None if scorer_cost is None or optimizer_cost is None else scorer_cost + optimizer_cost
    # A model-graded metric asks its judge `calls_per_output` times for every answer it grades.
    metric = task.metric_obj
    judge_model = getattr(metric, "model", None)
    judge_calls = scorer_calls * int(getattr(metric, "calls_per_output", 0) or 0)
    if judge_calls and isinstance(judge_model, ModelConfig):
        judge_prompt = 150 + prompt_tokens + scorer_out + len(str(getattr(metric, "rubric", ""))) // _CHARS_PER_TOKEN
        judge_out = int(judge_model.params.get("max_tokens", 256))
        judge_cost = estimate_cost(judge_model.model, judge_prompt * judge_calls, judge_out * judge_calls, judge_calls)
        cost = None if cost is None or judge_cost is None else cost + judge_cost
    return Estimate(
        optimizer_calls + scorer_calls + judge_calls,
        optimizer_calls,
        scorer_calls,
        cost,
        judge_calls,
        expected_scorer_calls=(fixed + settings.max_steps * expected_train) * k,
        validation_n=n_val,
        min_gain=min_gain(n_val, settings.select_alpha),
    )


def min_gain(n_val: int, alpha: float) -> int | None:
    """The smallest net gain in validation examples that selection can confirm: one exact paired test
    of the candidate best on train, at its share of `alpha` (:data:`pytest_opro.opro.selection.LEAD`)."""
    return smallest_confirmable(n_val, alpha if alpha >= 1 else alpha * LEAD)


def run_key(task: PromptTask, scorer: ModelConfig, optimizer: ModelConfig, settings: OptimizerSettings) -> str:
    """Identity of a run for its checkpoint: same key, same run."""
    data = {
        "fingerprint": fingerprint(task, scorer, settings),
        "initial": task.initial_instruction,
        **({"initial_instructions": list(task.initial_instructions)} if task.initial_instructions else {}),
        "meta_prompt": task.meta_prompt,
        "description": task.description,
        "optimizer": optimizer.public_dict(),
        "settings": {k: v for k, v in settings.to_dict().items() if k not in _SAMPLING or v != _SAMPLING[k]},
    }
    return sha256_hex(canonical_json(data))


#: The sampling settings at their defaults: a run with these has the fingerprint and checkpoint key
#: it had before the settings existed.
_SAMPLING: dict[str, Any] = {"samples": 1, "aggregate": "mean"}


def fingerprint(task: PromptTask, scorer: ModelConfig, settings: OptimizerSettings) -> dict[str, str]:
    """The task's fingerprint for a run with `settings`: the scorer's samples per example and their
    aggregate are part of what a recorded score means."""
    return task.fingerprint(scorer, samples=settings.samples, aggregate=settings.aggregate)


async def optimize_async(
    task: PromptTask,
    *,
    scorer: ModelSpec = None,
    optimizer: ModelSpec = None,
    settings: OptimizerSettings | None = None,
    budget: Budget | None = None,
    client: LLMClient | None = None,
    cache: Cache | str | Path | None = ".opro_cache",
    cache_mode: str = "rw",
    concurrency: int = 16,
    checkpoint: str | Path | None = None,
    on_step: StepCallback | None = None,
    on_candidate: CandidateCallback | None = None,
) -> Result:
    """Async form of :func:`optimize`."""
    started = time.monotonic()
    scorer_cfg = task.scorer_config(scorer)
    optimizer_cfg = task.optimizer_config(optimizer)
    settings = settings or settings_for(task)
    if client is None:
        client = LLMClient(cache=open_cache(cache, cache_mode), concurrency=concurrency, budget=budget)
    problem = InstructionProblem(
        task,
        client,
        scorer_cfg,
        optimizer_cfg,
        exemplars=settings.exemplars,
        samples=settings.samples,
        aggregate=settings.aggregate,
    )
    guess = estimate(task, settings, scorer_cfg, optimizer_cfg)
    saver = Checkpoint(checkpoint, run_key(task, scorer_cfg, optimizer_cfg, settings)) if checkpoint else None
    loop = await run_loop(problem, client, settings, on_step=on_step, on_candidate=on_candidate, checkpoint=saver)

    winner, base = loop.best, loop.baseline[0]
    tested = await _score_on_test(task, client, scorer_cfg, [winner.text, base.text], settings)
    winner_test, base_test = tested[0], tested[-1]
    result = Result(
        task=task.name,
        instruction=winner.text,
        position=str(task.position),
        scores=_split_scores(task, winner, winner_test),
        baseline_instruction=base.text,
        baseline_scores=_split_scores(task, base, base_test),
        trajectory=loop.trajectory.candidates,
        rejections=loop.rejections,
        steps_run=loop.steps_run,
        best_step=loop.best_step,
        stop_reason=loop.stop_reason,
        reports=loop.reports,
        usage=client.ledger.to_dict(),
        usage_by_role=client.ledger.roles_dict(),
        judge=_judge_record(task),
        wall_seconds=time.monotonic() - started,
        estimate=guess,
        scorer=scorer_cfg.public_dict(),
        optimizer=optimizer_cfg.public_dict(),
        settings=settings.to_dict(),
        fingerprint=fingerprint(task, scorer_cfg, settings),
        selection=loop.selection.to_dict() if loop.selection is not None else None,
        answers={"winner": _answers(winner, winner_test), "baseline": _answers(base, base_test)},
    )
    if saver is not None:
        saver.clear()
    return result


async def _score_on_test(
    task: PromptTask, client: LLMClient, scorer: ModelConfig, texts: list[str], settings: OptimizerSettings
) -> list[Score]:
    """The winner's and the baseline's test scores (one score when they are the same instruction).

    Budgets bound the search. The final test pass (2 x test size calls, part of the estimate) always
    runs, so that a result a budget stopped is still complete and comparable."""
    search_budget, client.budget = client.budget, Budget()
    try:
        tested = await score_instructions(
            task,
            client,
            scorer,
            list(dict.fromkeys(texts)),
            task.splits.test,
            samples=settings.samples,
            aggregate=settings.aggregate,
        )
    finally:
        client.budget = search_budget
    failed = sum(s.failures for s in tested)
    check_failure_rate(failed, failed + sum(s.n for s in tested), "scorer calls on test", settings.max_failure_rate)
    return tested


def _split_scores(task: PromptTask, cand: Candidate, test_score: Score) -> dict[str, SplitScore]:
    """A candidate's train and validation scores as the run stored them, and its test score."""
    train, val = _stored_score(task, cand, "train"), _stored_score(task, cand, "validation")
    return {"train": train, "validation": val, "test": SplitScore.from_score(test_score, keep_outcomes=True)}


def _answers(cand: Candidate, test_score: Score) -> dict[str, dict[str, int]]:
    """How often a candidate gave each answer on validation and on test (the collapse diagnostics)."""
    out = {}
    if cand.validation_answers is not None:
        out["validation"] = dict(cand.validation_answers)
    if test_score.answers is not None:
        out["test"] = distribution(test_score.answers.values())
    return out


def _judge_record(task: PromptTask) -> dict[str, Any] | None:
    """The judge model and parameters of a model-graded metric (None for other metrics)."""
    model = getattr(task.metric_obj, "model", None)
    return model.public_dict() if isinstance(model, ModelConfig) else None


def _stored_score(task: PromptTask, cand: Candidate, split: LoopSplit) -> SplitScore:
    """A SplitScore from the mean the loop kept for `cand` on `split`."""
    value = cand.score_on(split)
    if value is None:
        return SplitScore(value=float("nan"), n=0, ci_low=0.0, ci_high=1.0)
    failures = cand.failures_on(split)
    return SplitScore.from_mean(value, len(task.splits.get(split)) - failures, failures)


def optimize(task: PromptTask, **kwargs: Any) -> Result:
    """Run OPRO on `task` and return the :class:`Result` (winner chosen on validation).

    Keyword arguments: ``scorer`` and ``optimizer`` (litellm model strings or ModelConfig),
    ``settings`` (:class:`OptimizerSettings`), ``budget`` (:class:`Budget`), ``cache`` (directory, a
    ``redis://`` URL, a cache object or None), ``cache_mode`` ("rw", "ro", "off"), ``concurrency``, ``checkpoint`` (file path to resume
    from), ``on_step`` and ``on_candidate`` callbacks.
    """
    return run_sync(optimize_async(task, **kwargs))


async def score_instruction_async(
    task: PromptTask,
    instruction: str,
    split: str = "test",
    *,
    client: LLMClient,
    scorer: ModelSpec = None,
    samples: int = 1,
    aggregate: str = "mean",
) -> SplitScore:
    """Score one instruction on one split, keeping per-example outcomes (`samples` calls per example,
    combined by `aggregate`)."""
    scorer_cfg = task.scorer_config(scorer)
    (score,) = await score_instructions(
        task, client, scorer_cfg, [instruction], task.splits.get(split), samples=samples, aggregate=aggregate
    )
    return SplitScore.from_score(score, keep_outcomes=True)


def score_instruction(task: PromptTask, instruction: str, split: str = "test", **kwargs: Any) -> SplitScore:
    """Synchronous :func:`score_instruction_async`."""
    return run_sync(score_instruction_async(task, instruction, split, **kwargs))


__all__ = ["build_settings", "optimize", "optimize_async", "score_instruction", "settings_for", "estimate"]
