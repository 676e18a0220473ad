"""Live progress lines that show during a test, also under ``-q`` and while output is captured."""

from __future__ import annotations

from typing import Callable

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
