"""Choosing the winner: a candidate replaces the baseline only when it is significantly better.

Every candidate scored on validation is compared with the baseline on the same validation
examples by a paired one-sided test (:func:`pytest_opro.opro.stats.paired_test`). Picking the best
of several candidates on the same examples favours whichever got lucky (the winner's curse), so the
tests share ``alpha`` by a weighted Holm procedure whose weights are fixed before validation is seen:
the candidate with the best train score gets 80% of ``alpha``, the others share the rest, and a
confirmed candidate's share passes on to the others (step-down). The chance that any confirmed
candidate is not truly better stays at or under ``alpha`` whatever the candidates are, because the
weights do not depend on the validation examples. A confirmed candidate is eligible when
its validation gain is more than ``min_delta`` and it was not rejected for another reason (an
answer collapse, see :mod:`pytest_opro.opro.collapse`); the eligible candidate with the best
validation score wins. Otherwise the baseline is kept, and :attr:`Selection.reason` says why in one
line with the counts (and, when the best candidate was better on validation, about how many
validation examples would have confirmed a gain of its size). ``alpha=1`` switches the test off (the
best validation score wins when it beats the baseline by more than ``min_delta``).

``rule="sequence"`` (a fixed sequence in train order, each test at the full ``alpha`` until the first
failure) and ``rule="holm"`` (Holm over every candidate compared, the earlier rule) are kept for the
selection benchmark's comparison (bench/bench_selection.py, bench/RESULTS.md).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any, Callable, Literal, Sequence

from pytest_opro.opro.stats import examples_to_confirm, paired_test

#: How the tests of several candidates are combined: "weighted" (the default: weighted Holm, most of
#: alpha on the candidate best on train), "sequence" (fixed sequence in train order, each at full
#: alpha until the first failure) or "holm" (Holm over every candidate compared, the earlier rule).
Rule = Literal["weighted", "sequence", "holm"]
RULE: Rule = "weighted"
#: The default rule's share of alpha for the candidate best on train (bench/RESULTS.md, "Selection").
LEAD = 0.8
CORRECTION = "holm-weighted-by-train"
_CORRECTIONS: dict[str, str] = {"weighted": CORRECTION, "sequence": "fixed-sequence", "holm": "holm"}


@dataclass(frozen=True)
class Comparison:
    """One candidate against the baseline on the validation examples both have an outcome for."""

    step: int
    call: int
    score: float
    gain: float  # candidate minus baseline mean on the shared examples, in [−1, 1]
    better: int
    worse: int
    n: int
    p_value: float
    adjusted_p: float  # adjusted by the rule: the largest p up to this one in the sequence (or Holm)
    method: str  # "sign" or "permutation"
    rank: int = 0  # place in the test sequence, 1 first (0: not recorded)
    train: float | None = None  # the train score that fixed the order
    #: Why a candidate cannot ship whatever its test says (e.g. its answers collapsed), or None.
    rejected: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class Selection:
    """How the winner was chosen: the test, the correction and, when the baseline was kept, why."""

    kept_baseline: bool
    reason: str
    split: str = "validation"
    comparisons: int = 0
    alpha: float = 0.05
    correction: str = CORRECTION
    min_delta: float = 0.0
    chosen: Comparison | None = None  # the shipped candidate's comparison (None when the baseline was kept)
    best: Comparison | None = None  # the candidate with the best validation score
    tests: list[Comparison] = field(default_factory=list)
    #: About how many validation examples would have confirmed the best candidate's gain, when the
    #: baseline was kept although that candidate was better on validation (None otherwise).
    examples_needed: int | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "kept_baseline": self.kept_baseline,
            "reason": self.reason,
            "split": self.split,
            "comparisons": self.comparisons,
            "alpha": self.alpha,
            "correction": self.correction,
            "min_delta": self.min_delta,
            "chosen": self.chosen.to_dict() if self.chosen else None,
            "best": self.best.to_dict() if self.best else None,
            "examples_needed": self.examples_needed,
            "tests": [t.to_dict() for t in self.tests],
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "Selection":
        data = dict(data)
        for key in ("chosen", "best"):
            if data.get(key) is not None:
                data[key] = Comparison(**data[key])
        data["tests"] = [Comparison(**t) for t in data.get("tests") or []]
        return cls(**data)


def holm(p_values: Sequence[float]) -> list[float]:
    """Holm step-down adjusted p-values, in the input order (monotone, capped at 1)."""
    m = len(p_values)
    order = sorted(range(m), key=lambda i: p_values[i])
    adjusted = [1.0] * m
    running = 0.0
    for rank, i in enumerate(order):
        running = max(running, min(1.0, (m - rank) * p_values[i]))
        adjusted[i] = running
    return adjusted


def weighted_holm(p_values: Sequence[float], weights: Sequence[float]) -> list[float]:
    """Weighted Holm adjusted p-values (Holm 1979): hypothesis i gets the share ``weights[i]`` of
    alpha; step-down, the weights of rejected hypotheses pass to the rest. Weights fixed before the
    data are seen keep the familywise error at alpha; equal weights give :func:`holm`."""
    m = len(p_values)
    order = sorted(range(m), key=lambda i: (p_values[i] / weights[i] if weights[i] > 0 else math.inf, i))
    adjusted = [1.0] * m
    remaining = float(sum(weights))
    running = 0.0
    for i in order:
        value = p_values[i] * remaining / weights[i] if weights[i] > 0 else 1.0
        running = max(running, min(1.0, value))
        adjusted[i] = running
        remaining -= weights[i]
    return adjusted


def train_weights(sequence: Sequence[int], lead: float = LEAD) -> list[float]:
    """The default rule's weights: `lead` of alpha to the candidate first in `sequence` (train
    order), the rest shared equally by the others (all of it to the first when it is alone)."""
    m = len(sequence)
    weights = [0.0] * m
    for place, i in enumerate(sequence):
        weights[i] = (1.0 if m == 1 else lead) if place == 0 else (1.0 - lead) / (m - 1)
    return weights


def fixed_sequence(p_values: Sequence[float], order: Sequence[int]) -> list[float]:
    """Fixed-sequence adjusted p-values: hypotheses tested in `order` (indices), each at full alpha,
    until the first failure; hypothesis ``order[k]``'s adjusted p is the largest p of the first k+1."""
    adjusted = [1.0] * len(p_values)
    running = 0.0
    for i in order:
        running = max(running, p_values[i])
        adjusted[i] = min(1.0, running)
    return adjusted


