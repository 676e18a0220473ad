"""The Result of optimising a prompt task: winner, baseline, trajectory, usage."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from pytest_opro.opro.collapse import DEFAULT_THRESHOLD, collapse, distribution
from pytest_opro.opro.loop import StepReport
from pytest_opro.opro.problem import Score
from pytest_opro.opro.stats import mean_interval, mean_interval_from_mean
from pytest_opro.opro.trajectory import Candidate, best_distinct


@dataclass
class SplitScore:
    """A score on one split with its size, a 95% interval and, on test, per-example outcomes."""

    value: float
    n: int
    ci_low: float
    ci_high: float
    failures: int = 0
    outcomes: dict[str, float] | None = None
    notes: dict[str, int] | None = None  # why outputs scored as they did, e.g. {"not JSON": 12}
    error: str | None = None  # one failure's message, when some answers could not be scored
    answers: dict[str, int] | None = None  # answer -> count, for label-like targets (collapse diagnostics)
    #: example id -> the model's reply, kept with the outcomes for the HTML report (never in artifacts)
    outputs: dict[str, str] | None = None

    @classmethod
    def from_score(cls, score: Score, keep_outcomes: bool = False) -> "SplitScore":
        values = list((score.outcomes or {}).values())
        low, high = mean_interval(values) if values else (0.0, 1.0)
        return cls(
            value=score.value,
            n=score.n,
            ci_low=low,
            ci_high=high,
            failures=score.failures,
            outcomes=dict(score.outcomes or {}) if keep_outcomes else None,
            notes=dict(sorted(score.notes.items())) if score.notes else None,
            error=score.error,
            answers=distribution(score.answers.values()) if keep_outcomes and score.answers is not None else None,
            outputs=dict(score.outputs) if keep_outcomes and score.outputs is not None else None,
        )

    def describe_notes(self) -> str:
        """The notes in words: "12 of 40 replies: not JSON; 3 of 40 replies: schema violation"."""
        total = self.n
        return "; ".join(f"{count} of {total} replies: {reason}" for reason, count in (self.notes or {}).items())

    @classmethod
    def from_mean(cls, value: float, n: int, failures: int = 0) -> "SplitScore":
        """From a mean over `n` outcomes, its interval computed as for binary outcomes."""
        low, high = mean_interval_from_mean(value, n)
        return cls(value=value, n=n, ci_low=low, ci_high=high, failures=failures)

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data.pop("outputs")  # replies are for the HTML report only: artifacts and JSON reports stay small
        for key in ("outcomes", "answers", "notes", "error"):
            if data[key] is None:
                data.pop(key)
        return data


@dataclass
class Estimate:
    """What a run will cost at most, before it starts."""

    calls: int
    optimizer_calls: int
    scorer_calls: int
    cost_usd: float | None
    judge_calls: int = 0  # calls a model-graded metric makes (scorer calls x votes)
    #: Scorer calls expected with racing (None: not computed); `scorer_calls` is the maximum.
    expected_scorer_calls: int | None = None
    #: Validation examples, and the smallest net gain in examples that selection can confirm on them
    #: at ``select_alpha`` (None: no gain can; see :func:`pytest_opro.opro.stats.smallest_confirmable`).
    validation_n: int | None = None
    min_gain: int | None = None

    def describe(self) -> str:
        cost = "unknown cost" if self.cost_usd is None else f"~${self.cost_usd:.4f}"
        judge = f", {self.judge_calls} judge" if self.judge_calls else ""
        text = (
            f"at most {self.calls} calls ({self.optimizer_calls} optimizer, {self.scorer_calls} scorer{judge}), {cost}"
        )
        if self.expected_scorer_calls is not None and self.expected_scorer_calls < self.scorer_calls:
            text += f"; expected {self.expected_scorer_calls} scorer calls"
        power = self.describe_power()
        return f"{text}; {power}" if power else text

    def describe_power(self) -> str:
        """What the validation split can confirm, e.g. ``validation 12 examples: a gain must be at
        least 5 examples net (42 points) to ship`` (empty when the run has no validation split)."""
        n = self.validation_n
        if not n:
            return ""
        if self.min_gain is None:
            return f"validation {n} examples: too few for any gain to ship (add examples or set select_alpha)"
        return (
            f"validation {n} examples: a gain must be at least {self.min_gain} examples net "
            f"({round(100 * self.min_gain / n)} points) to ship"
        )


@dataclass
class Result:
    """Everything one optimisation produced; :meth:`to_dict` is what artifacts and reports read."""

    task: str
    instruction: str
    position: str
    scores: dict[str, SplitScore]
    baseline_instruction: str
    baseline_scores: dict[str, SplitScore]
    trajectory: list[Candidate]
    rejections: dict[str, int]
    steps_run: int
    best_step: int
    stop_reason: str
    reports: list[StepReport]
    usage: dict[str, dict[str, Any]]
    wall_seconds: float
    estimate: Estimate
    scorer: dict[str, Any]
    optimizer: dict[str, Any]
    settings: dict[str, Any]
    fingerprint: dict[str, str] = field(default_factory=dict)
    usage_by_role: dict[str, dict[str, Any]] = field(default_factory=dict)  # scorer / optimizer / judge
    judge: dict[str, Any] | None = None  # the judge model of a model-graded metric, as recorded
    #: How the winner was chosen (the paired test on validation); None for runs without one.
    selection: dict[str, Any] | None = None
    #: Answer distributions ("winner" / "baseline" -> split -> answer -> count) for label-like targets.
    answers: dict[str, dict[str, dict[str, int]]] = field(default_factory=dict)

    @property
    def collapse_share(self) -> float:
        return float(self.settings.get("collapse_share", DEFAULT_THRESHOLD))

    def collapses(self) -> dict[str, Any]:
        """Answer collapse of the winner and the baseline per split, and of every validated candidate."""
        out: dict[str, Any] = {"threshold": self.collapse_share}
        for who, scores in (("winner", self.scores), ("baseline", self.baseline_scores)):
            per_split = {}
            for split, counts in self.answers.get(who, {}).items():
                n = scores[split].n if split in scores else 0
                found = collapse(counts, n, self.collapse_share)
                per_split[split] = found.to_dict() if found else None
            out[who] = per_split
        flagged = []
        for c in self.trajectory:
            found = c.validation_collapse(self.collapse_share) if c.step > 0 else None
            if found is not None:
                flagged.append({"step": c.step, "text": c.text, **found.to_dict()})
        out["candidates"] = flagged
        return out

    @property
    def train_validation_gap(self) -> float:
        """Train minus validation score of the winner: how much the search overfit train."""
        return self.scores["train"].value - self.scores["validation"].value

    @property
    def improved(self) -> bool:
        """True when a candidate replaced the baseline (it beat it on validation, significantly)."""
        if self.selection is not None:
            return not self.selection["kept_baseline"]
        return self.scores["validation"].value > self.baseline_scores["validation"].value

    def top_candidates(self, k: int = 10) -> list[Candidate]:
        """The best `k` distinct scored candidates, best first (validation, then train)."""
        return best_distinct(self.trajectory, k)

    def to_dict(self) -> dict[str, Any]:
        return {
            "task": self.task,
            "instruction": self.instruction,
            "position": self.position,
            "scores": {k: v.to_dict() for k, v in self.scores.items()},
            "baseline_instruction": self.baseline_instruction,
            "baseline_scores": {k: v.to_dict() for k, v in self.baseline_scores.items()},
            "train_validation_gap": self.train_validation_gap,
            "improved": self.improved,
            "trajectory": [c.to_dict() for c in self.trajectory],
            "rejections": dict(self.rejections),
            "steps_run": self.steps_run,
            "best_step": self.best_step,
            "stop_reason": self.stop_reason,
            "reports": [r.to_dict() for r in self.reports],
            "usage": self.usage,
            "usage_by_role": self.usage_by_role,
            "judge": self.judge,
            "wall_seconds": self.wall_seconds,
            "estimate": asdict(self.estimate),
            "scorer": self.scorer,
            "optimizer": self.optimizer,
            "settings": self.settings,
            "fingerprint": self.fingerprint,
            "selection": self.selection,
            "answers": self.answers,
            "collapse": self.collapses(),
        }
