"""A tiny run of the scoring-concurrency benchmark script against its loopback server (no timing asserts)."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_concurrency_benchmark_smoke() -> None:
    args = [
        "--calls",
        "32",
        "--c1-calls",
        "8",
        "--concurrency",
        "16",
        "--latency",
        "0.05",
        "--runs",
        "1",
        "--no-diagnostics",
    ]
    run = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "bench_concurrency.py"), *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert run.returncode == 0, run.stdout + run.stderr
    row = next(line for line in run.stdout.splitlines() if line.startswith("| LLMClient"))
    cells = [c.strip() for c in row.strip("|").split("|")]
    assert cells[1:3] == ["16", "32"]  # concurrency 16, 32 calls made
    in_flight = int(re.search(r"max in flight (\d+)", row).group(1))  # type: ignore[union-attr]
    assert 1 <= in_flight <= 16


def _run_bench(script: str, *args: str) -> str:
    run = subprocess.run(
        [sys.executable, str(ROOT / "bench" / script), *args], cwd=ROOT, capture_output=True, text=True, timeout=300
    )
    assert run.returncode == 0, run.stdout + run.stderr
    return run.stdout


def test_selection_benchmark_smoke() -> None:
    """A few seeds of bench/bench_selection.py: the default rule ships noise far less often than the old one,
    and ships a 20-point gain at least as often as the earlier Holm rule."""
    out = _run_bench("bench_selection.py", "--seeds", "40", "--val", "40", "--alphas", "0.05")
    rows = {
        cells[1]: cells
        for cells in (
            [c.strip() for c in line.strip("|").split("|")] for line in out.splitlines() if line.startswith("| 40 |")
        )
    }
    old = rows["old (best on val, min_delta 0)"]
    holm = rows["Holm over every candidate validated (the earlier rule), alpha 0.05"]
    new = rows["Holm weighted by train order, 80% of alpha on the best (default), alpha 0.05"]
    percent = lambda cell: float(cell.split()[0].rstrip("%"))  # noqa: E731  "68% (79%)": the rule's share
    assert percent(old[2]) >= 50 and percent(new[2]) <= 10  # false-ship rate in the worst no-better world
    assert percent(new[4]) >= 20 and percent(new[4]) >= percent(holm[4])  # a 20-point gain does get through
    assert "(" in new[4]  # the one-test ceiling beside the rule's figure
    assert old[-1] == new[-1]  # the same scorer calls: only the rule differs


def test_selection_benchmark_collapse_world_smoke() -> None:
    """bench/bench_selection.py's collapse world: the constant-answer proposal never ships under "reject"."""
    out = _run_bench("bench_selection.py", "--collapse", "--seeds", "30", "--val", "40")
    rows = {
        cells[1]: cells
        for cells in ([c.strip() for c in line.strip("|").split("|")] for line in out.splitlines())
        if cells[0] == "40"
    }
    assert rows["reject"][2] == "0.0%" and rows["flag"][2] != "0.0%"


def test_scale_out_latency_benchmark_smoke() -> None:
    """bench/bench_scale_out.py's warm-gate read latency part, against a real redis-server."""
    from tests.support.redis_server import require_binary

    require_binary()  # skips without redis-server (fails under CI)
    out = _run_bench("bench_scale_out.py", "latency", "--latency-calls", "50", "--latency-rounds", "1")
    assert "SQLite" in out and "Redis (loopback)" in out and "Redis / SQLite" in out


def test_cache_scopes_benchmark_smoke() -> None:
    """bench/bench_cache_scopes.py: one scope against two, every read a hit, against a real redis-server."""
    from tests.support.redis_server import require_binary

    require_binary()  # skips without redis-server (fails under CI)
    out = _run_bench("bench_cache_scopes.py", "--calls", "40", "--rounds", "1")
    assert "one scope: main" in out and "hits in main / one scope" in out and "both full / one scope" in out


def test_racing_benchmark_smoke() -> None:
    """A few worlds of bench/bench_racing.py: racing makes fewer scorer calls than full scoring."""
    out = _run_bench("bench_racing.py", "--seeds", "12", "--variants", "race:5:halving")
    rows = [
        [c.strip() for c in line.strip("|").split("|")]
        for line in out.splitlines()
        if line.startswith(("| off", "| race"))
    ]
    assert [row[0].split(",")[0] for row in rows] == ["off (paper)", "race"]
    off, raced = (float(row[1]) for row in rows)
    assert 0 < raced < off
    assert rows[1][3].endswith("x") and float(rows[1][3][:-1]) < 1
    assert "DSPy COPRO defaults" in out


def test_html_page_benchmark_smoke() -> None:
    """The page benchmark builds its 1,000-example page and opens it once (no timing asserts)."""
    from tests.support.browser import chromium_binary

    chromium_binary()  # skips without the browser, fails under CI
    run = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "bench_html.py"), "--runs", "1"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert run.returncode == 0, run.stdout + run.stderr
    size = float(re.search(r"page: ([\d.]+) MB", run.stdout).group(1))  # type: ignore[union-attr]
    assert 0.5 < size < 2.0
    assert "requests: 1 (0 not file://)" in run.stdout


def test_samples_benchmark_smoke() -> None:
    """A few seeds of the repeated-samples benchmark: one row per k, rates in [0, 1]."""
    run = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "bench_samples.py"), "--seeds", "3", "--n", "20", "--k", "1", "3"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert run.returncode == 0, run.stdout + run.stderr
    rows = [line for line in run.stdout.splitlines() if line.startswith("| 20 |")]
    assert [r.split("|")[2].strip() for r in rows] == ["1", "3", "3", "3"]  # k=1 once, then k=3 per aggregate
    for row in rows:
        false_fail, power = (float(c) for c in row.split("|")[6:8])
        assert 0.0 <= false_fail <= 1.0 and 0.0 <= power <= 1.0
