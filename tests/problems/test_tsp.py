"""TSP as an OPRO problem: instances, reference solvers, trace rules, and scripted runs."""

from __future__ import annotations

from itertools import permutations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pytest_opro.models.config import ModelConfig
from pytest_opro.opro.meta_prompt import build_meta_prompt
from pytest_opro.problems.tsp import (
    BEST_KNOWN,
    FARTHEST_INSERTION,
    NEAREST_NEIGHBOUR,
    OPTIMUM,
    TspProblem,
    optimality_gap,
    parse_trace,
    random_points,
    reference_tours,
    run_tsp,
)
from pytest_opro.problems.tsp_solvers import (
    brute_force,
    distance_matrix,
    farthest_insertion,
    held_karp,
    is_valid_tour,
    nearest_neighbour,
    tour_length,
    two_opt,
)

OPTIMIZER = "fake/optimizer"
coordinate = st.integers(-100, 100)


def point_sets(min_size: int, max_size: int):
    return st.lists(st.tuples(coordinate, coordinate), min_size=min_size, max_size=max_size, unique=True)


# -- instances ------------------------------------------------------------------------------------
def test_random_points_are_seeded_distinct_integers_in_range():
    points = random_points(20, seed=7)
    assert points == random_points(20, seed=7) != random_points(20, seed=8)
    assert len(set(points)) == 20
    assert all(isinstance(v, int) and -100 <= v <= 100 for p in points for v in p)


def test_tour_length_closes_the_loop():
    dist = distance_matrix([(0, 0), (3, 0), (3, 4)])
    assert tour_length([0, 1, 2], dist) == pytest.approx(3 + 4 + 5)


# -- reference solvers ----------------------------------------------------------------------------
@settings(max_examples=40, deadline=None)
@given(point_sets(3, 7))
def test_held_karp_equals_brute_force(points):
    dist = distance_matrix(points)
    exact = held_karp(dist)
    assert is_valid_tour(exact, len(points))
    assert tour_length(exact, dist) == pytest.approx(tour_length(brute_force(dist), dist))


@settings(max_examples=60, deadline=None)
@given(point_sets(3, 15))
def test_heuristics_give_valid_tours_no_shorter_than_the_optimum(points):
    dist = distance_matrix(points)
    nn, fi = nearest_neighbour(dist), farthest_insertion(dist)
    assert is_valid_tour(nn, len(points)) and is_valid_tour(fi, len(points))
    if len(points) <= 9:
        best = tour_length(held_karp(dist), dist)
        assert tour_length(nn, dist) >= best - 1e-9
        assert tour_length(fi, dist) >= best - 1e-9


@settings(max_examples=60, deadline=None)
@given(point_sets(3, 14), st.randoms(use_true_random=False))
def test_two_opt_is_never_worse_than_its_start(points, rng):
    dist = distance_matrix(points)
    rest = list(range(1, len(points)))
    rng.shuffle(rest)
    start = [0, *rest]
    improved = two_opt(start, dist)
    assert is_valid_tour(improved, len(points))
    assert tour_length(improved, dist) <= tour_length(start, dist) + 1e-9


def test_references_use_the_exact_optimum_up_to_12_points_and_best_known_beyond():
    small = reference_tours(random_points(12, seed=1))
    assert [r.name for r in small] == [NEAREST_NEIGHBOUR, FARTHEST_INSERTION, OPTIMUM]
    assert small[-1].exact and small[-1].length <= min(r.length for r in small)
    large = reference_tours(random_points(13, seed=1))
    assert [r.name for r in large] == [NEAREST_NEIGHBOUR, FARTHEST_INSERTION, BEST_KNOWN]
    assert not any(r.exact for r in large)
    assert large[-1].length <= large[1].length


def test_optimality_gap_is_relative_to_the_reference():
    assert optimality_gap(110.0, 100.0) == pytest.approx(0.1)
    assert optimality_gap(100.0, 100.0) == 0.0


# -- traces ---------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "text,expected",
    [
        ("<trace>0,2,1,3</trace>", "0,2,1,3"),
        ("<trace> 0, 2, 1, 3 </trace>", "0,2,1,3"),
        ("<TRACE>0 -> 3 -> 1 -> 2</TRACE>", "0,3,1,2"),
        ("old <trace>0,1,2,3</trace> new <trace>0,3,2,1</trace>", "0,3,2,1"),
        ("<trace>...</trace> then <trace>0,1,3,2</trace>", "0,1,3,2"),
        ("<trace>0,1,3,2</trace> is my answer; the format is <trace>...</trace>", "0,1,3,2"),
    ],
)
def test_parse_trace_accepts_valid_traces(text, expected):
    parsed = parse_trace(text, 4)
    assert (parsed.solution, parsed.rejection) == (expected, None)


