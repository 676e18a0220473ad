"""Small statistics used by results, selection and the gate: intervals and paired one-sided tests."""

from __future__ import annotations

import math
import random
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

# Differences smaller than this count as ties (scores are floats in [0, 1]).
_TIE = 1e-12


def aggregate_samples(values: Sequence[float], how: str = "mean") -> float:
    """One example's score from its k samples' scores: "mean" (graded), "all" (1 only when every
    sample scored 1: pass^k) or "majority" (1 when more than half scored 1)."""
    if not values:
        raise ValueError("aggregate_samples needs at least one sample")
    if how == "mean":
        return sum(values) / len(values)
    right = sum(1 for v in values if v >= 1.0 - _TIE)
    if how == "all":
        return 1.0 if right == len(values) else 0.0
    if how == "majority":
        return 1.0 if 2 * right > len(values) else 0.0
    raise ValueError(f"unknown aggregate {how!r}: use mean, all or majority")


def mean_interval(values: list[float], confidence: float = 0.95) -> tuple[float, float]:
    """A confidence interval for the mean of scores in [0, 1].

    Binary outcomes get the Wilson score interval (good at small n and near 0 or 1); graded scores
    use the normal approximation clipped to [0, 1].
    """
    n = len(values)
    if n == 0:
        return (0.0, 1.0)
    z = _z(confidence)
    mean = sum(values) / n
    if all(v in (0.0, 1.0) for v in values):
        return _wilson(mean, n, z)
    var = sum((v - mean) ** 2 for v in values) / max(1, n - 1)
    half = z * math.sqrt(var / n)
    return (max(0.0, mean - half), min(1.0, mean + half))


def mean_interval_from_mean(mean: float, n: int, confidence: float = 0.95) -> tuple[float, float]:
    """The Wilson interval for a proportion `mean` observed over `n` outcomes."""
    if n <= 0:
        return (0.0, 1.0)
    return _wilson(min(1.0, max(0.0, mean)), n, _z(confidence))


def _wilson(p: float, n: int, z: float) -> tuple[float, float]:
    denom = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    # min/max with p: rounding must not leave the observed proportion outside its own interval
    return (max(0.0, min(p, centre - half)), min(1.0, max(p, centre + half)))


def _z(confidence: float) -> float:
    from statistics import NormalDist

    return NormalDist().inv_cdf(0.5 + confidence / 2)


def sign_test_one_sided(worse: int, better: int) -> float:
    """Exact one-sided McNemar (sign) test: P(at least `worse` of the discordant pairs got worse | no change)."""
    n = worse + better
    if n == 0 or worse == 0:
        return 1.0
    return min(1.0, sum(math.comb(n, k) for k in range(worse, n + 1)) / float(2**n))


def smallest_confirmable(n: int, alpha: float) -> int | None:
    """The smallest net gain, in examples, that one exact paired test at `alpha` can confirm on `n`
    examples (every discordant example in favour: p = 2^-k), or None when `n` examples cannot."""
    if alpha >= 1:
        return 1 if n >= 1 else None
    k = 1
    while 2.0**-k >= alpha:
        k += 1
    return k if k <= n else None


def examples_to_confirm(better: int, worse: int, n: int, alpha: float, limit: int = 100_000) -> int | None:
    """About how many paired examples would confirm a gain of this size at `alpha`: the smallest N
    for which `better` and `worse` scaled from `n` to N examples give a one-sided sign-test p under
    `alpha` (exact up to 200 discordant examples, the normal approximation beyond). None when the
    candidate was not better, or not within `limit` examples."""
    if n <= 0 or better <= worse:
        return None
    z = _z(1 - 2 * alpha) if alpha < 0.5 else 0.0
    size = n
    while size <= limit:
        b, w = round(better * size / n), round(worse * size / n)
        if b > w:
            if b + w <= 200:
                if sign_test_one_sided(b, w) < alpha:
                    return size
            elif (b - w - 1) / math.sqrt(b + w) > z:  # continuity-corrected
                return size
        size = size + 1 if size < 400 else int(size * 1.01) + 1
    return None


