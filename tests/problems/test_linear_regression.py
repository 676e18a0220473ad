"""Linear regression as an OPRO problem: data, objective, parsing, and a scripted run to the optimum."""

from __future__ import annotations

import re

import pytest

from pytest_opro.models.cache import ResponseCache
from pytest_opro.models.client import LLMClient
from pytest_opro.models.config import Budget, ModelConfig
from pytest_opro.opro.meta_prompt import build_meta_prompt
from pytest_opro.opro.settings import OptimizerSettings
from pytest_opro.problems.linear_regression import (
    LinearRegressionProblem,
    RegressionData,
    format_pair,
    pair_of,
    parse_pair,
    run_linear_regression,
)

OPTIMIZER = "fake/optimizer"


# -- data and objective -------------------------------------------------------------------------
def test_data_has_50_points_x_1_to_50_and_is_seeded():
    data = RegressionData.generate(15, 14, seed=3)
    assert data.xs == tuple(float(x) for x in range(1, 51))
    assert data == RegressionData.generate(15, 14, seed=3)
    assert data.ys != RegressionData.generate(15, 14, seed=4).ys
    residuals = [y - (15 * x + 14) for x, y in zip(data.xs, data.ys)]
    assert 0.5 < (sum(r * r for r in residuals) / 50) ** 0.5 < 1.5  # noise sd 1


def test_loss_is_the_sum_of_squared_residuals():
    data = RegressionData((1.0, 2.0, 3.0), (2.0, 4.0, 7.0), 2, 0, 0.0, 0)
    assert data.loss(2, 0) == pytest.approx(0 + 0 + 1)
    assert data.loss(0, 0) == pytest.approx(4 + 16 + 49)


def test_noise_free_data_has_the_true_pair_as_optimum_with_zero_loss():
    data = RegressionData.generate(36, -1, noise=0.0, seed=0)
    assert data.optimum() == (36, -1)
    assert data.loss(36, -1) == 0.0


@pytest.mark.parametrize("w_true,b_true", [(15, 14), (36, -1)])
@pytest.mark.parametrize("seed", range(5))
def test_rounded_least_squares_is_the_best_integer_pair(w_true, b_true, seed):
    data = RegressionData.generate(w_true, b_true, seed=seed)
    assert data.optimum() == data.integer_minimum() == (w_true, b_true)
    w, b = data.optimum()
    for dw in (-1, 0, 1):
        for db in (-1, 0, 1):
            assert data.loss(w + dw, b + db) >= data.loss(w, b)


# -- parsing ------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "text,expected",
    [
        ("[15, 14]", "w=15, b=14"),
        ("I'd try [3, 4], then [5, 6]", "w=5, b=6"),  # the last pair
        ("The output is [5, 6]. Format: [w, b]", "w=5, b=6"),  # the placeholder is skipped
        ("[w, b] = [7, 8]", "w=7, b=8"),
        ("[-3, -12]", "w=-3, b=-12"),
        ("[w=5, b=-2]", "w=5, b=-2"),
        ("[ +15.0 ,14 ]", "w=15, b=14"),
    ],
)
def test_parse_takes_the_last_numeric_pair(text, expected):
    parsed = parse_pair(text)
    assert parsed.rejection is None
    assert parsed.solution == expected


@pytest.mark.parametrize(
    "text,reason",
    [
        ("", "no [w, b] pair"),
        ("I cannot help with that.", "no [w, b] pair"),
        ("[w, b]", "no [w, b] pair"),
        ("(15, 14)", "no [w, b] pair"),
        ("[15, 14, 13]", "no [w, b] pair"),
        ("[15.5, 3]", "non-integer pair"),
    ],
)
def test_parse_rejects_garbage_with_a_reason(text, reason):
    parsed = parse_pair(text)
    assert parsed.solution is None
    assert parsed.rejection == reason


def test_canonical_text_round_trips():
    assert pair_of(format_pair(-4, 17)) == (-4, 17)


# -- the problem --------------------------------------------------------------------------------
def problem(seed: int = 0) -> LinearRegressionProblem:
    return LinearRegressionProblem(RegressionData.generate(15, 14, seed=seed), ModelConfig(OPTIMIZER), seed=seed)


