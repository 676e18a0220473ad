"""The example table's data: one row per example of a split, two outputs side by side.

Built from what a run already has (per-example outcomes and replies of the winner and the baseline,
or of the recorded and the fresh gate run); nothing here calls a model. The block is plain data so
it travels from pytest-xdist workers with the task's record.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, Mapping, Sequence

from pytest_opro.prompts.artifact import as_recorded
from pytest_opro.prompts.examples import Example

#: Rows a task's table shows at most; the rest are counted by kind, never dropped silently.
DEFAULT_ROW_CAP = 2_000
#: How the rows are told apart (the page's filters): outcome went down, went up, reply changed, same.
KINDS = ("worse", "better", "changed", "same")


@dataclass(frozen=True)
class Side:
    """One column of outputs: its name, example id -> score, and example id -> reply."""

    label: str
    outcomes: Mapping[str, float] | None
    outputs: Mapping[str, str] | None


def shown_input(example: Example) -> str:
    """An example's input as text: the string itself, or its fields as indented JSON."""
    if isinstance(example.input, str):
        return example.input
    return json.dumps(dict(example.input), indent=2, ensure_ascii=False, default=str)


def kind(a: float | None, b: float | None, out_a: str | None, out_b: str | None) -> str:
    """How the second side's result differs from the first's (one of :data:`KINDS`)."""
    if a is not None and b is not None:
        # compared at the artifact's precision, as the gate compares them
        if as_recorded(b) < as_recorded(a):
            return "worse"
        if as_recorded(b) > as_recorded(a):
            return "better"
    if out_a is not None and out_b is not None and out_a != out_b:
        return "changed"
    return "same"


def _outcome_word(score: float | None) -> str:
    if score is None:
        return "not scored"
    if as_recorded(score) >= 1:
        return "right"
    if as_recorded(score) <= 0:
        return "wrong"
    return f"{score:.2f}"


def example_table(
    examples: Sequence[Example], split: str, first: Side, second: Side, *, cap: int = DEFAULT_ROW_CAP
) -> dict[str, Any]:
    """The table block for `examples`: rows in split order, at most `cap` of them.

    Past the cap, rows whose outcome flipped are kept first, then rows whose reply changed; what is
    left out is counted per kind in ``omitted``.
    """
    rows: list[dict[str, Any]] = []
    for ex in examples:
        a = None if first.outcomes is None else first.outcomes.get(ex.id)
        b = None if second.outcomes is None else second.outcomes.get(ex.id)
        out_a = None if first.outputs is None else first.outputs.get(ex.id)
        out_b = None if second.outputs is None else second.outputs.get(ex.id)
        rows.append(
            {
                "id": ex.id,
                "input": shown_input(ex),
                "target": str(ex.target),
                "a": {"output": out_a, "score": a, "mark": _outcome_word(a)},
                "b": {"output": out_b, "score": b, "mark": _outcome_word(b)},
                "kind": kind(a, b, out_a, out_b),
            }
        )
    counts = {k: sum(1 for r in rows if r["kind"] == k) for k in KINDS}
    omitted: dict[str, int] = {}
    if len(rows) > cap:
        order = sorted(range(len(rows)), key=lambda i: (KINDS.index(rows[i]["kind"]), i))
        keep = set(order[:cap])
        for i in order[cap:]:
            omitted[rows[i]["kind"]] = omitted.get(rows[i]["kind"], 0) + 1
        rows = [r for i, r in enumerate(rows) if i in keep]
    return {
        "split": split,
        "columns": [first.label, second.label],
        "rows": rows,
        "total": len(examples),
        "counts": counts,
        "omitted": omitted,
        "cap": cap,
    }
