"""Fixtures for the paper's problems (linear regression, TSP), registered by the plugin.

A test that runs :func:`pytest_opro.problems.run_tsp` or ``run_linear_regression`` asks for
``opro_optimize_requested`` (run the optimizer only under ``--opro-optimize``), ``opro_run_options``
(the plugin's client, budget and ``--opro-*`` overrides) and ``opro_save_report`` (print, attach and
write the run's report); its conftest states only what is specific to its problem.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Callable

import pytest


def optimize_requested(config: pytest.Config) -> bool:
    """True under ``pytest --opro-optimize``."""
    return bool(config.getoption("opro_optimize", default=False))


def run_options(config: pytest.Config, name: str) -> Callable[..., dict[str, Any]]:
    """A function of the example's defaults (``steps``, ``candidates``, ``seed``) that returns runner
    keyword arguments: with the plugin active, its client (response cache and ``--opro-max-*``
    budget), the ``--opro-*`` options that override the defaults, and progress lines naming `name`."""
    from pytest_opro.models.config import Budget
    from pytest_opro.plugin.keys import SESSION_KEY

    session = config.stash.get(SESSION_KEY, None)

    def options(*, steps: int, candidates: int, seed: int = 0) -> dict[str, Any]:
        if session is None:  # plugin not active: plain defaults
            return {
                "steps": steps,
                "candidates": candidates,
                "seed": seed,
                "budget": Budget(max_calls=steps * candidates * 2),
            }
        opts = session.options
        client = session.client()
        if client.budget == Budget():
            client.budget = Budget(max_calls=steps * candidates * 2)

        def on_step(report: Any) -> None:
            best = "-" if report.best_train is None else f"{report.best_train:.1f}"
            session.write_line(
                f"opro {name}: step {report.step}/{report.max_steps} best {best} | "
                f"calls {report.calls} (cached {report.cache_hits}) {report.elapsed:.1f}s"
            )

        return {
            "optimizer": opts.cli("optimizer_model") or opts.optimizer_model or "local/smollm2",
            "steps": opts.cli("steps") if opts.cli("steps") is not None else steps,
            "candidates": opts.cli("candidates") or candidates,
            "seed": opts.cli("seed") if opts.cli("seed") is not None else seed,
            "client": client,
            "on_step": on_step,
        }

    return options


def _task_name(request: pytest.FixtureRequest) -> str:
    """The name progress lines and reports use: the test module's name without ``test_``."""
    stem = Path(str(request.node.path)).stem
    return stem[len("test_") :] if stem.startswith("test_") else stem


@pytest.fixture
def opro_optimize_requested(request: pytest.FixtureRequest) -> bool:
    """True under ``pytest --opro-optimize``: only then should a test call the optimizer model."""
    return optimize_requested(request.config)


@pytest.fixture
def opro_run_options(request: pytest.FixtureRequest) -> Callable[..., dict[str, Any]]:
    """``opro_run_options(steps=..., candidates=..., seed=...)`` gives runner keyword arguments shared
    with prompt tasks: the plugin's client (response cache and ``--opro-max-*`` budget),
    ``--opro-optimizer-model``, ``--opro-steps``, ``--opro-candidates``, ``--opro-seed``, and live
    progress lines. The test's own defaults fill the rest."""
    return run_options(request.config, _task_name(request))


@pytest.fixture
def opro_save_report(
    request: pytest.FixtureRequest, record_property: Callable[[str, object], None]
) -> Callable[[str, Any], Path]:
    """``opro_save_report(name, report)`` prints a run's summary, attaches it to the test report and
    writes it to ``__opro__/<name>.json`` beside the test module (``opro_dir`` sets the folder)."""
    from pytest_opro.plugin.keys import SESSION_KEY

    session = request.config.stash.get(SESSION_KEY, None)
    folder = session.options.dir if session is not None else "__opro__"
    return report_saver(record_property, Path(str(request.node.path)).parent / folder)


def report_saver(record_property: Callable[[str, object], None], directory: Path) -> Callable[[str, Any], Path]:
    """A function ``save(name, report)`` that prints the report's summary, attaches it to the test
    report as the ``opro_report`` property and writes the report to ``<directory>/<name>.json``."""

    def save(name: str, report: Any) -> Path:
        from pytest_opro.opro.atomic import write_text_atomic

        print(report.summary())
        record_property("opro_report", report.summary())
        path = directory / f"{name}.json"
        path.parent.mkdir(exist_ok=True)
        write_text_atomic(path, json.dumps(report.to_dict(), indent=2, sort_keys=True) + "\n")
        return path

    return save