def test_starting_pairs_are_five_distinct_seeded_non_optimal_pairs():
    starts = problem().initial_solutions()
    assert len(set(starts)) == 5
    assert starts == problem().initial_solutions()
    assert "w=15, b=14" not in starts
    assert all(10 <= v <= 20 for s in starts for v in pair_of(s))


def test_meta_prompt_lists_pairs_best_last_and_asks_for_a_bracketed_pair():
    p = problem()
    trajectory = [{"text": "w=10, b=10", "score": 900}, {"text": "w=14, b=11", "score": 120}]
    text = build_meta_prompt(
        p.meta_prompt, {**p.meta_prompt_variables(1, None), "trajectory": trajectory, "show_scores": True, "step": 1}
    )
    assert text.index("w=10, b=10") < text.index("900") < text.index("w=14, b=11") < text.index("120")
    assert "different from all pairs above" in text
    assert text.rstrip().endswith("The output must end with a pair [w, b], where w and b are numerical values.")


# -- runs with a scripted optimizer ---------------------------------------------------------------
def scripted(prompt: str, n: int) -> str:
    """Step 1: two useless replies and six ordinary pairs; step 2: the optimum once among others."""
    if "w=1, b=" not in prompt:
        if n == 0:
            return "Let me think about lines."
        if n == 1:
            return "The answer is [w, b]."
        return f"Maybe [9, 9]? No: [1, {n}]"
    return "[15, 14]" if n == 3 else f"[2, {n}]"


def test_run_stops_when_the_optimum_is_proposed(fake_llm):
    fake_llm.optimizer = scripted
    report = run_linear_regression(optimizer=OPTIMIZER, steps=5, cache=None)
    assert report.stop_reason == "optimum reached"
    assert report.steps_to_optimum == 2 and report.steps_run == 2 and report.solved
    assert report.best_pair == report.optimum == (15, 14)
    assert report.distinct_pairs == 5 + 6 + 8
    assert report.rejections == {"no [w, b] pair": 2}
    assert len(report.best_per_step) == 3
    assert report.best_per_step == sorted(report.best_per_step, reverse=True)
    assert report.best_per_step[-1] == pytest.approx(report.optimum_loss)
    assert fake_llm.calls[OPTIMIZER] == 16

    first_prompt = fake_llm.log[0][1][0]["content"]
    values = [int(v) for v in re.findall(r"value:\n(\d+)", first_prompt)]
    assert len(values) == 5 and values == sorted(values, reverse=True)
    assert "optimum [15, 14] reached at step 2" in report.summary()
    assert report.to_dict()["trajectory"][0]["step"] == 0


def test_a_budget_stops_the_run(fake_llm):
    fake_llm.optimizer = scripted
    report = run_linear_regression(optimizer=OPTIMIZER, steps=5, cache=None, budget=Budget(max_calls=8))
    assert report.stop_reason.startswith("budget")
    assert report.steps_to_optimum is None
    assert report.steps_run == 1


def test_a_cached_run_replays_without_calls(fake_llm, tmp_path):
    fake_llm.optimizer = scripted
    first = run_linear_regression(optimizer=OPTIMIZER, steps=5, cache=tmp_path / "cache")
    calls = fake_llm.calls[OPTIMIZER]
    again = run_linear_regression(optimizer=OPTIMIZER, steps=5, cache=ResponseCache(tmp_path / "cache"))
    assert fake_llm.calls[OPTIMIZER] == calls
    assert again.best_per_step == first.best_per_step
    assert again.steps_to_optimum == first.steps_to_optimum == 2


def test_without_the_optimum_the_run_goes_to_max_steps(fake_llm):
    fake_llm.optimizer = lambda prompt, n: f"[{n}, {len(prompt) % 97}]"
    client = LLMClient()
    report = run_linear_regression(
        optimizer=OPTIMIZER,
        steps=3,
        cache=None,
        client=client,
        settings=OptimizerSettings(max_steps=3, candidates=2, patience=0),
    )
    assert report.stop_reason == "max_steps=3 reached"
    assert report.steps_to_optimum is None
    assert len(report.best_per_step) == 4
