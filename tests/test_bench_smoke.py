"""A tiny run of the scoring-concurrency benchmark script against its loopback server (no timing asserts)."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_concurrency_benchmark_smoke() -> None:
    args = ["--calls", "32", "--c1-calls", "8", "--concurrency", "16", "--latency", "0.05", "--runs", "1",
            "--no-diagnostics"]
    run = subprocess.run([sys.executable, str(ROOT / "bench" / "bench_concurrency.py"), *args], cwd=ROOT,
                         capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stdout + run.stderr
    row = next(line for line in run.stdout.splitlines() if line.startswith("| LLMClient"))
    cells = [c.strip() for c in row.strip("|").split("|")]
    assert cells[1:3] == ["16", "32"]  # concurrency 16, 32 calls made
    in_flight = int(re.search(r"max in flight (\d+)", row).group(1))  # type: ignore[union-attr]
    assert 1 <= in_flight <= 16
