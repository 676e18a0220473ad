"""Showing errors users cause (bad example files, templates, settings) as one line, not a traceback.

An :class:`~pytest_opro.errors.OproError` carries a complete message naming the file, line or
setting and the fix; the traceback into pytest-opro's internals would only bury it. ``--fulltrace``
keeps the full report for debugging.
"""

from __future__ import annotations

from typing import Any

from pytest_opro.errors import OproError


def is_user_error(excinfo: Any) -> bool:
    """True when the exception is one pytest-opro raised on purpose with a complete message."""
    return excinfo is not None and isinstance(excinfo.value, OproError)


def shorten_report(item: Any, call: Any, report: Any) -> None:
    """Replace the traceback of a failed setup/call/teardown caused by an OproError with its message."""
    if report.passed or report.skipped or not is_user_error(call.excinfo):
        return
    if item.config.getoption("fulltrace", False):
        return
    report.longrepr = call.excinfo.getrepr(style="value", chain=False)
