"""The regression gate: is the committed instruction still as good as when it was recorded?

The decision pairs the recorded per-example test outcomes with fresh ones on the same examples.
It fails only when the drop is larger than the tolerance AND significant under a one-sided paired
test, or when the score falls under the task's absolute floor. Improvements and insignificant
wobbles pass. The paired test is :func:`pytest_opro.opro.stats.paired_test`: the exact McNemar (sign)
test when every outcome is 0 or 1, a sign-flip permutation test on the per-example differences when
scores are graded (token F1, JSON fields, a judge), exact or with a recorded number of resamples.
"""

from __future__ import annotations

import enum
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any, Callable

from pytest_opro.opro.collapse import describe
from pytest_opro.opro.stats import paired_test
from pytest_opro.prompts.artifact import as_recorded
from pytest_opro.prompts.splits import LEGACY_RULE

if TYPE_CHECKING:
    from pytest_opro.prompts.task import PromptTask

_EPS = 1e-9  # float noise in score means, e.g. 0.98 - 1.0 == -0.020000000000000018

FINGERPRINT_LABELS = {
    "template": "template (or position / system prompt)",
    "examples_train": "train examples",
    "examples_validation": "validation examples",
    "examples_test": "test examples",
    "split_rule": "split rule",
    "metric": "metric",
    "scorer_model": "scorer model",
    "scorer_params": "scorer parameters",
    "judge_model": "judge model",
    "judge_params": "judge parameters",
    "judge_rubric": "judge rubric",
    "judge_template": "judge template",
    "samples": "samples per example",
    "aggregate": "aggregate of the samples",
}

#: Fingerprint entries written only when they differ from these (older artifacts lack them).
FINGERPRINT_DEFAULTS = {"samples": "1", "aggregate": "mean"}

#: Random sign patterns the permutation test draws when exact enumeration is too large (seeded).
RESAMPLES = 10_000


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
    test: str = "sign"  # the paired test that ran: "sign" (0/1 outcomes) or "permutation" (graded scores)
    resamples: int = 0  # random sign patterns the permutation test drew (0: exact)
    #: The committed instruction's answer collapse on test now (answer, count, n, share), if any.
    collapse: dict[str, Any] | None = None
    samples: int = 1  # scorer calls per example behind each outcome
    aggregate: str = "mean"  # how an example's samples became its outcome

    def describe_samples(self) -> str:
        """ "each example scored 3 times, mean of 3" (empty for one sample)."""
        if self.samples == 1:
            return ""
        how = {"mean": f"mean of {self.samples}", "all": f"right only when all {self.samples} are (pass^k)"}.get(
            self.aggregate, f"majority of {self.samples}"
        )
        return f"each example scored {self.samples} times, {how}"

    def describe_test(self) -> str:
        """The paired test that ran and what it counted, for the message."""
        if self.test == "sign":
            return (
                f"paired sign test: {len(self.worse_ids)} right->wrong, {len(self.better_ids)} wrong->right, "
                f"one-sided p={self.p_value:.3g}"
            )
        how = "exact over every sign pattern" if self.resamples == 0 else f"{self.resamples} seeded resamples"
        return (
            f"paired permutation test (sign-flip on per-example score differences, {how}): "
            f"{len(self.worse_ids)} lower, {len(self.better_ids)} higher, one-sided p={self.p_value:.3g}"
        )

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
        samples = f"; {self.describe_samples()}" if self.samples != 1 else ""
        lines = [
            head,
            f"  recorded {self.recorded:.1%} -> now {self.now:.1%}  (delta {self.delta * 100:+.1f} points, "
            f"n={self.n}{samples})",
            f"  {self.describe_test()} (fails when p < {self.alpha:g} and drop > {self.tolerance * 100:g} points)",
        ]
        if self.worse_ids:
            shown = ", ".join(self.worse_ids[:10]) + (" ..." if len(self.worse_ids) > 10 else "")
            what = "flipped right->wrong" if self.test == "sign" else "scored lower"
            lines.append(f"  first ids that {what}: {shown}")
        if self.collapse:
            lines.append(
                f"  answer collapse: the committed instruction {describe(self.collapse)} test examples; "
                "its score is that label's share of the split, not skill at the task"
            )
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
    samples: int = 1,
    aggregate: str = "mean",
) -> GateDecision:
    """Compare recorded and fresh per-example outcomes on the ids both have (each the `aggregate`
    of `samples` scorer calls). Fresh outcomes are taken at the precision the artifact records, so a
    graded score that the artifact rounded is not counted as a change."""
    now = {i: as_recorded(score) for i, score in now.items()}
    ids = sorted(set(recorded) & set(now))
    n = len(ids)
    rec = sum(recorded[i] for i in ids) / n if n else 0.0
    cur = sum(now[i] for i in ids) / n if n else 0.0
    # Differences within float noise are ties (as in paired_test).
    worse = [i for i in ids if now[i] < recorded[i] - 1e-12]
    better = [i for i in ids if now[i] > recorded[i] + 1e-12]
    # One-sided: is the recorded instruction's score better than today's on the same examples?
    test = paired_test([now[i] for i in ids], [recorded[i] for i in ids], resamples=RESAMPLES, seed=0)
    p_value = test.p_value
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
    return GateDecision(
        passed,
        verdict,
        rec,
        cur,
        delta,
        p_value,
        n,
        worse,
        better,
        tolerance,
        alpha,
        floor,
        test.method,
        test.resamples,
        samples=samples,
        aggregate=aggregate,
    )


def stale_for(
    task: PromptTask, recorded: dict[str, str], fingerprint: Callable[[PromptTask], dict[str, str]]
) -> list[str]:
    """What changed between an artifact's fingerprint and `task`'s (:func:`stale_parts`), in words;
    `fingerprint(task)` is a task's fingerprint for the run's settings.

    A task on the default split fractions also matches an artifact recorded under an earlier default
    (:data:`pytest_opro.prompts.splits.EARLIER_DEFAULT_FRACTIONS`): its test split, the one the gate
    scores, is the same under every default, and only train and validation moved.
    """
    current = fingerprint(task)
    changed = stale_parts(recorded, current)
    if changed:
        for earlier in map(fingerprint, task.earlier_default_tasks()):
            if earlier["examples_test"] == current["examples_test"] and not stale_parts(recorded, earlier):
                return []
    return changed


def stale_parts(recorded: dict[str, str], current: dict[str, str]) -> list[str]:
    """What changed between the artifact's fingerprint and the task's, in words.

    An artifact written before splits could be stratified has no ``split_rule``: it was split by
    plain hash (``"hash"``), so it is still current for a task that splits that way. One without
    ``samples`` / ``aggregate`` was scored once per example (1, "mean").
    """
    recorded, current = dict(recorded), dict(current)
    if "split_rule" in current and "split_rule" not in recorded:
        recorded["split_rule"] = LEGACY_RULE
    for key, default in FINGERPRINT_DEFAULTS.items():  # absent means one sample, its own score
        recorded.setdefault(key, default)
        current.setdefault(key, default)
    changed = []
    keys = sorted(set(recorded) | set(current), key=lambda k: (k != "split_rule", k))  # the cause first
    for key in keys:
        if recorded.get(key) != current.get(key):
            label = FINGERPRINT_LABELS.get(key, key)
            if key in ("scorer_model", "metric", "judge_model", "split_rule", "samples", "aggregate"):
                label = f"{label} ({recorded.get(key)} -> {current.get(key)})"
            changed.append(label)
    return changed
