"""The scored history of an optimisation: every candidate, the top-k view, and duplicate detection."""

from __future__ import annotations

import re
import unicodedata
from collections import Counter
from dataclasses import asdict, dataclass, field
from typing import Any, Iterable, Literal

from pytest_opro.opro.collapse import Collapse, collapse
from pytest_opro.opro.mix import DEFAULT_PROPOSER
from pytest_opro.opro.problem import score_sign

#: The splits the loop scores candidates on.
LoopSplit = Literal["train", "validation"]

_SPACE = re.compile(r"\s+")
_INVISIBLE = {"Cf"}  # zero-width and other format characters


def normalise(text: str) -> str:
    """The form two candidates share when they are "the same": NFKC, no invisible chars, case, spaces."""
    text = unicodedata.normalize("NFKC", text)
    text = "".join(ch for ch in text if unicodedata.category(ch) not in _INVISIBLE)
    return _SPACE.sub(" ", text).strip().casefold()


@dataclass
class Candidate:
    """One proposed solution and what became of it.

    For problems with per-example outcomes, a candidate scored on validation keeps them
    (`validation_outcomes`, example id -> score: the winner's paired test uses them) and, where the
    problem reads answers, their distribution (`validation_answers`, answer -> count).
    """

    step: int
    text: str
    train: float | None = None
    validation: float | None = None
    rejection: str | None = None
    call: int = 0
    train_failures: int = 0
    validation_failures: int = 0
    validation_outcomes: dict[str, float] | None = None
    validation_answers: dict[str, int] | None = None
    proposer: str = ""  # "initial" for a starting point, else the proposer's name ("opro", "edit", ...)
    # Examples behind `train` / `validation` (None: not recorded, e.g. an older checkpoint).
    train_n: int | None = None
    validation_n: int | None = None
    # Set when racing stopped the candidate early: its mean on the `train_n` examples it was scored
    # on. Such a candidate has no `train` score, so rankings and the meta-prompt leave it out.
    partial_train: float | None = None

    def score_on(self, split: LoopSplit) -> float | None:
        """Its score on `split` (None: not scored there)."""
        return self.train if split == "train" else self.validation

    def failures_on(self, split: LoopSplit) -> int:
        """Its failed scorer calls on `split`."""
        return self.train_failures if split == "train" else self.validation_failures

    def validation_collapse(self, threshold: float) -> Collapse | None:
        """This candidate's answer collapse on validation, when its answers were recorded and collapsed."""
        if self.validation_answers is None or self.validation_outcomes is None:
            return None
        return collapse(self.validation_answers, len(self.validation_outcomes), threshold)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "Candidate":
        known = set(cls.__dataclass_fields__)
        return cls(**{k: v for k, v in data.items() if k in known})


@dataclass
class Trajectory:
    """All candidates in the order they were proposed, with helpers for the meta-prompt."""

    higher_is_better: bool = True
    candidates: list[Candidate] = field(default_factory=list)

    def add(self, candidate: Candidate) -> None:
        self.candidates.append(candidate)

    def extend(self, candidates: Iterable[Candidate]) -> None:
        self.candidates.extend(candidates)

    def scored(self) -> list[Candidate]:
        """Candidates that were accepted and scored on train."""
        return [c for c in self.candidates if c.rejection is None and c.train is not None]

    def seen(self) -> set[str]:
        """Normalised texts of every accepted candidate, for de-duplication."""
        return {normalise(c.text) for c in self.candidates if c.rejection is None}

    def _train_key(self, c: Candidate) -> tuple[float, int]:
        value = c.train if c.train is not None else float("-inf")
        return (score_sign(self.higher_is_better) * value, -c.step)

    def top(self, k: int) -> list[Candidate]:
        """The best `k` distinct scored candidates by train score, worst first and best last."""
        best: dict[str, Candidate] = {}
        for c in self.scored():
            key = normalise(c.text)
            if key not in best or self._train_key(c) > self._train_key(best[key]):
                best[key] = c
        ranked = sorted(best.values(), key=self._train_key)
        return ranked[-k:] if k > 0 else []

    def best_distinct(self, k: int) -> list[Candidate]:
        """The best `k` scored candidates with distinct texts, best first (see :func:`best_distinct`)."""
        return best_distinct(self.candidates, k)

    def rejections(self) -> Counter[str]:
        """How many candidates were rejected, by reason."""
        return Counter(c.rejection for c in self.candidates if c.rejection)

    def proposals(self) -> Counter[str]:
        """How many candidates each proposer made after the starting points (rejected ones too)."""
        return Counter(c.proposer or DEFAULT_PROPOSER for c in self.candidates if c.step > 0)

    def to_list(self) -> list[dict[str, Any]]:
        return [c.to_dict() for c in self.candidates]


def best_distinct(candidates: Iterable[Candidate], k: int) -> list[Candidate]:
    """The best `k` scored candidates whose texts differ after :func:`normalise`, best first.

    Ranked by validation score (unvalidated last), then train score, then the earlier step: the
    order reports and artifacts show. Higher scores are better (prompt tasks).
    """
    scored = [c for c in candidates if c.rejection is None and c.train is not None]
    scored.sort(key=lambda c: (-(c.validation if c.validation is not None else -1.0), -(c.train or 0.0), c.step))
    out: list[Candidate] = []
    seen: set[str] = set()
    for c in scored:
        key = normalise(c.text)
        if key not in seen:
            seen.add(key)
            out.append(c)
    return out[:k]
