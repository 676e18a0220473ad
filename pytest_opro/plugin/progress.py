"""Live progress lines that show during a test, also under ``-q`` and while output is captured."""

from __future__ import annotations

from typing import Any, Callable

import pytest


def live_writer(config: pytest.Config) -> Callable[[str], None]:
    """A function writing one line to the terminal now; silent on xdist workers and without a terminal."""

    def write_line(line: str) -> None:
        reporter = config.pluginmanager.get_plugin("terminalreporter")
        if reporter is None or hasattr(config, "workerinput"):
            return
        capture = config.pluginmanager.get_plugin("capturemanager")
        if capture is None:
            reporter.ensure_newline()
            reporter.write_line(line)
            return
        with capture.global_and_fixture_disabled():
            reporter.ensure_newline()
            reporter.write_line(line)

    return write_line


def step_line(task_name: str, report: Any) -> str:
    """The progress line after one optimisation step (`report` is a ``pytest_opro.opro.StepReport``):
    best scores so far, calls and cost, what racing saved, and any answer collapse."""
    from pytest_opro.opro.collapse import describe  # the optimizer is imported only once a task runs

    best_val = "-" if report.best_validation is None else f"{report.best_validation:.1%}"
    best_train = "-" if report.best_train is None else f"{report.best_train:.1%}"
    line = (
        f"opro {task_name}: step {report.step}/{report.max_steps} best train {best_train} "
        f"val {best_val} | calls {report.calls} (cached {report.cache_hits}) "
        f"${report.cost_usd:.4f} {report.elapsed:.1f}s"
    )
    if report.screened_out or report.not_validated:
        line += f" | screened out {report.screened_out}/{report.accepted}"
        if report.not_validated:
            line += f", {report.not_validated} not validated"
        line += f", saved {report.calls_saved} calls"
    for c in report.collapsed:
        line += f" | collapse: a step {report.step} candidate {describe(c)} on validation"
    return line
