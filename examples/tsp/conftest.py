"""The travelling-salesman example: the OPRO paper's second experiment, run by the same loop as prompts."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

import pytest

HERE = Path(__file__).parent


@pytest.fixture
def tsp_instance() -> dict[str, Any]:
    """A small instance (6 random points, seed 0) so that the embedded model finishes quickly."""
    return {"n": 6, "seed": 0}


@pytest.fixture
def optimize_requested(request: pytest.FixtureRequest) -> bool:
    """True under ``pytest --opro-optimize``: only then does the example call the optimizer model."""
    from pytest_opro.plugin.paper_fixtures import optimize_requested

    return optimize_requested(request.config)


@pytest.fixture
def run_options(request: pytest.FixtureRequest) -> Callable[..., dict[str, Any]]:
    """Runner arguments shared with prompt tasks: the plugin's client (response cache and
    ``--opro-max-*`` budget), ``--opro-optimizer-model``, ``--opro-steps``, ``--opro-candidates``,
    ``--opro-seed``, and live progress lines. The example's own defaults fill the rest."""
    from pytest_opro.plugin.paper_fixtures import run_options

    return run_options(request.config, "tsp")


@pytest.fixture
def save_report(record_property: Callable[[str, object], None]) -> Callable[[str, Any], Path]:
    """Print a run's summary, attach it to the test report and write it to ``__opro__/<name>.json``."""
    from pytest_opro.plugin.paper_fixtures import report_saver

    return report_saver(record_property, HERE / "__opro__")