def _pvalue(p: float) -> str:
    return f"{p:.2g}" if p >= 0.001 else f"{p:.0e}"


def _counts(c: Comparison, split: str) -> str:
    return f"{c.better} better / {c.worse} worse of {c.n} on {split}"


def _plural(n: int, word: str) -> str:
    return f"{n} {word}{'' if n == 1 else 's'}"


def _place(rank: int, m: int) -> str:
    """Where a candidate stood in train order and its share of alpha under the default rule."""
    if m == 1:
        return "the only candidate compared"
    share = LEAD if rank == 1 else (1 - LEAD) / (m - 1)
    return f"{_ordinal(rank)} of {m} on train, {share:.0%} of alpha"


def _ordinal(k: int) -> str:
    return f"{k}{'th' if 10 <= k % 100 <= 20 else {1: 'st', 2: 'nd', 3: 'rd'}.get(k % 10, 'th')}"


def _compare(
    baseline: Any,
    compared: Sequence[Any],
    *,
    outcomes: Callable[[Any], dict[str, float] | None],
    score: Callable[[Any], float | None],
    seed: int = 0,
    order: Callable[[Any], float | None] | None = None,
    rejected: Callable[[Any], str | None] | None = None,
    rule: Rule = RULE,
) -> tuple[list[Comparison], list[int]]:
    """Each of `compared` tested against `baseline` on the examples both have outcomes for, with
    p-values adjusted by `rule`; and the test sequence (indices into `compared`, train order)."""
    base_out = outcomes(baseline) or {}
    m = len(compared)
    keys = [order(c) if order is not None else None for c in compared]

    def sequence_key(i: int) -> tuple[int, float, int, int, int]:
        key = keys[i]
        c = compared[i]
        return (key is None, -(key or 0.0), int(getattr(c, "step", 0)), int(getattr(c, "call", 0)), i)

    sequence = sorted(range(m), key=sequence_key) if order is not None else list(range(m))
    rank = {i: r + 1 for r, i in enumerate(sequence)}
    raw: list[tuple[float, int, int, int, str, float]] = []
    for c in compared:
        cand_out = outcomes(c) or {}
        ids = sorted(set(base_out) & set(cand_out))
        b = [base_out[i] for i in ids]
        v = [cand_out[i] for i in ids]
        test = paired_test(b, v, seed=seed)
        gain = (sum(v) - sum(b)) / len(ids) if ids else 0.0
        raw.append((gain, test.better, test.worse, test.n, test.method, test.p_value))
    p_values = [r[5] for r in raw]
    if rule == "holm":
        adjusted = holm(p_values)
    elif rule == "sequence":
        adjusted = fixed_sequence(p_values, sequence)
    else:
        adjusted = weighted_holm(p_values, train_weights(sequence))
    tests = [
        Comparison(
            step=int(getattr(c, "step", 0)),
            call=int(getattr(c, "call", 0)),
            score=float(score(c) or 0.0),
            gain=gain,
            better=better,
            worse=worse,
            n=n,
            p_value=p,
            adjusted_p=adj,
            method=method,
            rank=rank[i],
            train=keys[i],
            rejected=rejected(c) if rejected is not None else None,
        )
        for i, (c, (gain, better, worse, n, method, p), adj) in enumerate(zip(compared, raw, adjusted))
    ]
    return tests, sequence


