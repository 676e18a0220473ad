"""The paired one-sided test shared by selection and the gate."""

from __future__ import annotations

import itertools
import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pytest_opro.opro.stats import PairedTest, paired_test


def binary(better: int, worse: int, ties: int = 0) -> tuple[list[float], list[float]]:
    base = [0.0] * better + [1.0] * worse + [1.0] * ties
    cand = [1.0] * better + [0.0] * worse + [1.0] * ties
    return base, cand


@pytest.mark.parametrize(
    "better, worse, expected",
    [
        (0, 0, 1.0),
        (0, 5, 1.0),
        (1, 0, 0.5),
        (5, 0, 1 / 32),
        (2, 1, 4 / 8),
        (8, 2, 56 / 1024),
        (5, 5, 638 / 1024),
        # the issue's example: 17 better / 12 worse of 30 -> P(X >= 17), X ~ Bin(29, 1/2)
        (17, 12, sum(math.comb(29, k) for k in range(17, 30)) / 2**29),
    ],
)
def test_binary_scores_use_the_exact_sign_test(better: int, worse: int, expected: float) -> None:
    base, cand = binary(better, worse, ties=3)
    result = paired_test(base, cand)
    assert result == PairedTest(pytest.approx(expected), better, worse, better + worse + 3, "sign", 0)


def test_the_issue_example_is_not_significant() -> None:
    base, cand = binary(17, 12, ties=1)
    assert paired_test(base, cand).p_value == pytest.approx(0.2291, abs=1e-4)


def test_graded_scores_small_n_are_enumerated_exactly() -> None:
    # differences 0.5, 0.3, -0.2: of the 8 sign patterns, (+,+,+)=1.0 and (+,+,-)=0.6 reach the observed 0.6
    result = paired_test([0.0, 0.2, 0.6], [0.5, 0.5, 0.4])
    assert result.method == "permutation" and result.resamples == 0
    assert (result.better, result.worse, result.n) == (2, 1, 3)
    assert result.p_value == pytest.approx(2 / 8)


def test_graded_ties_do_not_count() -> None:
    result = paired_test([0.5, 0.5, 0.1], [0.5, 0.5, 0.4])
    assert (result.better, result.worse, result.n) == (1, 0, 3)
    assert result.p_value == pytest.approx(0.5)


def test_graded_all_better_equal_magnitudes() -> None:
    # ten differences of +0.5: only the all-plus pattern reaches the observed sum
    result = paired_test([0.25] * 10, [0.75] * 10)
    assert result.p_value == pytest.approx(1 / 1024)
    assert result.resamples == 0


def test_no_improvement_has_p_one() -> None:
    assert paired_test([0.3, 0.7], [0.3, 0.7]).p_value == 1.0
    assert paired_test([0.5, 0.7], [0.3, 0.6]).p_value == 1.0


def brute_force(base: list[float], cand: list[float]) -> float:
    diffs = [c - b for b, c in zip(base, cand) if abs(c - b) > 1e-12]
    observed = sum(diffs)
    hits = sum(
        1
        for signs in itertools.product((1, -1), repeat=len(diffs))
        if sum(s * d for s, d in zip(signs, diffs)) >= observed - 1e-9
    )
    return hits / 2 ** len(diffs)


scores = st.sampled_from([0.0, 0.1, 0.25, 0.5, 0.6, 0.75, 1.0])


@settings(max_examples=80, deadline=None)
@given(st.lists(st.tuples(scores, scores), min_size=1, max_size=10))
def test_exact_permutation_matches_brute_force(pairs: list[tuple[float, float]]) -> None:
    base = [b for b, _ in pairs]
    cand = [c for _, c in pairs]
    result = paired_test(base, cand)
    if result.method == "sign":
        return
    assert result.p_value == pytest.approx(brute_force(base, cand), abs=1e-9)


def test_large_n_resamples_are_seeded_and_close_to_exact() -> None:
    base = [0.2, 0.4, 0.5, 0.1] * 10
    cand = [0.4, 0.3, 0.9, 0.1] * 10
    a = paired_test(base, cand, resamples=4000, seed=1)
    b = paired_test(base, cand, resamples=4000, seed=1)
    assert a == b and a.method == "permutation" and a.resamples == 4000
    # 30 non-zero differences: too many to enumerate with 4000 resamples; compare with the exact value
    exact = paired_test(base, cand, resamples=2**30)
    assert exact.resamples == 0
    assert a.p_value == pytest.approx(exact.p_value, abs=0.02)


def test_unequal_lengths_are_refused() -> None:
    with pytest.raises(ValueError, match="paired"):
        paired_test([1.0], [1.0, 0.0])
