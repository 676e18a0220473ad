"""Live progress lines that show during a test, also under ``-q`` and while output is captured, and
the live line of a scoring pass (:class:`ScoringLine`)."""

from __future__ import annotations

import contextlib
import os
import time
from typing import TYPE_CHECKING, Any, Callable, Iterator

import pytest

if TYPE_CHECKING:  # every run loads this module; the model client only once a prompt task runs
    from pytest_opro.models.client import BatchProgress

#: Seconds between two updates of the scoring line in place on a terminal.
TTY_INTERVAL = 0.25
#: Seconds between two plain scoring lines where output is not a terminal (CI, a pipe, a file).
PLAIN_INTERVAL = 30.0


def live_writer(config: pytest.Config) -> Callable[[str], None]:
    """A function writing one line to the terminal now; silent on xdist workers and without a terminal."""

    def write_line(line: str) -> None:
        with _terminal(config) as reporter:
            if reporter is not None:
                reporter.ensure_newline()
                reporter.write_line(line)

    return write_line


@contextlib.contextmanager
def _terminal(config: pytest.Config) -> Iterator[Any]:
    """pytest's terminal reporter with output capture suspended (None on xdist workers and without one)."""
    reporter = config.pluginmanager.get_plugin("terminalreporter")
    if reporter is None or hasattr(config, "workerinput"):
        yield None
        return
    capture = config.pluginmanager.get_plugin("capturemanager")
    with capture.global_and_fixture_disabled() if capture is not None else contextlib.nullcontext():
        yield reporter


def scoring_text(progress: BatchProgress) -> str:
    """``scoring 120/400 calls, 35 s, ~80 s left`` (no estimate before the first answer)."""
    text = f"scoring {progress.done}/{progress.total} calls, {progress.elapsed:.0f} s"
    if 0 < progress.done < progress.total:
        left = progress.elapsed / progress.done * (progress.total - progress.done)
        text += f", ~{left:.0f} s left"
    return text


class ScoringLine:
    """The live line of a scoring pass, fed the scorer batches' progress by the model client.

    On a terminal it is rewritten in place at most every :data:`TTY_INTERVAL` seconds and erased
    when the pass ends; elsewhere (CI, a pipe) it is a plain line at most every :data:`PLAIN_INTERVAL`
    seconds, so a short pass prints nothing. `rewrite(text)` writes in place ("" erases),
    `write_line(text)` writes a line.
    """

    def __init__(
        self,
        rewrite: Callable[[str], None],
        write_line: Callable[[str], None],
        *,
        tty: bool,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.rewrite = rewrite
        self.write_line = write_line
        self.tty = tty
        self.clock = clock
        self.interval = TTY_INTERVAL if tty else PLAIN_INTERVAL
        self._last: float | None = None  # when the line was last written in this pass
        self._shown = False  # the in-place line is on screen

    def __call__(self, progress: BatchProgress) -> None:
        if progress.role != "scorer":
            return
        now = self.clock()
        if self._last is None or progress.done == 0:
            self._last = now - progress.elapsed  # the pass started `elapsed` seconds ago
        if progress.done >= progress.total:
            if self._shown:
                self.rewrite("")
            self._last, self._shown = None, False
            return
        if now - self._last < self.interval:
            return
        self._last = now
        if self.tty:
            self.rewrite(scoring_text(progress))
            self._shown = True
        else:
            self.write_line(scoring_text(progress))


def scoring_line(config: pytest.Config) -> Callable[[BatchProgress], None]:
    """The scoring line for this run, set up at its first use (the terminal reporter is registered
    after this plugin is configured): silent under ``-q``, on xdist workers and without a terminal
    reporter; plain lines when output is not a terminal or ``CI`` is set."""
    line: list[ScoringLine | None] = []

    def rewrite(text: str) -> None:
        with _terminal(config) as terminal:
            if terminal is not None:
                terminal.ensure_newline()  # not over the test file's name
                terminal.rewrite(text, erase=True)
                if not text:
                    terminal.rewrite("")  # back to the start of the now empty line

    def show(progress: BatchProgress) -> None:
        if not line:
            reporter = config.pluginmanager.get_plugin("terminalreporter")
            quiet = reporter is None or hasattr(config, "workerinput") or config.get_verbosity() < 0
            tty = reporter is not None and bool(reporter.isatty) and not os.environ.get("CI")
            line.append(None if quiet else ScoringLine(rewrite, live_writer(config), tty=tty))
        if line[0] is not None:
            line[0](progress)

    return show


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
