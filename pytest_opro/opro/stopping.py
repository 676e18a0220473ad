"""When to stop: early stopping on validation and the step limit (budgets live in llm.Budget)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


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
        delta = value - self.best if self.higher_is_better else self.best - value
        return delta > self.min_delta

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
