"""Mathematical problems optimised by the same OPRO loop as prompts: linear regression and TSP.

They reproduce the first experiments of the OPRO paper and show that the optimizer is generic: each
is a :class:`pytest_opro.opro.Problem` that scores solutions locally, with no special case in the
loop. Run them with :func:`run_linear_regression` and :func:`run_tsp`.

May import: :mod:`pytest_opro.opro`, :mod:`pytest_opro.models`, :mod:`pytest_opro.errors`. Never pytest
(their fixtures live in :mod:`pytest_opro.plugin.paper_fixtures`), prompts, plugin or reporting.
"""

from pytest_opro.problems.linear_regression import (
    LinearRegressionProblem,
    LinearRegressionReport,
    RegressionData,
    run_linear_regression,
    run_linear_regression_async,
)
from pytest_opro.problems.tsp import (
    Reference,
    TspProblem,
    TspReport,
    random_points,
    reference_tours,
    run_tsp,
    run_tsp_async,
)

__all__ = [
    "LinearRegressionProblem",
    "LinearRegressionReport",
    "Reference",
    "RegressionData",
    "TspProblem",
    "TspReport",
    "random_points",
    "reference_tours",
    "run_linear_regression",
    "run_linear_regression_async",
    "run_tsp",
    "run_tsp_async",
]
