"""Improve travelling-salesman tours by asking an LLM: OPRO paper, section 3.

``pytest examples/tsp`` checks the reference solvers quickly. Add ``--opro-optimize`` to run the
optimizer on 6 points (2 steps of 4 proposals, each step asking again once for invalid replies)
and print the optimality gap per step against each reference tour.
"""

from __future__ import annotations

from itertools import permutations

import pytest

from pytest_opro.problems import random_points, reference_tours, run_tsp
from pytest_opro.problems.tsp_solvers import distance_matrix, is_valid_tour, tour_length

STEPS = 2
CANDIDATES = 4
REASK = 1


@pytest.mark.parametrize("n", [5, 8, 10])
def test_reference_tours_are_valid_and_the_optimum_is_shortest(n):
    points = random_points(n, seed=0)
    dist = distance_matrix(points)
    refs = reference_tours(points)
    for ref in refs:
        assert is_valid_tour(list(ref.tour), n)
        assert ref.length == pytest.approx(tour_length(ref.tour, dist))
    optimum = refs[-1]
    assert optimum.exact
    assert all(optimum.length <= r.length + 1e-9 for r in refs)
    if n <= 8:
        brute = min(tour_length((0, *rest), dist) for rest in permutations(range(1, n)))
        assert optimum.length == pytest.approx(brute)


def test_optimize_tsp(opro_optimize_requested, opro_run_options, tsp_instance, opro_save_report):
    if not opro_optimize_requested:
        pytest.skip("calls the optimizer model only under --opro-optimize")
    options = opro_run_options(steps=STEPS, candidates=CANDIDATES, seed=tsp_instance.pop("seed"))
    report = run_tsp(**options, reask=REASK, **tsp_instance)
    opro_save_report("tsp", report)
    proposals = sum(1 for c in report.loop.trajectory.candidates if c.step > 0)
    assert report.rejections.get("optimizer call failed", 0) < proposals, (
        f"every optimizer call to {options.get('optimizer')} failed; is the model available?"
    )
    best_reference = list(report.references)[-1]
    assert all(gap >= -1e-9 for gap in report.gaps[best_reference])
    assert report.length_per_step == sorted(report.length_per_step, reverse=True)
