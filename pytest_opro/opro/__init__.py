"""The OPRO optimizer, independent of pytest: a generic loop over any :class:`Problem`."""

from pytest_opro.opro.loop import LoopResult, OptimizerSettings, Parsed, Problem, Score, StepReport, run_loop
from pytest_opro.opro.trajectory import Candidate, Trajectory

__all__ = [
    "Candidate",
    "LoopResult",
    "OptimizerSettings",
    "Parsed",
    "Problem",
    "Score",
    "StepReport",
    "Trajectory",
    "run_loop",
]