@pytest.mark.parametrize(
    "text,reason",
    [
        ("0,1,2,3", "no <trace>...</trace>"),
        ("<trace>0,1,2,3", "no <trace>...</trace>"),
        ("<trace>visit 0 then 1, 2, 3</trace>", "malformed trace"),
        ("<trace>1,0,2,3</trace>", "trace does not start at node 0"),
        ("<trace>0,1,2,4</trace>", "trace has an unknown node"),
        ("<trace>0,1,1,2,3</trace>", "trace repeats a node"),
        ("<trace>0,1,2,3,0</trace>", "trace repeats a node"),
        ("<trace>0,1,2</trace>", "trace misses nodes"),
    ],
)
def test_parse_trace_rejects_invalid_traces(text, reason):
    parsed = parse_trace(text, 4)
    assert (parsed.solution, parsed.rejection) == (None, reason)


def test_starting_traces_are_valid_distinct_and_not_optimal():
    problem = TspProblem(random_points(6, seed=0), ModelConfig(OPTIMIZER))
    starts = problem.initial_solutions()
    assert len(set(starts)) == 5 and starts == problem.initial_solutions()
    best = problem.optimum.length
    for text in starts:
        tour = [int(t) for t in text.split(",")]
        assert is_valid_tour(tour, 6) and problem.length(tour) > best + 1e-6
    assert not problem.is_optimal(best + 1) and problem.is_optimal(best)


def test_meta_prompt_shows_coordinates_and_traces_best_last():
    problem = TspProblem([(0, 0), (3, 0), (3, 4)], ModelConfig(OPTIMIZER))
    trajectory = [{"text": "0,2,1", "score": 20}, {"text": "0,1,2", "score": 12}]
    text = build_meta_prompt(
        problem.meta_prompt,
        {**problem.meta_prompt_variables(1, None), "trajectory": trajectory, "show_scores": True, "step": 1},
    )
    assert "(0): (0, 0), (1): (3, 0), (2): (3, 4)" in text
    assert text.index("<trace> 0,2,1 </trace>") < text.index("<trace> 0,1,2 </trace>")
    assert "end with </trace>" in text


# -- runs with a scripted optimizer ---------------------------------------------------------------
def tour_text(tour) -> str:
    return "<trace>" + ",".join(map(str, tour)) + "</trace>"


def test_run_reasks_for_invalid_traces_and_stops_at_the_optimum(fake_llm):
    points = random_points(6, seed=0)
    problem = TspProblem(points, ModelConfig(OPTIMIZER))
    optimum = list(problem.optimum.tour)
    shown = set(problem.initial_solutions())
    others = [",".join(map(str, t)) for t in permutations(range(1, 6))]
    others = [
        "0," + t
        for t in others
        if "0," + t not in shown and problem.length([0, *map(int, t.split(","))]) > problem.optimum.length + 1e-6
    ]
    invalid = ["no idea", "<trace>1,0,2,3,4,5</trace>", "<trace>0,1,1,2,3,4</trace>", "<trace>0,1,2</trace>"]

    def script(prompt: str, n: int) -> str:
        if prompt.count("length:") == 5:  # step 1: four invalid replies; valid tours when asked again
            return invalid[n] if n < 4 else f"<trace>{others[n]}</trace>"
        return tour_text(optimum) if n == 1 else f"<trace>{others[10 + n]}</trace>"

    fake_llm.optimizer = script
    report = run_tsp(optimizer=OPTIMIZER, n=6, steps=5, candidates=4, reask=2, cache=None)
    assert report.stop_reason == "optimum reached"
    assert report.steps_to_optimum == 2 and report.optimum_known and report.solved
    assert report.best_length == pytest.approx(report.references[OPTIMUM])
    assert report.gaps[OPTIMUM][-1] == pytest.approx(0.0)
    assert len(report.gaps[NEAREST_NEIGHBOUR]) == report.steps_run + 1 == 3
    assert all(g >= -1e-9 for g in report.gaps[OPTIMUM])
    assert report.steps_to_reference[OPTIMUM] == 2
    assert report.rejections == {
        "no <trace>...</trace>": 1,
        "trace does not start at node 0": 1,
        "trace repeats a node": 1,
        "trace misses nodes": 1,
    }
    assert fake_llm.calls[OPTIMIZER] == 4 + 4 + 4  # step 1 asked again for the 4 invalid replies
    assert "gap per step" in report.summary()
    assert report.to_dict()["trajectory"][-1]["step"] == 2


def test_reasking_is_bounded_when_no_reply_is_valid(fake_llm):
    fake_llm.optimizer = lambda prompt, n: "I like travelling."
    report = run_tsp(optimizer=OPTIMIZER, n=5, steps=3, candidates=4, reask=2, cache=None)
    assert fake_llm.calls[OPTIMIZER] == 3 * 4 * 3
    assert report.stop_reason == "max_steps=3 reached"
    assert report.rejections == {"no <trace>...</trace>": 36}
    assert report.steps_to_optimum is None
    assert len(set(report.length_per_step)) == 1
