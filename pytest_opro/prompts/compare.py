"""Model comparison: would the committed instruction hold on another scorer model?

The committed instruction is re-scored on the task's test split with the other model, and its
per-example outcomes are paired with the ones the artifact recorded, exactly as the gate pairs
today's outcomes (:func:`pytest_opro.prompts.gate.decide`): the same test, tolerance and floor.
A comparison never stops a run: a model that cannot be reached ends as a comparison with an
``error``, and the gate and the other comparisons go on.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Sequence

from pytest_opro.errors import OproError
from pytest_opro.models.cache import Cache, open_cache
from pytest_opro.models.client import LLMClient, run_sync
from pytest_opro.models.config import ModelConfig, ModelSpec, parse_model
from pytest_opro.prompts.artifact import Artifact, load_artifact
from pytest_opro.prompts.gate import decide
from pytest_opro.prompts.instruction_problem import score_instructions
from pytest_opro.prompts.optimization import settings_for
from pytest_opro.prompts.task import PromptTask


def comparison_config(task: PromptTask, spec: ModelSpec, current: ModelConfig | None = None) -> ModelConfig:
    """The scorer a comparison calls: a ModelConfig as given (over the scorer defaults), or a model
    string that keeps the task's scorer parameters (`current`), with its own ``key=value`` on top."""
    if spec is None or isinstance(spec, ModelConfig):
        return task.scorer_config(spec)
    model, params = parse_model(spec)
    base = current or task.scorer_config()
    return ModelConfig(model, {**base.params, **params})


def model_label(config: ModelConfig, base: dict[str, Any] | None = None) -> str:
    """The model with the parameters that differ from `base`: "local/smollm2 temperature=0.7"."""
    extra = {k: v for k, v in sorted(config.params.items()) if (base or {}).get(k, object()) != v}
    return " ".join([config.model, *(f"{k}={v}" for k, v in extra.items())]) if base is not None else config.model


@dataclass
class ModelComparison:
    """One task's committed instruction scored on another model, paired with the recorded outcomes.

    `failed` is what ``--opro-compare-fail`` acts on: a drop the gate would fail (significant and
    beyond the tolerance, or under the floor), or a comparison that could not be made.
    """

    task: str
    recorded_model: str
    model: str
    params: dict[str, Any] = field(default_factory=dict)
    recorded: float | None = None
    now: float | None = None
    delta: float | None = None
    p_value: float | None = None
    n: int = 0
    flipped: list[str] = field(default_factory=list)  # examples that scored lower on `model`
    improved: list[str] = field(default_factory=list)  # examples that scored higher
    test: str = ""  # the paired test: "sign" or "permutation"
    verdict: str | None = None  # what the gate would say on this model
    significant_drop: bool = False
    samples: int = 1
    aggregate: str = "mean"
    tolerance: float = 0.02
    alpha: float = 0.05
    calls: int = 0
    cache_hits: int = 0
    cost_usd: float = 0.0
    seconds: float = 0.0
    error: str | None = None

    @property
    def failed(self) -> bool:
        return self.significant_drop or self.error is not None

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "failed": self.failed}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "ModelComparison":
        known = set(cls.__dataclass_fields__)
        return cls(**{k: v for k, v in data.items() if k in known})

    def figures(self) -> str:
        """ "90.0% -> 70.0% (-20.0 points, p=0.002, 4 flipped of 30), $0.0100"."""
        p = "-" if self.p_value is None else (f"{self.p_value:.3g}" if self.p_value >= 0.001 else f"{self.p_value:.0e}")
        return (
            f"{self.recorded or 0:.1%} -> {self.now or 0:.1%} ({(self.delta or 0) * 100:+.1f} points, "
            f"p={p}, {len(self.flipped)} flipped of {self.n}), ${self.cost_usd:.4f}"
        )

    def describe(self) -> str:
        """One line: "sports: fake/a -> fake/b: 90.0% -> 70.0% (-20.0 points, ...)"."""
        head = f"{self.task}: {self.recorded_model} -> {self.model}"
        return f"{head}: not compared: {self.error}" if self.error is not None else f"{head}: {self.figures()}"

    def message(self) -> str:
        """Why ``--opro-compare-fail`` failed the task on this comparison."""
        if self.error is not None:
            return f"opro compare FAILED for task {self.task!r} on {self.model}: {self.error}"
        shown = ", ".join(self.flipped[:10]) + (" ..." if len(self.flipped) > 10 else "")
        return (
            f"opro compare FAILED for task {self.task!r}: {self.recorded_model} -> {self.model}: {self.verdict}\n"
            f"  {self.figures()}\n"
            f"  (fails when p < {self.alpha:g} and drop > {self.tolerance * 100:g} points, as the gate does)"
            + (f"\n  first ids that scored lower: {shown}" if shown else "")
        )


