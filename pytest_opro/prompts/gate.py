"""The regression gate: is the committed instruction still as good as when it was recorded?

The decision pairs the recorded per-example test outcomes with fresh ones on the same examples.
It fails only when the drop is larger than the tolerance AND significant under an exact one-sided
McNemar (sign) test, or when the score falls under the task's absolute floor. Improvements and
insignificant wobbles pass.
"""

from __future__ import annotations

import enum
from dataclasses import asdict, dataclass, field
from typing import Any

from pytest_opro.opro.stats import sign_test_one_sided

_EPS = 1e-9  # float noise in score means, e.g. 0.98 - 1.0 == -0.020000000000000018

FINGERPRINT_LABELS = {
    "template": "template (or position / system prompt)",
    "examples_train": "train examples",
    "examples_validation": "validation examples",
    "examples_test": "test examples",
    "metric": "metric",
    "scorer_model": "scorer model",
    "scorer_params": "scorer parameters",
}


class Verdict(str, enum.Enum):
    """What the gate concluded for one task (the value is what reports say)."""

    PASS = "pass"  # no significant drop beyond the tolerance
    IMPROVED = "improved"  # the score went up
    REGRESSION = "regression"  # a significant drop beyond the tolerance
    BELOW_FLOOR = "below floor"  # under the task's minimum score
    NO_SHARED_EXAMPLES = "no shared examples"  # nothing to compare

    def __str__(self) -> str:
        return self.value


@dataclass
class GateDecision:
    """Outcome of one gate check, with everything its message shows."""

    passed: bool
    verdict: Verdict
    recorded: float
    now: float
    delta: float
    p_value: float
    n: int
    worse_ids: list[str] = field(default_factory=list)
    better_ids: list[str] = field(default_factory=list)
    tolerance: float = 0.02
    alpha: float = 0.05
    floor: float | None = None

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["verdict"] = Verdict(self.verdict).value
        return data

    def message(self, task: str, rerun: str = "pytest --opro-optimize", artifact: str = "__opro__/") -> str:
        """Multi-line explanation, written for a reviewer reading a failed CI run.

        `rerun` is the command that re-optimises this task and `artifact` the file to commit after it.
        """
        if self.verdict is Verdict.BELOW_FLOOR:
            head = f"opro gate FAILED for task {task!r}: score under the floor {self.floor or 0:.1%}"
        else:
            head = {
                Verdict.NO_SHARED_EXAMPLES: f"opro gate FAILED for task {task!r}: no test example of the artifact is "
                "in the task's test split, so nothing can be compared",
                Verdict.REGRESSION: f"opro gate FAILED for task {task!r}: accuracy dropped",
                Verdict.IMPROVED: f"opro gate passed for task {task!r}: accuracy improved",
                Verdict.PASS: f"opro gate passed for task {task!r}",
            }[self.verdict]
        lines = [
            head,
            f"  recorded {self.recorded:.1%} -> now {self.now:.1%}  (delta {self.delta * 100:+.1f} points, n={self.n})",
            f"  paired sign test: {len(self.worse_ids)} right->wrong, {len(self.better_ids)} wrong->right, "
            f"one-sided p={self.p_value:.3g} (fails when p < {self.alpha:g} and drop > {self.tolerance * 100:g} points)",
        ]
        if self.worse_ids:
            shown = ", ".join(self.worse_ids[:10]) + (" ..." if len(self.worse_ids) > 10 else "")
            lines.append(f"  first ids that flipped right->wrong: {shown}")
        if not self.passed:
            lines.append(
                f"  if the change is intended, re-run: {rerun} (and commit {artifact}); "
                "else revert the prompt, model or data change"
            )
        return "\n".join(lines)


def decide(
    recorded: dict[str, float],
    now: dict[str, float],
    *,
    tolerance: float = 0.02,
    alpha: float = 0.05,
    floor: float | None = None,
) -> GateDecision:
    """Compare recorded and fresh per-example outcomes on the ids both have."""
    ids = sorted(set(recorded) & set(now))
    n = len(ids)
    rec = sum(recorded[i] for i in ids) / n if n else 0.0
    cur = sum(now[i] for i in ids) / n if n else 0.0
    worse = [i for i in ids if now[i] < recorded[i]]
    better = [i for i in ids if now[i] > recorded[i]]
    p_value = sign_test_one_sided(len(worse), len(better))
    delta = cur - rec
    if n == 0:
        verdict, passed = Verdict.NO_SHARED_EXAMPLES, False
    elif floor is not None and cur < floor:
        verdict, passed = Verdict.BELOW_FLOOR, False
    elif -delta > tolerance + _EPS and p_value < alpha:  # a drop of exactly the tolerance passes
        verdict, passed = Verdict.REGRESSION, False
    elif delta > 0:
        verdict, passed = Verdict.IMPROVED, True
    else:
        verdict, passed = Verdict.PASS, True
    return GateDecision(passed, verdict, rec, cur, delta, p_value, n, worse, better, tolerance, alpha, floor)


def stale_parts(recorded: dict[str, str], current: dict[str, str]) -> list[str]:
    """What changed between the artifact's fingerprint and the task's, in words."""
    changed = []
    for key in sorted(set(recorded) | set(current)):
        if recorded.get(key) != current.get(key):
            label = FINGERPRINT_LABELS.get(key, key)
            if key in ("scorer_model", "metric"):
                label = f"{label} ({recorded.get(key)} -> {current.get(key)})"
            changed.append(label)
    return changed
