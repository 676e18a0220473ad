"""Item 2: a full optimisation against the loopback server, wall time against the ideal critical path.

Fixed steps (early stopping off), 8 candidates, 50 training examples, scorer and optimizer both
reached through litellm at the server's latency L, concurrency C, no cache unless --cache.

Each step of the loop is three dependent rounds: 8 optimizer calls (one round of L), then every
accepted candidate on every training example (ceil(8*50/C) rounds), then the top `validate_top`
candidates on the validation split (ceil(2*n_val/C) rounds). The ideal critical path per step is
therefore

    two-round:  L + ceil(train calls / C) * L + ceil(validation calls / C) * L
    plain:      L + ceil((train + validation calls) / C) * L        (the issue's formula)

The loop's wall time is measured from the end of the baseline to the last step report. The whole
optimize() call (baseline, steps, final test scoring) is reported too, against its own ideal.

    python bench/bench_optimize.py               # ~1.5 min
    python bench/bench_optimize.py --cache       # same, with a fresh response cache (rw) per run
    python bench/bench_optimize.py --stub-litellm  # diagnostic: litellm replaced by a sleep(L) stub,
                                                   # so only pytest_opro's own orchestration costs CPU
"""

from __future__ import annotations

import argparse
import contextlib
import math
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from bench.bench_common import (  # noqa: E402
    BENCH_MODEL,
    ServerProcess,
    fmt,
    machine,
    model_config,
    runqueue_wait,
    stubbed_litellm,
    table,
    transport_label,
)

LABELS = ("positive", "negative")


def make_task(n_train: int, n_val: int, n_test: int, salt: str) -> Any:
    from pytest_opro import PromptTask
    from pytest_opro.prompts.examples import examples_from_records

    n = n_train + n_val + n_test
    records = [
        {
            "id": f"{salt}-{i}",
            "input": f"Review {salt}-{i}: the film was {'good' if i % 2 else 'dull'}.",
            "target": LABELS[i % 2],
            "choices": list(LABELS),
        }
        for i in range(n)
    ]
    return PromptTask(
        name="bench",
        examples=examples_from_records(records),
        metric="exact",
        counts=(n_train, n_val, n_test),
        fractions=None,
        description="Classify the sentiment of a film review.",
    )


def one_run(url: str, args: argparse.Namespace, run: int) -> dict[str, Any]:
    from pytest_opro.opro.settings import OptimizerSettings
    from pytest_opro.prompts.optimization import optimize

    task = make_task(args.train, args.val, args.test, f"r{run}")
    scorer = model_config(url, args.model, args.transport, temperature=0, max_tokens=16)
    optimizer = model_config(url, args.model, args.transport, temperature=1.0, max_tokens=200)
    settings = OptimizerSettings(
        max_steps=args.steps, candidates=args.candidates, patience=0, validate_top=args.validate_top
    )
    marks: dict[str, float] = {}
    accepted: list[int] = []

    def on_candidate(cand: Any) -> None:
        if cand.step == 0:
            marks.setdefault("baseline_done", time.perf_counter())

    def on_step(report: Any) -> None:
        marks["last_step"] = time.perf_counter()
        accepted.append(report.accepted)

    with tempfile.TemporaryDirectory() as tmp:
        cache = tmp if args.cache else None
        wait0, cpu0, t0 = runqueue_wait(), time.process_time(), time.perf_counter()
        result = optimize(
            task,
            scorer=scorer,
            optimizer=optimizer,
            settings=settings,
            cache=cache,
            concurrency=args.concurrency,
            on_candidate=on_candidate,
            on_step=on_step,
        )
        total = time.perf_counter() - t0
        cpu, wait = time.process_time() - cpu0, runqueue_wait() - wait0
    assert result.steps_run == args.steps, result.stop_reason
    return {
        "total": total,
        "loop": marks["last_step"] - marks["baseline_done"],
        "accepted": accepted,
        "cpu": cpu,
        "wait": wait,
        "calls": result.usage and sum(u["calls"] for u in result.usage.values()),
    }


