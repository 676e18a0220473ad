"""The suite's shared fixtures, and two rules that keep its results honest.

Extension modules that cannot be loaded twice in one process (numpy's C core, and llama-cpp-python,
which imports numpy) are imported here, once, before any in-process pytester run: such a run restores
``sys.modules`` when it ends, and a test that imported them afterwards would fail or skip depending on
the order the tests ran in.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator

import numpy  # noqa: F401  (see the module docstring)
import pytest

with contextlib.suppress(ImportError):
    import llama_cpp  # noqa: F401  (the `local` extra; see the module docstring)

pytest_plugins = [
    "tests.support.browser",
    "tests.support.fake_provider",
    "tests.support.loop_brain",
    "tests.support.redis_server",
]


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[None]:
    """Under CI (``.ci/run`` sets ``CI``), a skipped test is a failure: CI installs everything the suite needs."""
    report = yield
    if os.environ.get("CI") and report.skipped and not hasattr(report, "wasxfail"):
        report.outcome = "failed"
        reason = report.longrepr[2] if isinstance(report.longrepr, tuple) else str(report.longrepr)
        report.longrepr = f"skipped under CI, where every test must run: {reason}"
    return report
