"""Choosing the winner: a candidate replaces the baseline only when it is significantly better.

Every candidate scored on validation is compared with the baseline on the same validation
examples by a paired one-sided test (:func:`pytest_opro.opro.stats.paired_test`). Picking the best
of several candidates on the same examples favours whichever got lucky (the winner's curse), so
the p-values are corrected for the number of candidates compared, by Holm's step-down method
(it controls the chance of shipping any candidate that is not truly better at ``alpha``, like
Bonferroni, and is never less powerful). A candidate is eligible when its Holm-adjusted p-value is
under ``alpha`` *and* its validation gain is more than ``min_delta``; the eligible candidate with
the best validation score wins. Otherwise the baseline is kept, and :attr:`Selection.reason` says
why in one line with the counts. ``alpha=1`` switches the test off (the best validation score wins
when it beats the baseline by more than ``min_delta``, the rule before the test existed).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, Callable, Sequence

from pytest_opro.opro.stats import paired_test

CORRECTION = "holm"


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
    adjusted_p: float  # Holm-adjusted over every comparison
    method: str  # "sign" or "permutation"

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
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "Selection":
        data = dict(data)
        for key in ("chosen", "best"):
            if data.get(key) is not None:
                data[key] = Comparison(**data[key])
        data.pop("tests", None)
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


def _pvalue(p: float) -> str:
    return f"{p:.2g}" if p >= 0.001 else f"{p:.0e}"


def _counts(c: Comparison, split: str) -> str:
    return f"{c.better} better / {c.worse} worse of {c.n} on {split}"


def _plural(n: int, word: str) -> str:
    return f"{n} {word}{'' if n == 1 else 's'}"


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
) -> tuple[Any, Selection]:
    """The winner among `baseline` and `candidates` (higher scores are better), and how it was chosen.

    `outcomes(c)` gives a candidate's per-example scores on `split` and `score(c)` its mean there.
    Candidates without outcomes are not compared. Ties in validation score go to the earlier
    candidate. Returns `(winner, selection)`; the winner is `baseline` when nothing qualified.
    """
    base_out = outcomes(baseline) or {}
    compared = [c for c in candidates if outcomes(c) is not None and score(c) is not None]
    m = len(compared)
    raw: list[tuple[Any, float, int, int, int, str, float]] = []
    for c in compared:
        cand_out = outcomes(c) or {}
        ids = sorted(set(base_out) & set(cand_out))
        b = [base_out[i] for i in ids]
        v = [cand_out[i] for i in ids]
        test = paired_test(b, v, seed=seed)
        gain = (sum(v) - sum(b)) / len(ids) if ids else 0.0
        raw.append((c, gain, test.better, test.worse, test.n, test.method, test.p_value))
    adjusted = holm([r[6] for r in raw])
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
        )
        for (c, gain, better, worse, n, method, p), adj in zip(raw, adjusted)
    ]
    common: dict[str, Any] = dict(split=split, comparisons=m, alpha=alpha, min_delta=min_delta, tests=tests)
    if not compared:
        return baseline, Selection(True, f"kept the baseline: no candidate was scored on {split}", **common)

    # Best validation score first; ties go to the earlier candidate (lower step, then call).
    order = sorted(range(m), key=lambda i: (-tests[i].score, tests[i].step, tests[i].call))
    best = tests[order[0]]
    significant = (lambda t: True) if alpha >= 1 else (lambda t: t.adjusted_p < alpha)  # alpha 1: no test
    eligible = [i for i in order if significant(tests[i]) and tests[i].gain > min_delta + 1e-12]
    if eligible:
        i = eligible[0]
        t = tests[i]
        how = (
            f"Holm-adjusted {_pvalue(t.adjusted_p)} < {alpha:g} over {_plural(m, 'comparison')}"
            if alpha < 1
            else "no significance required (select_alpha 1)"
        )
        reason = (
            f"shipped the step {t.step} candidate: {_counts(t, split)} ({t.gain * 100:+.1f} points), "
            f"p={_pvalue(t.p_value)}, {how}"
        )
        return compared[i], Selection(False, reason, chosen=t, best=best, **common)

    base_score = score(baseline)
    if best.gain <= 0 and (base_score is None or best.score <= base_score):
        shown = "" if base_score is None else f" ({best.score:.1%} against {base_score:.1%})"
        reason = f"kept the baseline: no candidate beat the baseline on {split}{shown}"
    elif significant(best):  # significant, but not by more than min_delta
        reason = (
            f"kept the baseline: best candidate {_counts(best, split)}, p={_pvalue(best.p_value)}, "
            f"but {best.gain * 100:+.1f} points is not more than min_delta {min_delta * 100:g} points"
        )
    else:
        if m == 1:
            needs = f"needs p<{alpha:g}"
        else:
            needs = f"Holm-adjusted {_pvalue(best.adjusted_p)} after {m} comparisons; needs <{alpha:g}"
        reason = f"kept the baseline: best candidate {_counts(best, split)}, p={_pvalue(best.p_value)} ({needs})"
    return baseline, Selection(True, reason, best=best, **common)
