"""Item 4: what the plugin costs a suite that uses no prompt task.

Generates 500 trivial tests and runs them with the plugin (installed, auto-loaded through its
``pytest11`` entry point ``opro``) and without it (``-p no:opro``), interleaved A/B so drift on a
shared machine hits both alike. Wall time and the child's CPU time (user+sys, much less
sensitive to other processes) are both reported. On a noisy 2-core machine the A/B spread is
hundreds of ms, so the plugin's own cost is also measured directly:
- import: ``python -X importtime`` of ``pytest_opro.plugin.hooks`` after pytest (sum over every module
  it pulls in), in a fresh process each run;
- in the run: the suite run by pytest.main with every hook function of pytest_opro.plugin.hooks wrapped
  in a timer (including what the hooks import and call), plus the module's own import.
A conftest records at session end whether litellm (and the
plugin) are in ``sys.modules``.

    python bench/bench_plugin_overhead.py          # ~1 min
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from bench.bench_common import fmt, machine, table  # noqa: E402

CONFTEST = """
import json, os, sys
from pathlib import Path


def pytest_sessionfinish(session):
    Path(os.environ["BENCH_STATE_FILE"]).write_text(json.dumps({
        "litellm": "litellm" in sys.modules,
        "plugin": "pytest_opro.plugin.hooks" in sys.modules,
        "modules": sorted(sys.modules),
    }))
"""


def generate(root: Path, tests: int) -> None:
    root.mkdir(parents=True, exist_ok=True)
    (root / "conftest.py").write_text(CONFTEST)
    per_file = 50
    for f in range(tests // per_file):
        body = "\n\n".join(f"def test_{f}_{i}():\n    assert {i} + 1 == {i + 1}" for i in range(per_file))
        (root / f"test_gen_{f:02d}.py").write_text(body + "\n")


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def run(root: Path, disable: bool) -> tuple[float, float, dict]:
    state = root / f"state-{int(disable)}.json"
    env = {k: v for k, v in os.environ.items() if k != "PYTEST_ADDOPTS"}
    env["BENCH_STATE_FILE"] = str(state)
    cmd = [
        sys.executable,
        "-m",
        "pytest",
        "-q",
        "-p",
        "no:cacheprovider",
        *(["-p", "no:opro"] if disable else []),
        str(root),
    ]
    cpu0, t0 = _children_cpu(), time.perf_counter()
    proc = subprocess.run(cmd, cwd=root, env=env, capture_output=True, text=True, timeout=300)
    wall, cpu = time.perf_counter() - t0, _children_cpu() - cpu0
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed:\n{proc.stdout[-2000:]}\n{proc.stderr[-2000:]}")
    return wall, cpu, json.loads(state.read_text())


def import_cost_ms() -> float:
    """Milliseconds to import pytest_opro.plugin.hooks once pytest is loaded (every module it pulls in)."""
    code = "import pytest, _pytest.main, _pytest.python\nimport pytest_opro.plugin.hooks"
    proc = subprocess.run(
        [sys.executable, "-X", "importtime", "-c", code], capture_output=True, text=True, timeout=120, check=True
    )
    total_us = 0
    for line in proc.stderr.splitlines():
        parts = line.split("|")
        if len(parts) == 3 and parts[2].strip() == "pytest_opro.plugin.hooks":
            total_us = int(parts[1])  # cumulative, includes what it imports that was not loaded yet
    return total_us / 1000


TIMED_RUN = r"""
import functools, inspect, json, sys, time
import pytest
t0 = time.perf_counter()
import pytest_opro.plugin.hooks as plugin
imported = time.perf_counter() - t0
spent = {}


def timed(name, func):
    if inspect.isgeneratorfunction(func):  # old-style hookwrapper
        @functools.wraps(func)
        def wrapper(*args, **kwargs):
            t = time.perf_counter()
            gen = func(*args, **kwargs)
            first = next(gen)
            spent[name] = spent.get(name, 0.0) + time.perf_counter() - t
            outcome = yield first
            t = time.perf_counter()
            try:
                gen.send(outcome)
            except StopIteration:
                pass
            spent[name] += time.perf_counter() - t
        return wrapper

    @functools.wraps(func)
    def wrapper(*args, **kwargs):
        t = time.perf_counter()
        try:
            return func(*args, **kwargs)
        finally:
            spent[name] = spent.get(name, 0.0) + time.perf_counter() - t
    return wrapper


for name in dir(plugin):
    if name.startswith("pytest_") and inspect.isfunction(getattr(plugin, name)):
        setattr(plugin, name, timed(name, getattr(plugin, name)))
