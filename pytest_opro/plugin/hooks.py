"""pytest hooks for pytest-opro. Thin on purpose: behaviour lives in the session and the reporting package."""

from __future__ import annotations

from typing import Any

import pytest

from pytest_opro.plugin.keys import DESELECTED_KEY, NOTES_KEY, SESSION_KEY, WORKER_RECORDS
from pytest_opro.plugin.options import add_options, read_options
from pytest_opro.plugin.paper_fixtures import (  # noqa: F401  (fixtures the plugin registers)
    opro_optimize_requested,
    opro_run_options,
    opro_save_report,
)


def pytest_addoption(parser: pytest.Parser) -> None:
    add_options(parser)


def pytest_addhooks(pluginmanager: pytest.PytestPluginManager) -> None:
    from pytest_opro.plugin import hookspec

    pluginmanager.add_hookspecs(hookspec)


def pytest_configure(config: pytest.Config) -> None:
    from pytest_opro.plugin.progress import live_writer, scoring_line
    from pytest_opro.plugin.session import OproSession

    session = OproSession(
        options=read_options(config),
        rootpath=config.rootpath,
        hook=config.hook,
        write_line=live_writer(config),
        scoring_progress=scoring_line(config),
        narrowed=_narrowed(config),
        worker=hasattr(config, "workerinput"),
    )
    # the controller (or a plain run) checks the router file and reaches a Redis cache once, at start
    session.check_start(open_shared=not session.worker)
    config.stash[SESSION_KEY] = session
    config.stash[DESELECTED_KEY] = 0
    config.addinivalue_line("markers", "opro: a test that checks a prompt task (set by the opro fixture)")


def _narrowed(config: pytest.Config) -> bool:
    """Whether the command line picked files or test ids rather than whole directories."""
    base = config.invocation_params.dir
    return any("::" in arg or not (base / arg).is_dir() for arg in config.args)


@pytest.hookimpl(trylast=True)
def pytest_collection_modifyitems(session: pytest.Session, config: pytest.Config, items: list[pytest.Item]) -> None:
    """``--opro-shard K/N``: keep this shard's share of the tests (see pytest_opro.plugin.shard).

    Last, so the shards divide the tests ``-k``/``-m`` left."""
    opro_session = config.stash.get(SESSION_KEY, None)
    if opro_session is None or not opro_session.options.shard:
        return
    from pytest_opro.plugin.shard import split

    k, n = opro_session.options.shard
    opro_session.shard_collected = len(items)
    kept, dropped = split(items, k, n)
    if dropped:
        config.hook.pytest_deselected(items=dropped)
        items[:] = kept


def pytest_deselected(items: list[pytest.Item]) -> None:
    if items:
        config = items[0].config
        config.stash[DESELECTED_KEY] = config.stash.get(DESELECTED_KEY, 0) + len(items)


@pytest.fixture
def opro(request: pytest.FixtureRequest) -> Any:
    """Check prompt tasks: ``opro.check(task)`` optimises under ``--opro-optimize`` and gates otherwise.

    Gating scores the instruction committed in ``__opro__/<task>.yaml`` beside the test module on
    the task's test split and fails on a significant drop; ``opro.instruction(task)`` returns it.
    """
    from pytest_opro.plugin.fixture import OproFixture

    request.node.add_marker("opro")
    return OproFixture(request.config.stash[SESSION_KEY], request)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo) -> Any:
    """Errors users cause (OproError) show as their one-line message, without a traceback; with
    ``--opro-html`` and pytest-html, a prompt test's row links to its task in the HTML report."""
    outcome = yield
    if call.when == "call":
        session = item.config.stash.get(SESSION_KEY, None)
        if session is not None and session.options.html and item.config.pluginmanager.hasplugin("html"):
            from pytest_opro.plugin.html_extras import add_extras

            add_extras(item, outcome.get_result(), session.records, session.options.html)
    if call.excinfo is None:  # the common case: nothing to shorten, nothing to import
        return
    from pytest_opro.plugin.errors_display import shorten_report

    shorten_report(item, call, outcome.get_result())


@pytest.hookimpl(optionalhook=True)
def pytest_testnodedown(node: Any, error: Any) -> None:
    """xdist controller: collect the records a worker sent."""
    from pytest_opro.reporting.outcome import TaskRecord

    output = getattr(node, "workeroutput", {})
    session = node.config.stash[SESSION_KEY]
    session.records.extend(TaskRecord.from_dict(r) for r in output.get(WORKER_RECORDS, []))
    session.artifact_dirs.update(output.get("opro_dirs", []))
    session.shard_collected = max(session.shard_collected, output.get("opro_collected", 0))
    # every worker collects and deselects the same items: keep the largest count
    deselected = output.get("opro_deselected", 0)
    node.config.stash[DESELECTED_KEY] = max(node.config.stash.get(DESELECTED_KEY, 0), deselected)


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    config = session.config
    opro_session = config.stash.get(SESSION_KEY, None)
    if opro_session is None:
        return
    opro_session.close()
    if hasattr(config, "workeroutput"):
        config.workeroutput[WORKER_RECORDS] = [r.to_dict() for r in opro_session.records]
        config.workeroutput["opro_dirs"] = sorted(opro_session.artifact_dirs)
        config.workeroutput["opro_deselected"] = config.stash.get(DESELECTED_KEY, 0)
        config.workeroutput["opro_collected"] = opro_session.shard_collected
        return
    if opro_session.options.shard and opro_session.shard_collected and exitstatus == pytest.ExitCode.NO_TESTS_COLLECTED:
        session.exitstatus = pytest.ExitCode.OK  # an empty shard (more shards than tests) is no failure
    if not opro_session.needs_finish():
        return
    notes, status = opro_session.finish(deselected=config.stash.get(DESELECTED_KEY, 0))
    config.stash[NOTES_KEY] = notes
    if status is not None and session.exitstatus == 0:
        session.exitstatus = status


def pytest_terminal_summary(terminalreporter: Any, exitstatus: int, config: pytest.Config) -> None:
    opro_session = config.stash.get(SESSION_KEY, None)
    if opro_session is None or hasattr(config, "workerinput"):
        return
    from pytest_opro.reporting.terminal import summary_lines

    lines = summary_lines(opro_session.records)
    notes = config.stash.get(NOTES_KEY, [])
    if lines or notes:
        terminalreporter.write_sep("=", "opro")
        for line in lines + notes:
            terminalreporter.write_line(line)
