"""When to stop: early stopping on validation and the step limit (budgets live in llm.Budget)."""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum
from typing import Any

from pytest_opro.opro.problem import score_sign


class StopReason(Enum):
    """Why a loop run ended. Its text (:meth:`text`) is what results, artifacts and reports show;
    code that needs the reason keeps the member, it never reads the text back."""

    MAX_STEPS = "max_steps"
    OPTIMUM = "optimum"
    NO_GAIN = "no_gain"
    BUDGET = "budget"

    def text(self, detail: object = "") -> str:
        """The sentence shown for this reason; `detail` is the step limit, the patience or the budget message."""
        return {
            StopReason.MAX_STEPS: "max_steps={} reached",
            StopReason.OPTIMUM: "optimum reached",
            StopReason.NO_GAIN: "early stop: no validation gain for {} steps",
            StopReason.BUDGET: "budget: {}",
        }[self].format(detail)


@dataclass
class EarlyStopping:
    """Stops after `patience` steps in which the best validation score did not improve by `min_delta`.

    ``patience=0`` disables it. Scores are compared in the problem's direction.
    """

    patience: int = 3
    min_delta: float = 0.0
    higher_is_better: bool = True
    best: float | None = None
    stale_steps: int = 0

    def improved(self, value: float) -> bool:
        if self.best is None:
            return True
        return score_sign(self.higher_is_better) * (value - self.best) > self.min_delta

    def update(self, value: float | None) -> bool:
        """Record this step's best validation score; return True when the run should stop."""
        if value is not None and self.improved(value):
            self.best = value
            self.stale_steps = 0
        else:
            self.stale_steps += 1
        return self.patience > 0 and self.stale_steps >= self.patience

    def state(self) -> dict[str, Any]:
        return {"best": self.best, "stale_steps": self.stale_steps}

    def restore(self, state: dict[str, Any]) -> None:
        self.best = state.get("best")
        self.stale_steps = int(state.get("stale_steps", 0))