code = pytest.main(["-q", "-p", "no:cacheprovider", "-p", "no:opro", "-p", "pytest_opro.plugin.hooks", sys.argv[1]])
print("TIMED " + json.dumps({"code": int(code), "import": imported, "hooks": spent}))
"""


def timed_plugin_ms(root: Path) -> tuple[float, float, dict[str, float]]:
    """(import ms, hooks ms, per hook ms): the plugin module's functions wrapped with timers."""
    env = {k: v for k, v in os.environ.items() if k != "PYTEST_ADDOPTS"}
    env["BENCH_STATE_FILE"] = str(root / "state-timed.json")
    proc = subprocess.run(
        [sys.executable, "-c", TIMED_RUN, str(root)], cwd=root, env=env, capture_output=True, text=True, timeout=300
    )
    line = [x for x in proc.stdout.splitlines() if x.startswith("TIMED ")]
    if not line:
        raise SystemExit(f"timed run failed:\n{proc.stdout[-2000:]}\n{proc.stderr[-2000:]}")
    data = json.loads(line[-1][len("TIMED ") :])
    assert data["code"] == 0, data
    hooks = {k: 1000 * v for k, v in data["hooks"].items()}
    return 1000 * data["import"], sum(hooks.values()), hooks


def main(argv: list[str] | None = None) -> list[list[str]]:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=10)
    parser.add_argument("--tests", type=int, default=500)
    args = parser.parse_args(argv)
    started = time.perf_counter()
    with_plugin, without, diffs = [], [], []
    cpu_on, cpu_off, cpu_diffs = [], [], []
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "suite"
        generate(root, args.tests)
        run(root, False), run(root, True)  # warm the file system and .pyc caches
        for i in range(args.runs):
            order = (False, True) if i % 2 == 0 else (True, False)
            walls, cpus = {}, {}
            for disable in order:
                walls[disable], cpus[disable], state = run(root, disable)
                if disable:
                    state_off = state
                else:
                    state_on = state
            with_plugin.append(walls[False])
            without.append(walls[True])
            diffs.append(walls[False] - walls[True])
            cpu_on.append(cpus[False])
            cpu_off.append(cpus[True])
            cpu_diffs.append(cpus[False] - cpus[True])
            print(
                f"run {i}: with plugin {walls[False]:.3f} s ({cpus[False]:.3f} s CPU), -p no:opro "
                f"{walls[True]:.3f} s ({cpus[True]:.3f} s CPU), difference {1000 * diffs[-1]:+.0f} ms wall, "
                f"{1000 * cpu_diffs[-1]:+.0f} ms CPU",
                flush=True,
            )
        imports = [import_cost_ms() for _ in range(args.runs)]
        timed = [timed_plugin_ms(root) for _ in range(min(args.runs, 5))]
    assert state_on["plugin"] and not state_off["plugin"], "-p no:opro did not disable the plugin"
    extra = sorted(set(state_on["modules"]) - set(state_off["modules"]))
    ms = lambda xs: [1000 * x for x in xs]  # noqa: E731
    rows = [
        ["with plugin (entry point opro)", fmt(with_plugin, 3), fmt(cpu_on, 3), "yes" if state_on["litellm"] else "no"],
        ["-p no:opro", fmt(without, 3), fmt(cpu_off, 3), "yes" if state_off["litellm"] else "no"],
        ["paired difference, ms (with − without)", fmt(ms(diffs), 0), fmt(ms(cpu_diffs), 0), ""],
        ["direct: import pytest_opro.plugin.hooks, ms (-X importtime)", fmt(imports, 1), "", ""],
        ["direct: plugin module import inside pytest, ms (timer)", fmt([t[0] for t in timed], 1), "", ""],
        ["direct: plugin hooks during the run, ms (timer around each hook)", fmt([t[1] for t in timed], 1), "", ""],
        ["direct: import + hooks, ms", fmt([t[0] + t[1] for t in timed], 1), "", ""],
    ]
    per_hook = {name: statistics.median(t[2].get(name, 0.0) for t in timed) for name in timed[0][2]}
    print()
    print(
        f"Plugin overhead: {args.tests} trivial tests, no prompt task, whole pytest process, {args.runs} "
        f"interleaved pairs, median [min–max]; {time.perf_counter() - started:.0f} s"
    )
    print(
        f"Difference of medians: wall {1000 * (statistics.median(with_plugin) - statistics.median(without)):+.0f} ms,"
        f" CPU {1000 * (statistics.median(cpu_on) - statistics.median(cpu_off)):+.0f} ms"
    )
    print(
        f"Modules the plugin adds ({len(extra)}): {', '.join(m for m in extra if '.' not in m) or 'none'} "
        f"(top-level names; {sum(1 for m in extra if m.startswith('pytest_opro'))} pytest_opro modules)"
    )
    print(
        "Median ms per hook: " + ", ".join(f"{k} {v:.2f}" for k, v in sorted(per_hook.items(), key=lambda kv: -kv[1]))
    )
    print(f"Machine: {machine()}")
    print(table(["run", "wall s", "CPU s (user+sys of the pytest process)", "litellm imported"], rows))
    return rows


if __name__ == "__main__":
    main()
