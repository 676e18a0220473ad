"""Fit a line by asking an LLM for integer pairs (w, b): OPRO paper, section 3.

``pytest examples/linear_regression`` checks the reference math quickly. Add ``--opro-optimize`` to
run the optimizer (3 steps of 8 proposals, about half a minute with the embedded model) and print
steps to the optimum, distinct pairs tried and the best loss per step.
"""

from __future__ import annotations

import pytest

from pytest_opro.problems import RegressionData, run_linear_regression

STEPS = 3
CANDIDATES = 8


@pytest.mark.parametrize("w_true,b_true", [(15, 14), (36, -1)])
def test_reference_optimum_is_the_best_integer_pair(w_true, b_true):
    data = RegressionData.generate(w_true, b_true, seed=0)
    assert len(data.xs) == 50
    assert data.optimum() == data.integer_minimum() == (w_true, b_true)
    w, b = data.optimum()
    assert data.loss(w, b) < min(data.loss(w + dw, b + db) for dw, db in [(1, 0), (-1, 0), (0, 1), (0, -1)])


def test_optimize_linear_regression(opro_optimize_requested, opro_run_options, regression_instance, opro_save_report):
    if not opro_optimize_requested:
        pytest.skip("calls the optimizer model only under --opro-optimize")
    options = opro_run_options(steps=STEPS, candidates=CANDIDATES, seed=regression_instance.pop("seed"))
    report = run_linear_regression(**options, **regression_instance)
    opro_save_report("linear_regression", report)
    proposals = sum(1 for c in report.loop.trajectory.candidates if c.step > 0)
    assert report.rejections.get("optimizer call failed", 0) < proposals, (
        f"every optimizer call to {options.get('optimizer')} failed; is the model available?"
    )
    assert report.best_per_step == sorted(report.best_per_step, reverse=True)
    assert report.distinct_pairs >= 5
