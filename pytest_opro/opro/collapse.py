"""Answer collapse: an instruction that makes the scorer give (nearly) the same answer to everything.

On a task whose targets are labels (plausible / implausible, small counts), an instruction can win
points by flipping the model's constant answer to the label that happens to be more common in a
split, which says nothing about the task. Each validated candidate's answer distribution is kept
(answer -> how many examples got it); :func:`collapse` flags one whose most common answer covers at
least ``threshold`` of the examples. :func:`rejection` says why such a candidate may not ship: its
answers collapsed while the split's targets are less concentrated (on a split where one target
covers ``threshold`` or more, a majority answer can be legitimate).
"""

from __future__ import annotations

from collections import Counter
from dataclasses import asdict, dataclass
from typing import Any, Iterable, Mapping

#: Default share of the most common answer from which an instruction counts as collapsed.
DEFAULT_THRESHOLD = 0.9


@dataclass(frozen=True)
class Collapse:
    """The most common answer of one instruction on one split, when it covers ``threshold`` or more."""

    answer: str
    count: int
    n: int

    @property
    def share(self) -> float:
        return self.count / self.n if self.n else 0.0

    def describe(self) -> str:
        """E.g. ``answers "plausible" to 30 of 30``."""
        return describe(self.to_dict())

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "share": self.share}


def describe(found: Mapping[str, Any]) -> str:
    """A collapse as plain data (``answer``, ``count``, ``n``) in words: ``answers "plausible" to 30 of 30``."""
    return f'answers "{found["answer"]}" to {found["count"]} of {found["n"]}'


def distribution(answers: Iterable[str | None]) -> dict[str, int]:
    """Answer -> count, most common first; examples without an answer are not counted."""
    counts = Counter(a for a in answers if a is not None)
    return dict(sorted(counts.items(), key=lambda kv: (-kv[1], kv[0])))


def collapse(counts: Mapping[str, int] | None, n: int, threshold: float = DEFAULT_THRESHOLD) -> Collapse | None:
    """The collapse `counts` show over `n` examples (with or without an answer), or None."""
    if not counts or n <= 0:
        return None
    answer, count = max(counts.items(), key=lambda kv: (kv[1], kv[0]))
    return Collapse(str(answer), int(count), int(n)) if count / n >= threshold - 1e-12 else None


def target_share(targets: Iterable[object]) -> float | None:
    """The share of the most common target (compared case-folded), or None without targets."""
    counts = Counter(str(t).strip().casefold() for t in targets)
    return max(counts.values()) / sum(counts.values()) if counts else None


def rejection(
    counts: Mapping[str, int] | None, n: int, targets: float | None, threshold: float = DEFAULT_THRESHOLD
) -> str | None:
    """Why a candidate with these answer `counts` over `n` examples may not ship, or None.

    `targets` is the split's :func:`target_share` (None when unknown): a collapse is a reason to
    reject only when the targets themselves cover less than `threshold` with one value.
    """
    found = collapse(counts, n, threshold)
    if found is None or (targets is not None and targets >= threshold - 1e-12):
        return None
    shown = "" if targets is None else f", where the most common target covers {targets:.0%}"
    return f"its answers collapsed (it {found.describe()} on validation{shown})"
