"""The HTML report of a 1,000-example task: file size and load time in headless chromium.

Builds the page through the same code a run uses (the example table, then the page) from a made-up
optimisation of 1,000 test examples: inputs of about 300 characters, replies of about 200 (one in
fifty a 3,000-character ramble that the page folds), 80 candidates over 10 steps. Then it opens the
file in Debian's chromium through Playwright (headless, every request routed and counted) and times
the load: navigation start to the load event, and to the end of the page script's first pass.

    python bench/bench_html.py                  # ~20 s; --runs N
"""

from __future__ import annotations

import argparse
import random
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from bench.bench_common import machine  # noqa: E402
from pytest_opro.prompts.examples import examples_from_records  # noqa: E402
from pytest_opro.reporting.html import Side, example_table, write_html  # noqa: E402
from tests.support.browser import ARGS  # noqa: E402  (headless, and nothing that talks to the network)

N_EXAMPLES = 1_000
WORDS = "the a model answer question because therefore label review film plot actor scene good dull long".split()


def sentence(rng: random.Random, chars: int) -> str:
    out: list[str] = []
    while sum(len(w) + 1 for w in out) < chars:
        out.append(rng.choice(WORDS))
    return " ".join(out).capitalize() + "."


def made_up_run(n: int = N_EXAMPLES, seed: int = 0) -> tuple[dict[str, Any], dict[str, Any]]:
    """A report mapping with one optimised task and its example table of `n` test examples."""
    rng = random.Random(seed)
    records = [
        {"id": f"ex{i:04d}", "input": sentence(rng, 300), "target": rng.choice(["positive", "negative"])}
        for i in range(n)
    ]
    examples = examples_from_records(records, source="bench")
    outcomes_a = {ex.id: float(rng.random() < 0.62) for ex in examples}
    outcomes_b = {ex.id: float(rng.random() < 0.78) for ex in examples}

    def reply(ex_id: str, right: float) -> str:
        length = 3_000 if rng.random() < 0.02 else 200
        return sentence(rng, length) + (" positive" if right else " negative")

    outputs_a = {k: reply(k, v) for k, v in outcomes_a.items()}
    outputs_b = {k: reply(k, v) for k, v in outcomes_b.items()}
    table = example_table(
        examples, "test", Side("baseline", outcomes_a, outputs_a), Side("shipped", outcomes_b, outputs_b)
    )
    candidates = [{"step": 0, "text": "", "train": 0.6, "validation": 0.61, "rejection": None, "proposer": "initial"}]
    for step in range(1, 11):
        for k in range(8):
            train = min(1.0, 0.55 + 0.02 * step + rng.random() * 0.15)
            candidates.append(
                {
                    "step": step,
                    "text": sentence(rng, 120),
                    "train": train,
                    "validation": train - 0.03 if k < 2 else None,
                    "rejection": None,
                    "proposer": "opro",
                }
            )
    winner = max((c for c in candidates if c["validation"] is not None), key=lambda c: c["validation"])

    def score(value: float) -> dict[str, Any]:
        return {"value": value, "n": n, "ci_low": value - 0.03, "ci_high": value + 0.03, "notes": {}}

    entry = {
        "task": "bench",
        "nodeid": "test_bench.py::test_bench",
        "mode": "optimize",
        "status": "written",
        "ok": True,
        "artifact": "__opro__/bench.yaml",
        "message": "",
        "instruction": winner["text"],
        "baseline_instruction": "",
        "scores": {"baseline": {"test": score(0.62)}, "winner": {"test": score(0.78)}},
        "gate": None,
        "usage": {"calls": 25_000, "cache_hits": 0, "retries": 0, "failures": 0, "cost_usd": 0.0, "seconds": 600.0},
        "run": {
            "steps_run": 10,
            "best_step": winner["step"],
            "stop_reason": "max steps",
            "max_steps": 10,
            "rejections": {"duplicate": 4},
            "proposals": {"opro": 80},
            "scorer_model": "openai/bench-model",
            "optimizer_model": "openai/bench-model",
        },
        "selection": None,
        "collapse": None,
        "candidates": candidates,
    }
    report = {
        "mode": "optimize",
        "created": "2026-01-01T00:00:00+00:00",
        "plugin_version": "bench",
        "summary": {
            "tasks": 1,
            "ok": 1,
            "not_ok": 0,
            "calls": 25_000,
            "cache_hits": 0,
            "cost_usd": 0.0,
            "seconds": 600.0,
        },
        "tasks": [entry],
    }
    return report, table


def load_times(path: Path, runs: int) -> tuple[list[float], list[float], list[str], list[dict[str, float]]]:
    """Milliseconds to the load event and to the script's first pass, per run; URLs requested; and
    chromium's own main-thread durations per run (ms: all tasks, layout, style, script)."""
    from playwright.sync_api import sync_playwright

    to_load: list[float] = []
    to_script: list[float] = []
    requests: list[str] = []
    metrics: list[dict[str, float]] = []
    with sync_playwright() as playwright:
        executable = shutil.which("chromium") or "/usr/bin/chromium"
        browser = playwright.chromium.launch(executable_path=executable, args=ARGS, headless=True)
        try:
            for _ in range(runs):
                context = browser.new_context()
                context.route("**/*", lambda route: (requests.append(route.request.url), route.continue_()))
                page = context.new_page()
                cdp = context.new_cdp_session(page)
                cdp.send("Performance.enable")
                page.goto(path.as_uri(), wait_until="load")
                found = {m["name"]: m["value"] for m in cdp.send("Performance.getMetrics")["metrics"]}
                metrics.append(
                    {k: 1000 * found.get(f"{k}Duration", 0.0) for k in ("Task", "Layout", "RecalcStyle", "Script")}
                )
                timing = page.evaluate(
                    "() => { const t = performance.getEntriesByType('navigation')[0]; "
                    "return [t.loadEventEnd - t.startTime, t.domContentLoadedEventEnd - t.startTime]; }"
                )
                to_load.append(float(timing[0]))
                to_script.append(float(timing[1]))
                context.close()
        finally:
            browser.close()
    return to_load, to_script, requests, metrics


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=7)
    parser.add_argument("--keep", type=Path, default=None, help="also write the page here")
    args = parser.parse_args()
    report, table = made_up_run()
    started = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        path = write_html(report, [table], args.keep or Path(tmp) / "report.html")
        render = time.perf_counter() - started
        size = path.stat().st_size
        to_load, to_script, requests, metrics = load_times(path, args.runs)
    print(machine())
    print(
        f"examples: {N_EXAMPLES}; rows shown: {len(table['rows'])}; page: {size / 1e6:.2f} MB; rendered in {render:.2f} s"
    )
    print(
        f"load event: median {statistics.median(to_load):.0f} ms (min {min(to_load):.0f}, max {max(to_load):.0f}); "
        f"DOMContentLoaded (script done): median {statistics.median(to_script):.0f} ms; runs {args.runs}"
    )
    print(
        "chromium main thread, median ms: "
        + ", ".join(f"{k.lower()} {statistics.median(m[k] for m in metrics):.0f}" for k in metrics[0])
    )
    print(f"requests: {len(requests)} ({len({u for u in requests if not u.startswith('file://')})} not file://)")


if __name__ == "__main__":
    main()