@dataclass(frozen=True)
class PairedTest:
    """The outcome of `paired_test`: is a candidate better than a baseline on the same examples?

    `better` / `worse` count the examples where the candidate scored higher / lower (ties are in
    neither), `n` is the number of paired examples. `method` is "sign" (exact one-sided sign test,
    used when every score is 0 or 1) or "permutation" (sign-flip permutation test on the paired
    differences). `resamples` is how many random sign-flips estimated the p-value; 0 means the
    p-value is exact (the sign test, or the permutation test enumerated over every sign pattern).
    """

    p_value: float
    better: int
    worse: int
    n: int
    method: str
    resamples: int

    def as_dict(self) -> dict[str, Any]:
        return {
            "p_value": self.p_value,
            "better": self.better,
            "worse": self.worse,
            "n": self.n,
            "method": self.method,
            "resamples": self.resamples,
        }


def paired_test(
    baseline: Sequence[float], candidate: Sequence[float], *, resamples: int = 10_000, seed: int = 0
) -> PairedTest:
    """One-sided: is `candidate` better than `baseline` on the same examples?

    `baseline[i]` and `candidate[i]` are the two scores of example i. When every score is 0 or 1 this
    is the exact one-sided sign (McNemar) test on the discordant pairs. Otherwise it is a sign-flip
    permutation test on the differences `candidate[i] - baseline[i]`: under "no difference" each
    difference is equally likely positive or negative, and the p-value is the share of sign patterns
    whose sum is at least the observed sum. With m non-zero differences, every pattern is enumerated
    when 2**m <= resamples (exact, `resamples=0` in the result); otherwise `resamples` random
    patterns drawn with `random.Random(seed)` estimate it as (1 + hits) / (1 + resamples).
    """
    if len(baseline) != len(candidate):
        raise ValueError(f"paired_test needs paired scores: {len(baseline)} baseline vs {len(candidate)} candidate")
    n = len(baseline)
    diffs = [float(c) - float(b) for b, c in zip(baseline, candidate)]
    better = sum(1 for d in diffs if d > _TIE)
    worse = sum(1 for d in diffs if d < -_TIE)
    if all(float(v) in (0.0, 1.0) for v in (*baseline, *candidate)):
        # sign_test_one_sided(k, m) = P(at least k of the discordant pairs go one way | no change)
        return PairedTest(sign_test_one_sided(better, worse), better, worse, n, "sign", 0)
    nonzero = [d for d in diffs if abs(d) > _TIE]
    if not nonzero or better == 0:
        return PairedTest(1.0, better, worse, n, "permutation", 0)
    observed = sum(nonzero) - 1e-9  # tolerance: patterns equal to the observed sum count as hits
    # Group equal magnitudes: the sum over a group of c flips of size v is v * (2K - c), K ~ Bin(c, 1/2).
    groups: dict[float, int] = {}
    for d in nonzero:
        key = round(abs(d), 12)
        groups[key] = groups.get(key, 0) + 1
    m = len(nonzero)
    if resamples <= 0 or 2**m <= max(resamples, 1):
        return PairedTest(_exact_flip_p(groups, observed), better, worse, n, "permutation", 0)
    rng = random.Random(seed)
    items = sorted(groups.items())
    hits = 0
    for _ in range(resamples):
        total = 0.0
        for value, count in items:
            total += value * (2 * rng.getrandbits(count).bit_count() - count)
        if total >= observed:
            hits += 1
    return PairedTest((1 + hits) / (1 + resamples), better, worse, n, "permutation", resamples)


def _exact_flip_p(groups: dict[float, int], observed: float) -> float:
    """P(sum of randomly signed differences >= observed), by convolving the groups' binomials."""
    dist: dict[float, float] = {0.0: 1.0}
    for value, count in sorted(groups.items()):
        weights = [math.comb(count, k) / 2**count for k in range(count + 1)]
        nxt: dict[float, float] = {}
        for total, prob in dist.items():
            for k, w in enumerate(weights):
                key = round(total + value * (2 * k - count), 9)
                nxt[key] = nxt.get(key, 0.0) + prob * w
        dist = nxt
    return min(1.0, sum(prob for total, prob in dist.items() if total >= observed))
