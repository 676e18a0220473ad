"""Hooks users can implement in a conftest.py to follow runs (e.g. log to a tracking tool)."""

from __future__ import annotations

from typing import Any


def pytest_opro_step(task: Any, report: Any) -> None:
    """Called after every optimisation step with the task and its :class:`StepReport`."""


def pytest_opro_candidate(task: Any, candidate: Any) -> None:
    """Called for every candidate once it is scored or rejected (a :class:`Candidate`)."""


def pytest_opro_artifact_written(task: Any, path: Any, result: Any) -> None:
    """Called after an artifact is written, with its path and the :class:`Result`."""


def pytest_opro_gate(task: Any, decision: Any) -> None:
    """Called after the gate decided for a task, with the :class:`GateDecision`."""
