"""What the problem examples' fixtures share: runner options from the plugin, and saved reports.

The examples' ``conftest.py`` files wrap these functions in fixtures, so each states only what is
specific to its problem.
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
    from pytest_opro.plugin.hooks import SESSION_KEY

    session = config.stash.get(SESSION_KEY, None)

    def options(*, steps: int, candidates: int, seed: int = 0) -> dict[str, Any]:
        if session is None:  # plugin not active: plain defaults
            return {"steps": steps, "candidates": candidates, "seed": seed,
                    "budget": Budget(max_calls=steps * candidates * 2)}
        opts = session.options
        client = session.client()
        if client.budget == Budget():
            client.budget = Budget(max_calls=steps * candidates * 2)

        def on_step(report: Any) -> None:
            best = "-" if report.best_train is None else f"{report.best_train:.1f}"
            session.write_line(f"opro {name}: step {report.step}/{report.max_steps} best {best} | "
                               f"calls {report.calls} (cached {report.cache_hits}) {report.elapsed:.1f}s")

        return {
            "optimizer": opts.cli("optimizer_model") or opts.optimizer_model or "local/smollm2",
            "steps": opts.cli("steps") if opts.cli("steps") is not None else steps,
            "candidates": opts.cli("candidates") or candidates,
            "seed": opts.cli("seed") if opts.cli("seed") is not None else seed,
            "client": client,
            "on_step": on_step,
        }

    return options


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
