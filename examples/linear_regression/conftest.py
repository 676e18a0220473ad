"""The linear-regression example: the OPRO paper's first experiment, run by the same loop as prompts."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Callable

import pytest

HERE = Path(__file__).parent


@pytest.fixture
def regression_instance() -> dict[str, Any]:
    """The line to recover: the paper's (w_true, b_true) = (15, 14), noise sd 1, seed 0."""
    return {"w_true": 15, "b_true": 14, "noise": 1.0, "seed": 0}


@pytest.fixture
def optimize_requested(request: pytest.FixtureRequest) -> bool:
    """True under ``pytest --opro-optimize``: only then does the example call the optimizer model."""
    return bool(request.config.getoption("opro_optimize", default=False))


@pytest.fixture
def run_options(request: pytest.FixtureRequest) -> Callable[..., dict[str, Any]]:
    """Runner arguments shared with prompt tasks: the plugin's client (response cache and
    ``--opro-max-*`` budget), ``--opro-optimizer-model``, ``--opro-steps``, ``--opro-candidates``,
    ``--opro-seed``, and live progress lines. The example's own defaults fill the rest."""
    from pytest_opro.llm import Budget
    from pytest_opro.plugin import SESSION_KEY

    session = request.config.stash.get(SESSION_KEY, None)

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
            session.write_line(f"opro linear_regression: step {report.step}/{report.max_steps} best {best} | "
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


@pytest.fixture
def save_report(record_property):
    """Print a run's summary, attach it to the test report and write it to ``__opro__/<name>.json``."""

    def save(name: str, report: Any) -> Path:
        from pytest_opro.atomic import write_text_atomic

        print(report.summary())
        record_property("opro_report", report.summary())
        path = HERE / "__opro__" / f"{name}.json"
        path.parent.mkdir(exist_ok=True)
        write_text_atomic(path, json.dumps(report.to_dict(), indent=2, sort_keys=True) + "\n")
        return path

    return save
