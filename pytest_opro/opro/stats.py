"""Small statistics used by results and the gate: intervals and the exact paired test."""

from __future__ import annotations

import math


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
