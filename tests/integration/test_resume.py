"""Resume: real ``pytest --opro-optimize`` subprocesses are interrupted mid-run and started again.

Each interrupted run talks to its own loopback server (in this process), which counts every paid
call across both runs. The resumed run must continue after the last checkpointed step, pay only for
calls the response cache does not hold, and write the same artifact as an uninterrupted run.
The three subprocesses (SIGKILL, SIGTERM, SIGINT i.e. Ctrl-C) run side by side to save time.
"""

from __future__ import annotations

import contextlib
import json
import os
import queue
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from tests.support.loop_brain import cache_entries, comparable, write_project
from tests.support.loopback import LoopbackServer

SETTINGS = {"max_steps": 4, "candidates": 2, "patience": 0}
LATENCY = 0.05
CONCURRENCY = 4
SIGNALS = (signal.SIGKILL, signal.SIGTERM, signal.SIGINT)
TIMINGS: dict[str, dict] = {}
# pytest with Ctrl-C as in a terminal: a shell that runs this suite in the background ignores
# SIGINT, its children inherit that, and Python then never turns SIGINT into KeyboardInterrupt.
PYTEST_WITH_CTRL_C = (
    "import signal, sys, pytest; signal.signal(signal.SIGINT, signal.default_int_handler); "
    "sys.exit(pytest.main(sys.argv[1:]))"
)


def optimize_args(project: Path) -> list[str]:
    return [
        str(project),
        "--rootdir",
        str(project),
        "-p",
        "no:cacheprovider",
        "--opro-optimize",
        f"--opro-concurrency={CONCURRENCY}",
    ]


def artifact_of(project: Path) -> dict:
    return yaml.safe_load((project / "__opro__" / "alpha.yaml").read_text(encoding="utf-8"))


def checkpoint_step(checkpoint: Path) -> int:
    try:
        return json.loads(checkpoint.read_text(encoding="utf-8"))["state"]["step"]
    except (FileNotFoundError, ValueError, KeyError):
        return -1


def hold_after_step_one(sig: signal.Signals, checkpoint: Path, arrived: queue.Queue):
    """A loopback ``hold``: every request sent once step 1 is checkpointed waits; `arrived` hears of it."""

    def hold(n: int, body: dict) -> bool:
        if checkpoint_step(checkpoint) < 1:
            return False
        arrived.put(sig)
        return True

    return hold


@pytest.fixture(scope="module")
def interrupted(tmp_path_factory, inline_ready):
    """Start one optimisation subprocess per signal and interrupt each at the same known point.

    Each loopback server holds every request sent after step 1 was checkpointed, so a run cannot
    get past step 2 (nor end) before its signal has been sent; the held requests are then released.
    Runs are signalled in the order they reach that point, so none waits long enough to time out.
    """
    arrived: queue.Queue = queue.Queue()
    with contextlib.ExitStack() as stack:
        runs = {}
        for sig in SIGNALS:
            project = tmp_path_factory.mktemp(f"interrupted-{sig.name}")
            brain = write_project(project, settings=SETTINGS)
            checkpoint = project / ".opro_cache" / "checkpoints" / "alpha.json"
            server = stack.enter_context(
                LoopbackServer(answer=brain, latency=LATENCY, hold=hold_after_step_one(sig, checkpoint, arrived))
            )
            proc = subprocess.Popen(
                [sys.executable, "-c", PYTEST_WITH_CTRL_C, *optimize_args(project)],
                cwd=project,
                env={**os.environ, "OPRO_LOOP_URL": server.url},
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                text=True,
            )
            stack.callback(lambda p=proc: p.poll() is None and p.kill())
            runs[sig] = {
                "project": project,
                "server": server,
                "proc": proc,
                "started": time.monotonic(),
                "checkpoint": checkpoint,
            }
        deadline = time.monotonic() + 240
        waiting = set(runs)
        while waiting and time.monotonic() < deadline:
            try:
                sig = arrived.get(timeout=0.1)
            except queue.Empty:  # a run that ended on its own is never held: the test will say so
                waiting -= {s for s in waiting if runs[s]["proc"].poll() is not None}
                continue
            if sig in waiting:
                run = runs[sig]
                run["proc"].send_signal(sig)
                run["killed_after"] = time.monotonic() - run["started"]
                run["server"].release()
                waiting.discard(sig)
        for run in runs.values():
            run["server"].release()
        for run in runs.values():
            try:
                run["output"], _ = run["proc"].communicate(timeout=60)
            except subprocess.TimeoutExpired:
                run["proc"].kill()
                run["output"], _ = run["proc"].communicate()
            run["paid"] = run["server"].requests
            run["cached"] = cache_entries(run["project"] / ".opro_cache")
        yield runs


_reference: dict = {}


@pytest.fixture
def reference(inline_ready, pytester, monkeypatch) -> dict:
    """The uninterrupted run (once per module): its artifact and how many calls it paid for."""
    if not _reference:
        project = pytester.path / "reference"
        brain = write_project(project, settings=SETTINGS)
        with LoopbackServer(answer=brain, latency=LATENCY) as server:
            monkeypatch.setenv("OPRO_LOOP_URL", server.url)
            start = time.monotonic()
            result = pytester.runpytest_inprocess(*optimize_args(project))
            seconds = time.monotonic() - start
            requests = server.requests
        assert result.ret == 0, result.stdout.str()
        # every paid call has its own cache key, so cache rows and requests match one to one
        assert cache_entries(project / ".opro_cache") == requests
        _reference.update(artifact=artifact_of(project), requests=requests)
        TIMINGS["uninterrupted"] = {"run_s": round(seconds, 2), "requests": requests}
    return _reference


@pytest.mark.parametrize("sig", SIGNALS, ids=lambda s: s.name)
def test_interrupted_run_resumes_without_recomputing(interrupted, reference, pytester, monkeypatch, sig):
    run = interrupted[sig]
    project, server, output = run["project"], run["server"], run["output"]
    assert "killed_after" in run, f"the run ended before it could be interrupted:\n{output}"
    assert run["proc"].returncode != 0, output
    step = checkpoint_step(run["checkpoint"])
    assert step == 1, output  # the servers held every request after step 1 until the signal was sent
    assert not (project / "__opro__" / "alpha.yaml").exists()

    monkeypatch.setenv("OPRO_LOOP_URL", server.url)
    start = time.monotonic()
    result = pytester.runpytest_inprocess(*optimize_args(project))
    resumed_seconds = time.monotonic() - start
    paid_again = server.requests - run["paid"]

    out = result.stdout.str()
    assert result.ret == 0, out + result.stderr.str()
    # completed steps are not recomputed: progress starts at the step after the checkpoint
    steps = [int(s) for s in re.findall(r"opro alpha: step (\d+)/\d+", out)]
    assert steps == list(range(step + 1, SETTINGS["max_steps"] + 1)), out
    # paid calls are not repeated: the second run pays exactly for what the cache lacks ...
    assert paid_again == reference["requests"] - run["cached"]
    # ... and only calls in flight at the interruption were paid and lost
    assert 0 <= run["paid"] - run["cached"] <= CONCURRENCY
    assert comparable(artifact_of(project)) == comparable(reference["artifact"])
    assert not run["checkpoint"].exists()
    TIMINGS[sig.name] = {
        "interrupted_after_s": round(run["killed_after"], 2),
        "checkpoint_step": step,
        "paid_before": run["paid"],
        "cached_at_interrupt": run["cached"],
        "paid_after_resume": paid_again,
        "resumed_run_s": round(resumed_seconds, 2),
    }
    print(f"\nresume timings: {json.dumps(TIMINGS)}")
