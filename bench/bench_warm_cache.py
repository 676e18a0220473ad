"""Item 3: the same gate run twice; the second must make zero requests to the server.

Builds a throw-away pytest project whose task scores against the loopback server, writes its
artifact once with ``pytest --opro-optimize`` (own cache directory), then, for each of N runs,
runs the gate (plain ``pytest``) twice against a fresh cache directory: cold, then warm. It records
the wall time of each pytest process, the requests the server received, and whether the warm run
imported litellm (a conftest writes ``"litellm" in sys.modules`` at session end).

    python bench/bench_warm_cache.py            # ~1.5 min
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from bench.bench_common import ROOT, ServerProcess, fmt, machine, table  # noqa: E402

CONFTEST = """
import json, os, sys
from pathlib import Path

import pytest

from pytest_opro import ModelConfig, PromptTask
from pytest_opro.prompts.examples import examples_from_records

URL = os.environ["BENCH_LOOPBACK_URL"]
LABELS = ("positive", "negative")


def model(**params):
    return ModelConfig("openai/bench-model", params=params, api_base=URL, api_key="sk-loopback")


@pytest.fixture(scope="session")
def bench_task():
    records = [{"id": f"e{i}", "input": f"Review {i}: the film was {'good' if i % 2 else 'dull'}.",
                "target": LABELS[i % 2], "choices": list(LABELS)} for i in range(N_EXAMPLES)]
    return PromptTask(name="bench", examples=examples_from_records(records), metric="choice",
                      counts=(20, 10, N_EXAMPLES - 30), scorer=model(temperature=0, max_tokens=16),
                      optimizer=model(temperature=1.0, max_tokens=200),
                      settings={"max_steps": 2, "candidates": 4, "patience": 0, "validate_top": 1})


def pytest_sessionfinish(session):
    out = os.environ.get("BENCH_STATE_FILE")
    if out:
        Path(out).write_text(json.dumps({"litellm_imported": "litellm" in sys.modules}))
"""

TEST = """
def test_bench_prompt(opro, bench_task):
    opro.check(bench_task)
"""


def pytest_run(project: Path, url: str, cache_dir: Path, *extra: str) -> tuple[float, bool, str]:
    state = project / "state.json"
    env = {
        **os.environ,
        "BENCH_LOOPBACK_URL": url,
        "BENCH_STATE_FILE": str(state),
        "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]),
    }
    cmd = [
        sys.executable,
        "-m",
        "pytest",
        "-q",
        "-p",
        "no:cacheprovider",
        "--opro-cache-dir",
        str(cache_dir),
        *extra,
        str(project),
    ]
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, cwd=project, env=env, capture_output=True, text=True, timeout=300)
    wall = time.perf_counter() - t0
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed ({proc.returncode}):\n{proc.stdout[-3000:]}\n{proc.stderr[-2000:]}")
    imported = json.loads(state.read_text())["litellm_imported"]
    return wall, imported, proc.stdout


def main(argv: list[str] | None = None) -> list[list[str]]:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--examples", type=int, default=130, help="examples; the test split is examples - 30")
    parser.add_argument("--latency", type=float, default=0.1)
    args = parser.parse_args(argv)
    started = time.perf_counter()
    rows: list[list[str]] = []
    with tempfile.TemporaryDirectory() as tmp, ServerProcess(latency=args.latency) as server:
        project = Path(tmp) / "suite"
        project.mkdir()
        (project / "conftest.py").write_text(CONFTEST.replace("N_EXAMPLES", str(args.examples)))
        (project / "test_bench.py").write_text(textwrap.dedent(TEST))
        pytest_run(project, server.url, Path(tmp) / "opt-cache", "--opro-optimize", "--opro-allow-no-gain")
        assert list(project.glob("__opro__/*.yaml")), "optimize wrote no artifact"
        cold, warm, cold_req, warm_req, warm_litellm = [], [], [], [], []
        for run in range(args.runs):
            cache_dir = Path(tmp) / f"gate-cache-{run}"
            server.reset()
            wall, _, _ = pytest_run(project, server.url, cache_dir)
            cold.append(wall)
            cold_req.append(server.stats()["requests"])
            server.reset()
            wall, imported, out = pytest_run(project, server.url, cache_dir)
            warm.append(wall)
            warm_req.append(server.stats()["requests"])
            warm_litellm.append(imported)
            print(
                f"run {run}: cold {cold[-1]:.2f} s / {cold_req[-1]} requests, warm {warm[-1]:.2f} s / "
                f"{warm_req[-1]} requests, litellm imported in warm run: {imported}",
                flush=True,
            )
    rows.append(["cold gate (empty cache)", fmt(cold, 2), f"{min(cold_req)}–{max(cold_req)}", "yes"])
    rows.append(
        [
            "warm gate (same cache)",
            fmt(warm, 2),
            f"{min(warm_req)}–{max(warm_req)}",
            "yes" if all(warm_litellm) else ("no" if not any(warm_litellm) else "sometimes"),
        ]
    )
    print()
    print(
        f"Warm cache: the gate scores the committed instruction on {args.examples - 30} test examples, "
        f"L={args.latency * 1000:g} ms, wall time of the whole pytest process (cold includes importing "
        f"litellm), {args.runs} runs, median [min–max]; {time.perf_counter() - started:.0f} s"
    )
    print(f"Machine: {machine()}")
    print(table(["run", "wall s", "server requests", "litellm imported"], rows))
    return rows


if __name__ == "__main__":
    main()