def ideals(args: argparse.Namespace, accepted: float) -> dict[str, float]:
    L, C = args.latency, args.concurrency
    rounds = lambda calls: math.ceil(calls / C)  # noqa: E731
    train_calls = round(accepted) * args.train
    val_calls = min(args.validate_top, round(accepted)) * args.val
    two = args.steps * (L + rounds(train_calls) * L + rounds(val_calls) * L)
    plain = args.steps * (L + rounds(train_calls + val_calls) * L)
    # baseline: train then validation for the initial instruction; end: winner and baseline on test
    whole = two + rounds(args.train) * L + rounds(args.val) * L + rounds(2 * args.test) * L
    return {"two": two, "plain": plain, "whole": whole}


def main(argv: list[str] | None = None) -> list[list[str]]:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=4)
    parser.add_argument("--candidates", type=int, default=8)
    parser.add_argument("--train", type=int, default=50)
    parser.add_argument("--val", type=int, default=20)
    parser.add_argument("--test", type=int, default=30)
    parser.add_argument("--validate-top", type=int, default=2)
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--latency", type=float, default=0.1)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--model", default=BENCH_MODEL)
    parser.add_argument(
        "--transport",
        default="auto",
        choices=("auto", "litellm", "http"),
        help="ModelConfig.transport: auto = direct HTTP for openai/ and hosted_vllm/ with api_base",
    )
    parser.add_argument("--cache", action="store_true", help="use a fresh rw response cache per run")
    parser.add_argument(
        "--stub-litellm",
        action="store_true",
        help="diagnostic: no litellm, no HTTP; calls sleep L and answer like the server",
    )
    args = parser.parse_args(argv)
    started = time.perf_counter()
    results = []
    with contextlib.ExitStack() as stack:
        server = None if args.stub_litellm else stack.enter_context(ServerProcess(latency=args.latency))
        if args.stub_litellm:
            stack.enter_context(stubbed_litellm(args.latency))
        url = server.url if server else "http://stub.invalid/v1"
        one_run(url, argparse.Namespace(**{**vars(args), "steps": 1, "cache": False}), -1)  # warm-up
        for run in range(args.runs):
            if server:
                server.reset()
            res = one_run(url, args, run)
            res["requests"] = server.stats()["requests"] if server else res["calls"]
            results.append(res)
            print(
                f"run {run}: optimize() {res['total']:.2f} s, loop {res['loop']:.2f} s, accepted/step "
                f"{res['accepted']}, {res['requests']} requests, CPU {res['cpu']:.2f} s, "
                f"run-queue wait {res['wait']:.2f} s",
                flush=True,
            )
    accepted = statistics.median(a for r in results for a in r["accepted"])
    ideal = ideals(args, accepted)
    loops = [r["loop"] for r in results]
    totals = [r["total"] for r in results]
    rows = [
        [
            "loop steps vs two-round ideal",
            f"{ideal['two']:.2f}",
            fmt(loops, 2),
            fmt([x / ideal["two"] for x in loops], 2),
        ],
        [
            "loop steps vs plain formula",
            f"{ideal['plain']:.2f}",
            fmt(loops, 2),
            fmt([x / ideal["plain"] for x in loops], 2),
        ],
        [
            "whole optimize() vs its ideal",
            f"{ideal['whole']:.2f}",
            fmt(totals, 2),
            fmt([x / ideal["whole"] for x in totals], 2),
        ],
    ]
    requests = statistics.median(r["requests"] for r in results)
    cpu_ms = statistics.median(1000 * r["cpu"] / r["requests"] for r in results)
    waits = [r["wait"] for r in results]
    print()
    print(
        f"Full optimisation: {args.steps} steps x {args.candidates} candidates, {args.train} train / {args.val} "
        f"validation / {args.test} test examples, validate_top={args.validate_top}, C={args.concurrency}, "
        f"L={args.latency * 1000:g} ms, model {'STUB (no litellm)' if args.stub_litellm else args.model + ' via ' + transport_label(model_config('http://x/v1', args.model, args.transport))}, cache {'rw (fresh)' if args.cache else 'off'}; "
        f"{args.runs} runs, median [min–max]; {time.perf_counter() - started:.0f} s"
    )
    print(
        f"{requests:.0f} requests a run; client CPU {cpu_ms:.1f} ms/request; "
        f"run-queue wait (CPU taken by other processes) {fmt(waits, 2)} s a run"
    )
    print(f"Machine: {machine()}")
    print(table(["measure", "ideal s", "wall s", "ratio"], rows))
    return rows


if __name__ == "__main__":
    main()