def select(
    baseline: Any,
    candidates: Sequence[Any],
    *,
    outcomes: Callable[[Any], dict[str, float] | None],
    score: Callable[[Any], float | None],
    alpha: float,
    min_delta: float = 0.0,
    split: str = "validation",
    seed: int = 0,
    order: Callable[[Any], float | None] | None = None,
    rejected: Callable[[Any], str | None] | None = None,
    rule: Rule = RULE,
) -> tuple[Any, Selection]:
    """The winner among `baseline` and `candidates` (higher scores are better), and how it was chosen.

    `outcomes(c)` gives a candidate's per-example scores on `split` and `score(c)` its mean there.
    `order(c)` is the score that fixes the test sequence before `split` is seen (the train score,
    higher first; candidates without one go last, then by step and call); without it, the sequence is
    the order of `candidates`. `rejected(c)` says why a candidate may not ship whatever its test says
    (it still takes its place in the sequence). Candidates without outcomes are not compared. Ties in
    validation score go to the earlier candidate. Returns `(winner, selection)`; the winner is
    `baseline` when nothing qualified.
    """
    compared = [c for c in candidates if outcomes(c) is not None and score(c) is not None]
    m = len(compared)
    tests, sequence = _compare(
        baseline, compared, outcomes=outcomes, score=score, seed=seed, order=order, rejected=rejected, rule=rule
    )
    common: dict[str, Any] = dict(
        split=split, comparisons=m, alpha=alpha, min_delta=min_delta, correction=_CORRECTIONS[rule], tests=tests
    )
    if not compared:
        return baseline, Selection(True, f"kept the baseline: no candidate was scored on {split}", **common)

    # Best validation score first; ties go to the earlier candidate (lower step, then call).
    by_score = sorted(range(m), key=lambda i: (-tests[i].score, tests[i].step, tests[i].call))
    best = tests[by_score[0]]
    significant = (lambda t: True) if alpha >= 1 else (lambda t: t.adjusted_p < alpha)  # alpha 1: no test
    confirmed = [i for i in by_score if significant(tests[i]) and tests[i].gain > min_delta + 1e-12]
    eligible = [i for i in confirmed if tests[i].rejected is None]
    if eligible:
        t = tests[eligible[0]]
        reason = (
            f"shipped the step {t.step} candidate: {_counts(t, split)} ({t.gain * 100:+.1f} points), "
            f"p={_pvalue(t.p_value)} {_how_confirmed(t, rule, alpha, m)}"
        )
        return compared[eligible[0]], Selection(False, reason, chosen=t, best=best, **common)

    if confirmed:  # confirmed, but none may ship: say why the best of them may not
        t = tests[confirmed[0]]
        reason = (
            f"kept the baseline: the step {t.step} candidate was better ({_counts(t, split)}, "
            f"p={_pvalue(t.p_value)}) but {t.rejected}"
        )
        return baseline, Selection(True, reason, best=best, **common)
    base_score = score(baseline)
    if best.gain <= 0 and (base_score is None or best.score <= base_score):
        shown = "" if base_score is None else f" ({best.score:.1%} against {base_score:.1%})"
        reason = f"kept the baseline: no candidate beat the baseline on {split}{shown}"
        return baseline, Selection(True, reason, best=best, **common)
    if significant(best):  # significant, but not by more than min_delta
        reason = (
            f"kept the baseline: best candidate {_counts(best, split)}, p={_pvalue(best.p_value)}, "
            f"but {best.gain * 100:+.1f} points is not more than min_delta {min_delta * 100:g} points"
        )
        return baseline, Selection(True, reason, best=best, **common)
    size = examples_to_confirm(best.better, best.worse, best.n, alpha) if best.gain > 0 else None
    needed = size if size is not None and size > best.n else None
    more = f"; about {needed} {split} examples would confirm a gain this size at {alpha:g}" if needed else ""
    reason = (
        f"kept the baseline: best candidate {_counts(best, split)}, p={_pvalue(best.p_value)} "
        f"({_why_unconfirmed(best, tests, sequence, rule, alpha)}){more}"
    )
    return baseline, Selection(True, reason, best=best, examples_needed=needed, **common)


