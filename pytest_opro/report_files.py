"""End-of-run work: report files, obsolete artifacts, and the run's exit status."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from .atomic import write_text_atomic
from .session import OproSession

REPORT_SCHEMA_VERSION = 1


def json_report(session: OproSession) -> dict:
    """The machine-readable report: one entry per task record."""
    from . import __version__

    return {
        "schema_version": REPORT_SCHEMA_VERSION,
        "plugin_version": __version__,
        "mode": "optimize" if session.options.optimize else "gate",
        "tasks": [r.to_dict() for r in session.records],
    }


def markdown_report(session: OproSession) -> str:
    """A markdown report for humans (e.g. $GITHUB_STEP_SUMMARY)."""
    from .report import summary_lines

    return "# pytest-opro\n\n```\n" + "\n".join(summary_lines(session.records)) + "\n```\n"


def write_report(session: OproSession, path: Path) -> None:
    if path.suffix == ".json":
        write_text_atomic(path, json.dumps(json_report(session), indent=2, ensure_ascii=False) + "\n")
    else:
        write_text_atomic(path, markdown_report(session))


def finish_run(session: OproSession, deselected: int) -> tuple[list[str], int | None]:
    """Notes for the terminal summary and an exit status to set (None: leave pytest's)."""
    notes: list[str] = []
    status: int | None = None
    if session.options.optimize and not session.records:
        notes.append("opro: --opro-optimize ran but no test called opro.check(task): no prompt task was selected")
        status = pytest.ExitCode.NO_TESTS_COLLECTED
    if deselected == 0 and session.records:
        for path in session.obsolete_artifacts():
            notes.append(f"opro: obsolete artifact {path}: no task of that name ran; delete it if the task is gone")
    if session.options.report:
        path = Path(session.options.report)
        write_report(session, path)
        notes.append(f"opro: report written to {path}")
    return notes, status
