"""Hooks users can implement in a conftest.py to follow runs (e.g. log to a tracking tool)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from pytest_opro.opro.loop import StepReport
    from pytest_opro.opro.trajectory import Candidate
    from pytest_opro.prompts.gate import GateDecision
    from pytest_opro.prompts.result import Result
    from pytest_opro.prompts.task import PromptTask


def pytest_opro_step(task: PromptTask, report: StepReport) -> None:
    """Called after every optimisation step with the task and its :class:`StepReport`."""


def pytest_opro_candidate(task: PromptTask, candidate: Candidate) -> None:
    """Called for every candidate once it is scored or rejected (a :class:`Candidate`)."""


def pytest_opro_artifact_written(task: PromptTask, path: Path, result: Result) -> None:
    """Called after an artifact is written, with its path and the :class:`Result`."""


def pytest_opro_gate(task: PromptTask, decision: GateDecision) -> None:
    """Called after the gate decided for a task, with the :class:`GateDecision`."""