def _how_confirmed(t: Comparison, rule: Rule, alpha: float, m: int) -> str:
    """How the shipped candidate's test passed, in the rule's terms."""
    if alpha >= 1:
        return "no significance required (select_alpha 1)"
    if rule == "holm":
        return f"Holm-adjusted {_pvalue(t.adjusted_p)} < {alpha:g} over {_plural(m, 'comparison')}"
    if rule == "sequence":
        return f"< {alpha:g}, tested {t.rank} of {m} in train order (fixed sequence)"
    return f"adjusted {_pvalue(t.adjusted_p)} < {alpha:g} ({_place(t.rank, m)})"


def _why_unconfirmed(
    best: Comparison, tests: Sequence[Comparison], sequence: Sequence[int], rule: Rule, alpha: float
) -> str:
    """Why the best candidate on validation was not confirmed, in the rule's terms."""
    m = len(tests)
    if m == 1 or (rule == "sequence" and best.rank == 1):
        return f"needs p<{alpha:g}"
    if rule == "holm":
        return f"Holm-adjusted {_pvalue(best.adjusted_p)} after {m} comparisons; needs <{alpha:g}"
    if rule == "weighted":
        return f"adjusted {_pvalue(best.adjusted_p)}, {_place(best.rank, m)}; needs <{alpha:g}"
    stop = next(tests[i] for i in sequence if tests[i].p_value >= alpha)
    if stop is not best:
        return (
            f"tested {best.rank} of {m} in train order, after the step {stop.step} candidate "
            f"ended the fixed sequence with p={_pvalue(stop.p_value)}"
        )
    return f"tested {best.rank} of {m} in train order; needs p<{alpha:g}"
