"""Task outcomes: the statuses a task can end in, the one rule that says pass or fail, and the
per-task record that the summary, the reports and xdist workers share.
"""

from __future__ import annotations

import enum
from dataclasses import asdict, dataclass, field
from typing import Any, Mapping


class TaskStatus(str, enum.Enum):
    """How one prompt task ended in a run (the value is what reports and artifacts say)."""

    WRITTEN = "written"  # optimised; the artifact now holds a better instruction
    NO_GAIN = "no gain"  # optimised; nothing beat the baseline, which was written
    PASSED = "passed"  # gated; no significant drop
    FAILED = "failed"  # gated; a significant drop beyond the tolerance
    MISSING = "missing"  # gated; there is no artifact yet
    STALE = "stale"  # gated; the artifact was made for another task, model or data
    ERROR = "error"  # the run could not finish (bad input, provider outage, budget)

    def __str__(self) -> str:
        return self.value


def task_ok(status: TaskStatus | str, *, allow_no_gain: bool = False) -> bool:
    """The one pass/fail rule: written and passed are fine, no gain only when allowed."""
    status = TaskStatus(status)
    return status in (TaskStatus.WRITTEN, TaskStatus.PASSED) or (status is TaskStatus.NO_GAIN and allow_no_gain)


@dataclass
class TaskRecord:
    """One task's outcome in this run, for the summary, reports and xdist transport (plain data)."""

    task: str
    mode: str  # "optimize" or "gate"
    nodeid: str
    artifact: str
    status: TaskStatus
    instruction: str = ""
    message: str = ""
    baseline_test: float | None = None
    test: float | None = None
    test_ci: tuple[float, float] | None = None
    recorded: float | None = None
    delta: float | None = None
    p_value: float | None = None
    verdict: str | None = None
    calls: int = 0
    cache_hits: int = 0
    retries: int = 0
    failures: int = 0
    cost_usd: float = 0.0
    seconds: float = 0.0
    stop_reason: str = ""
    steps_run: int = 0
    result: dict[str, Any] | None = None
    decision: dict[str, Any] | None = None
    #: The HTML report's example table (``reporting.html.example_table``); only with ``--opro-html``.
    examples: dict[str, Any] | None = None
    cache_hits_by_scope: dict[str, int] = field(default_factory=dict)  # scoped Redis cache: hits per scope
    #: The committed instruction on other scorer models (``--opro-compare-model``), as plain data.
    comparisons: list[dict[str, Any]] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["status"] = TaskStatus(self.status).value
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "TaskRecord":
        data = dict(data)
        if data.get("test_ci") is not None:
            data["test_ci"] = tuple(data["test_ci"])
        data["status"] = TaskStatus(data["status"])
        return cls(**data)


#: The usage totals a TaskRecord carries.
RECORD_USAGE = ("calls", "cache_hits", "retries", "failures", "cost_usd")


def scope_hits(by_scope: Mapping[str, int]) -> str:
    """ "main 100, pr-42 20": cache hits per trust scope, most first."""
    return ", ".join(f"{scope} {hits}" for scope, hits in sorted(by_scope.items(), key=lambda kv: (-kv[1], kv[0])))


def describe_cache_hits(hits: int, by_scope: Mapping[str, int]) -> str:
    """ "cache hits 120 (main 100, pr-42 20)"; without scopes just "cache hits 120"."""
    return f"cache hits {hits}" + (f" ({scope_hits(by_scope)})" if by_scope else "")


def add_scope_hits(total: dict[str, int], by_scope: Mapping[str, int]) -> dict[str, int]:
    """`total` with `by_scope`'s hits added (for sums over tasks)."""
    for scope, hits in by_scope.items():
        total[scope] = total.get(scope, 0) + int(hits)
    return total


def collapse_notes(
    collapse: dict[str, Any] | None, *, kept_baseline: bool | None = None, gate: dict[str, Any] | None = None
) -> list[str]:
    """One line per answer collapse, for the terminal summary and the markdown report.

    `collapse` is a Result's (or artifact's) ``collapse`` block, `gate` the gate's fresh one on test.
    """
    from pytest_opro.opro.collapse import describe as said

    lines: list[str] = []
    if collapse:
        whose = [("winner", "the shipped instruction" + (" (the baseline)" if kept_baseline else ""))]
        if not kept_baseline:
            whose.append(("baseline", "the baseline"))
        for key, name in whose:
            per_split = collapse.get(key) or {}
            parts = [f"{said(found)} on {split}" for split, found in per_split.items() if found]
            if parts:
                lines.append(f"answer collapse: {name} {', and '.join(parts)}")
        flagged = collapse.get("candidates") or []
        if flagged:
            first = flagged[0]
            lines.append(
                f"answer collapse: {len(flagged)} validated candidate{'s' if len(flagged) != 1 else ''} "
                f"(≥ {collapse.get('threshold', 0.9):.0%} one answer), e.g. step {first['step']}: {said(first)} on validation"
            )
    if gate:
        lines.append(f"answer collapse: the committed instruction {said(gate)} on test")
    return lines
