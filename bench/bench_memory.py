"""Item 6: peak resident memory of an optimisation against the loopback server.

Each configuration runs in a fresh subprocess: import pytest_opro and litellm, make one call (so the
HTTP client exists), note the peak RSS, then run optimize() with no cache and note the peak RSS
again (``resource.getrusage(RUSAGE_SELF).ru_maxrss``). The split is 50 train / 20 validation / the
rest test, so every example is loaded, split, and scored once by the final test pass (baseline and
winner), and each step scores 8 x 50 + 2 x 20 calls.

    python bench/bench_memory.py            # ~2 min
    python bench/bench_memory.py --configs 2000:3 --tracemalloc   # Python-heap peak too (slower)
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from bench.bench_common import ROOT, ServerProcess, machine, table  # noqa: E402

CHILD = r"""
import json, resource, sys, time, tracemalloc
sys.path.insert(0, {root!r})
n, steps, url, trace = {n}, {steps}, {url!r}, {trace}
from bench.bench_common import model_config
from pytest_opro import PromptTask
from pytest_opro.prompts.examples import examples_from_records
from pytest_opro.models.client import LLMClient, run_sync
from pytest_opro.opro.settings import OptimizerSettings
from pytest_opro.prompts.optimization import optimize

def rss_mb():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024

labels = ("positive", "negative")
records = [{{"id": f"e{{i}}", "input": f"Review {{i}}: the film was {{'good' if i % 2 else 'dull'}}. " * 3,
            "target": labels[i % 2], "choices": list(labels)}} for i in range(n)]
scorer = model_config(url, temperature=0, max_tokens=16)
optimizer = model_config(url, temperature=1.0, max_tokens=200)
run_sync(LLMClient(cache=None).complete(scorer, [{{"role": "user", "content": "warm-up"}}]))
before = rss_mb()
if trace:
    tracemalloc.start()
task = PromptTask(name="mem", examples=examples_from_records(records), metric="choice",
                  counts=(50, 20, n - 70), fractions=None)
t0 = time.perf_counter()
result = optimize(task, scorer=scorer, optimizer=optimizer, cache=None, concurrency=64,
                  settings=OptimizerSettings(max_steps=steps, candidates=8, patience=0, validate_top=2))
wall = time.perf_counter() - t0
peak_heap = tracemalloc.get_traced_memory()[1] / 2**20 if trace else None
print(json.dumps({{"before": before, "after": rss_mb(), "wall": wall, "steps": result.steps_run,
                  "calls": sum(u["calls"] for u in result.usage.values()), "heap": peak_heap}}))
"""


def main(argv: list[str] | None = None) -> list[list[str]]:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--configs", default="200:1,200:6,2000:1,2000:3", help="examples:steps,...")
    parser.add_argument("--latency", type=float, default=0.1)
    parser.add_argument("--tracemalloc", action="store_true")
    args = parser.parse_args(argv)
    started = time.perf_counter()
    rows = []
    with ServerProcess(latency=args.latency) as server:
        for spec in args.configs.split(","):
            n, steps = (int(x) for x in spec.split(":"))
            code = CHILD.format(root=str(ROOT), n=n, steps=steps, url=server.url, trace=args.tracemalloc)
            proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=600)
            if proc.returncode != 0:
                raise SystemExit(proc.stderr[-3000:])
            res = json.loads(proc.stdout.strip().splitlines()[-1])
            row = [
                str(n),
                str(res["steps"]),
                str(res["calls"]),
                f"{res['before']:.0f}",
                f"{res['after']:.0f}",
                f"{res['after'] - res['before']:+.0f}",
                f"{res['wall']:.1f}",
            ]
            if args.tracemalloc:
                row.append(f"{res['heap']:.1f}")
            rows.append(row)
            print(" | ".join(row), flush=True)
    headers = [
        "examples",
        "steps",
        "calls",
        "peak RSS before optimize, MB",
        "peak RSS after, MB",
        "growth, MB",
        "optimize() s",
    ] + (["Python heap peak (tracemalloc), MB"] if args.tracemalloc else [])
    print()
    print(
        f"Memory: one subprocess per configuration, cache off, C=64, L={args.latency * 1000:g} ms; "
        f"{time.perf_counter() - started:.0f} s"
    )
    print(f"Machine: {machine()}")
    print(table(headers, rows))
    return rows


if __name__ == "__main__":
    main()