async def compare_model_async(
    task: PromptTask,
    artifact: Artifact,
    model: ModelSpec,
    *,
    client: LLMClient,
    current: ModelConfig | None = None,
    samples: int = 1,
    aggregate: str = "mean",
    tolerance: float = 0.02,
    alpha: float = 0.05,
) -> ModelComparison:
    """Score `artifact`'s instruction on `task`'s test split with `model` and pair the outcomes with
    the recorded ones. `tolerance` is a fraction (0.02 = two points). Errors end in the result."""
    started = time.monotonic()
    recorded_model = str((artifact.data.get("scorer") or {}).get("model") or artifact.fingerprint.get("scorer_model"))
    out = ModelComparison(
        task=task.name,
        recorded_model=recorded_model,
        model=str(model),
        samples=samples,
        aggregate=aggregate,
        tolerance=tolerance,
        alpha=alpha,
    )
    try:
        config = comparison_config(task, model, current)
        out.model, out.params = config.model, dict(sorted(config.params.items()))
        if isinstance(model, str):
            out.model = model_label(config, dict((current or task.scorer_config()).params))
        (score,) = await score_instructions(
            task, client, config, [artifact.instruction], task.splits.test, samples=samples, aggregate=aggregate
        )
        if score.failures:
            out.error = (
                f"{score.failures} of {score.failures + score.n} answers could not be scored "
                f"(first: {score.error}); nothing was compared"
            )
        else:
            d = decide(
                artifact.test_outcomes,
                score.outcomes or {},
                tolerance=tolerance,
                alpha=alpha,
                floor=task.floor,
                samples=samples,
                aggregate=aggregate,
            )
            out.recorded, out.now, out.delta, out.p_value, out.n = d.recorded, d.now, d.delta, d.p_value, d.n
            out.flipped, out.improved, out.test = d.worse_ids, d.better_ids, d.test
            out.verdict, out.significant_drop = d.verdict.value, not d.passed
    except OproError as exc:
        out.error = str(exc)
    totals = client.ledger.total()
    out.calls, out.cache_hits, out.cost_usd = totals.calls, totals.cache_hits, totals.cost_usd
    out.seconds = time.monotonic() - started
    return out


def compare_models(
    task: PromptTask,
    artifact: Artifact | str | Path,
    models: Sequence[ModelSpec],
    *,
    scorer: ModelSpec = None,
    cache: Cache | str | Path | None = ".opro_cache",
    cache_mode: str = "rw",
    concurrency: int = 16,
    tolerance: float | None = None,
    alpha: float = 0.05,
) -> list[ModelComparison]:
    """Re-score `task`'s committed instruction (the artifact, or its path) on its test split with
    each of `models` and pair the outcomes with the recorded ones.

    A model string keeps the task's scorer parameters and may add its own
    (``"local/smollm2 temperature=0.7"``); a ModelConfig is used as given. `scorer` is the model the
    task runs on today (default: the task's own). `tolerance` is in points (default: the task's,
    else 2), as in the gate; samples per example and their aggregate come from the task's settings.
    """
    if not isinstance(artifact, Artifact):
        artifact = load_artifact(artifact)
    settings = settings_for(task)
    current = task.scorer_config(scorer)
    points = tolerance if tolerance is not None else (task.tolerance if task.tolerance is not None else 2.0)
    shared = open_cache(cache, cache_mode)
    results = []
    for model in models:
        client = LLMClient(cache=shared, concurrency=concurrency)
        results.append(
            run_sync(
                compare_model_async(
                    task,
                    artifact,
                    model,
                    client=client,
                    current=current,
                    samples=settings.samples,
                    aggregate=settings.aggregate,
                    tolerance=float(points) / 100.0,
                    alpha=alpha,
                )
            )
        )
    return results


__all__ = ["ModelComparison", "compare_model_async", "compare_models", "comparison_config"]
