"""The OPRO optimizer, independent of pytest and of any provider: a generic loop over any
:class:`Problem`, calling models through a :class:`Completer`.

Lives here: the protocols (``problem``), the loop, racing on train (``racing``), the trajectory, the
meta-prompt, early stopping, checkpoints, the statistics selection uses, the sandboxed template
renderer and atomic file writes.

May import: :mod:`pytest_opro.errors` only (and third-party libraries). Never pytest, models,
prompts, problems, plugin or reporting.
"""

from pytest_opro.opro.loop import LoopResult, StepReport, run_loop
from pytest_opro.opro.problem import Completer, Parsed, Problem, Score
from pytest_opro.opro.settings import OptimizerSettings
from pytest_opro.opro.trajectory import Candidate, Trajectory

__all__ = [
    "Candidate",
    "Completer",
    "LoopResult",
    "OptimizerSettings",
    "Parsed",
    "Problem",
    "Score",
    "StepReport",
    "Trajectory",
    "run_loop",
]
