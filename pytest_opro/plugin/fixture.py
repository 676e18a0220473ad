"""The ``opro`` fixture object: one call per prompt task in a test."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from pytest_opro.errors import OproError
from pytest_opro.plugin.session import OproSession
from pytest_opro.reporting.outcome import TaskRecord, TaskStatus, task_ok


class OproFixture:
    """What a test receives as ``opro``.

    ``opro.check(task)`` optimises (under ``--opro-optimize``) or gates the task;
    ``opro.instruction(task)`` returns the committed instruction for use in other tests.
    """

    def __init__(self, session: OproSession, request: pytest.FixtureRequest) -> None:
        self._session = session
        self._request = request

    @property
    def _module_path(self) -> Path:
        return Path(self._request.node.path)

    def artifact_path(self, task: Any) -> Path:
        """Where `task`'s artifact lives for this test module."""
        return self._session.artifact_path(self._module_path, task)

    def instruction(self, task: Any) -> str:
        """The committed instruction of `task` (fails the test when there is no artifact)."""
        from pytest_opro.prompts.artifact import load_artifact

        path = self.artifact_path(task)
        if not path.exists():
            pytest.fail(
                f"opro {task.name}: no artifact at {path}; create it with: pytest --opro-optimize", pytrace=False
            )
        try:
            return load_artifact(path).instruction
        except OproError as exc:
            problem = str(exc)
        pytest.fail(problem, pytrace=False)  # outside `except`: no chained traceback in the report

    def check(self, task: Any) -> TaskRecord:
        """Optimise `task` under --opro-optimize, else gate it against its committed artifact."""
        from pytest_opro.prompts.task import PromptTask

        if not isinstance(task, PromptTask):
            pytest.fail(f"opro.check() needs a PromptTask, got {type(task).__name__}", pytrace=False)
        session, nodeid = self._session, self._request.node.nodeid
        failure = None
        try:
            if session.options.optimize:
                record = session.optimize(task, self._module_path, nodeid)
            else:
                record = session.gate(task, self._module_path, nodeid)
        except OproError as exc:
            record = session.error(task.name, nodeid, exc, artifact=str(self.artifact_path(task)))
            failure = f"opro {task.name}: {exc}"
        self._record_properties(record)
        if failure is not None:  # failed outside `except`: no chained traceback in the report
            pytest.fail(failure, pytrace=False)
        if not task_ok(record.status, allow_no_gain=bool(session.options.allow_no_gain)):
            pytest.fail(record.message, pytrace=False)
        return record

    def _record_properties(self, record: TaskRecord) -> None:
        props = {
            "opro_task": record.task,
            "opro_mode": record.mode,
            "opro_status": TaskStatus(record.status).value,
            "opro_test_score": record.test,
            "opro_baseline_test_score": record.baseline_test,
            "opro_recorded_score": record.recorded,
            "opro_p_value": record.p_value,
            "opro_calls": record.calls,
            "opro_cost_usd": record.cost_usd,
        }
        for name, value in props.items():
            if value is not None:
                self._request.node.user_properties.append(
                    (name, round(value, 4) if isinstance(value, float) else value)
                )
