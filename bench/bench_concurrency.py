"""Item 1: scoring concurrency against the loopback server.

Scores one instruction on N short classification examples (the scorer path the optimiser uses:
PromptTask.messages -> LLMClient.complete_many -> litellm -> HTTP) with concurrency C, server
latency L, no cache. Throughput is reported as a fraction of the limit C/L.

Diagnostic rows (C >= 32) separate where a shortfall comes from:
- "llm.py only": LLMClient with litellm replaced by a stub that sleeps L (our semaphore, retries,
  ledger and scoring code, nothing else);
- "litellm, no HTTP": LLMClient -> litellm -> a litellm CustomLLM that sleeps L (adds litellm's
  dispatch, logging and cost code, without the OpenAI HTTP path);
- "raw aiohttp": a bare aiohttp client against the same server (the server and machine ceiling).
The CPU columns show the client's CPU per call and the time it sat runnable waiting for a CPU
(taken by other processes on a shared machine).

    python bench/bench_concurrency.py                 # ~1.5 min
    python bench/bench_concurrency.py --model hosted_vllm/bench-model
"""

from __future__ import annotations

import argparse
import asyncio
import math
import sys
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
    summary,
    table,
    transport_label,
)

LABELS = ("positive", "negative")


def examples(n: int, salt: str) -> tuple[Any, list]:
    """A PromptTask and its n short two-label classification examples (ids salted per run)."""
    from pytest_opro import PromptTask
    from pytest_opro.prompts.examples import examples_from_records

    records = [
        {
            "id": f"{salt}-{i}",
            "input": f"Review {salt}-{i}: the film was {'good' if i % 2 else 'dull'}.",
            "target": LABELS[i % 2],
            "choices": list(LABELS),
        }
        for i in range(n)
    ]
    exs = examples_from_records(records)
    return PromptTask(name="bench", examples=exs, metric="exact", fractions=None, counts=(n, 0, 0)), exs


async def score_pass(client: Any, config: Any, calls: int, salt: str) -> dict:
    """Score one instruction on `calls` fresh examples; wall and CPU time of the pass."""
    from pytest_opro.prompts.instruction_problem import score_instructions

    task, exs = examples(calls, salt)
    wait0, cpu0, t0 = runqueue_wait(), time.process_time(), time.perf_counter()
    scores = await score_instructions(task, client, config, ["Classify the review."], exs)
    wall, cpu = time.perf_counter() - t0, time.process_time() - cpu0
    return {
        "wall": wall,
        "cpu_ms": 1000 * cpu / calls,
        "wait": runqueue_wait() - wait0,
        "failures": scores[0].failures,
        "n": scores[0].n,
    }


async def _score_runs(config: Any, concurrency: int, calls: int, runs: int) -> list[dict]:
    """`runs` timed scoring passes on one event loop (connections stay warm, as in a real run)."""
    from pytest_opro.models.client import LLMClient

    client = LLMClient(cache=None, concurrency=concurrency)
    await score_pass(client, config, 16, "warm")  # warm-up: connections, litellm's first-call setup
    out = []
    for run in range(runs):
        result = await score_pass(client, config, calls, f"c{concurrency}r{run}")
        assert result["failures"] == 0, f"{result['failures']} scorer calls failed"
        out.append(result)
    return out


async def _raw_runs(url: str, concurrency: int, calls: int, runs: int) -> list[dict]:
    import aiohttp

    sem = asyncio.Semaphore(concurrency)
    out = []
    async with aiohttp.ClientSession() as session:

        async def one(i: int) -> None:
            async with sem:
                async with session.post(
                    f"{url}/chat/completions",
                    json={"model": "bench-model", "messages": [{"role": "user", "content": f"q{i}"}]},
                ) as resp:
                    await resp.json()

        await asyncio.gather(*[one(-i - 1) for i in range(concurrency)])
        for _ in range(runs):
            wait0, cpu0, t0 = runqueue_wait(), time.process_time(), time.perf_counter()
            await asyncio.gather(*[one(i) for i in range(calls)])
            out.append(
                {
                    "wall": time.perf_counter() - t0,
                    "cpu_ms": 1000 * (time.process_time() - cpu0) / calls,
                    "wait": runqueue_wait() - wait0,
                }
            )
    return out


def _stubbed_runs(latency: float, c: int, calls: int, runs: int) -> list[dict]:
    from pytest_opro.models.config import ModelConfig

    with stubbed_litellm(latency):
        return asyncio.run(_score_runs(ModelConfig("stub/m", {"temperature": 0}), c, calls, runs))


def _sleep_provider(latency: float) -> Any:
    from pytest_opro.models import litellm_bridge as llm

    litellm = llm.get_litellm()  # configured import (local cost map, quiet logging)
    from litellm.llms.custom_llm import CustomLLM

    class SleepLLM(CustomLLM):
        cost_per_call = 0.0

        def _response(self, model: str) -> Any:
            return litellm.ModelResponse(
                model=model,
                choices=[
                    {"index": 0, "finish_reason": "stop", "message": {"role": "assistant", "content": "positive"}}
                ],
                usage=litellm.Usage(prompt_tokens=8, completion_tokens=1, total_tokens=9),
            )

        def completion(self, model: str, *args: Any, **kwargs: Any) -> Any:
            time.sleep(latency)
            return self._response(model)

        async def acompletion(self, model: str, *args: Any, **kwargs: Any) -> Any:
            await asyncio.sleep(latency)
            return self._response(model)

    return SleepLLM()


def row(kind: str, c: int, calls: int, latency: float, results: list[dict], extra: str = "") -> list[str]:
    walls = [r["wall"] for r in results]
    fracs = [(calls / w) / (c / latency) for w in walls]
    ideal = math.ceil(calls / c) * latency
    cpu_ms = summary([r["cpu_ms"] for r in results])[0]
    # What one fully available core allows: each call's own CPU adds to its latency, and the loop
    # can run at most 1/cpu calls a second.
    cpu = cpu_ms / 1000
    ceiling = min(latency / (latency + cpu), latency / (c * cpu))
    return [
        kind,
        str(c),
        str(calls),
        f"{ideal:.2f}",
        fmt(walls, 2),
        fmt(fracs, 3),
        f"{cpu_ms:.2f}",
        f"{ceiling:.2f}",
        f"{summary([r['wait'] for r in results])[0]:.2f}",
        extra,
    ]


def main(argv: list[str] | None = None) -> list[list[str]]:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--calls", type=int, default=512)
    parser.add_argument(
        "--c1-calls",
        type=int,
        default=32,
        help="calls at C=1 (512 would take 51 s a run; the per-call rate is the same)",
    )
    parser.add_argument("--concurrency", default="1,8,32,64")
    parser.add_argument("--latency", type=float, default=0.1)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--model", default=BENCH_MODEL)
    parser.add_argument(
        "--transport",
        default="auto",
        choices=("auto", "litellm", "http"),
        help="ModelConfig.transport: auto = direct HTTP for openai/ and hosted_vllm/ with api_base",
    )
    parser.add_argument("--no-diagnostics", action="store_true")
    args = parser.parse_args(argv)
    levels = [int(c) for c in args.concurrency.split(",")]
    rows: list[list[str]] = []
    started = time.perf_counter()
    with ServerProcess(latency=args.latency) as server:
        config = model_config(server.url, args.model, args.transport)
        for c in levels:
            calls = args.c1_calls if c == 1 else args.calls
            server.reset()
            results = asyncio.run(_score_runs(config, c, calls, args.runs))
            stats = server.stats()
            rows.append(
                row(
                    f"LLMClient → {args.model.split('/')[0]}/ ({transport_label(config)}) → server",
                    c,
                    calls,
                    args.latency,
                    results,
                    f"max in flight {stats['max_in_flight']}",
                )
            )
            print(" | ".join(rows[-1]), flush=True)
        if not args.no_diagnostics:
            from pytest_opro.models.config import ModelConfig
            from pytest_opro.models.litellm_bridge import register_provider

            register_provider("benchsleep", _sleep_provider(args.latency))
            sleep_config = ModelConfig("benchsleep/m", {"temperature": 0, "max_tokens": 16})
            for c in [c for c in levels if c >= 32]:
                results = _stubbed_runs(args.latency, c, args.calls, args.runs)
                rows.append(
                    row("diagnostic: llm.py only (litellm stubbed: sleep L)", c, args.calls, args.latency, results)
                )
                print(" | ".join(rows[-1]), flush=True)
                results = asyncio.run(_score_runs(sleep_config, c, args.calls, args.runs))
                rows.append(
                    row("diagnostic: litellm, no HTTP (CustomLLM: sleep L)", c, args.calls, args.latency, results)
                )
                print(" | ".join(rows[-1]), flush=True)
                results = asyncio.run(_raw_runs(server.url, c, args.calls, args.runs))
                rows.append(row("diagnostic: raw aiohttp → server", c, args.calls, args.latency, results))
                print(" | ".join(rows[-1]), flush=True)
    print()
    print(
        f"Scoring concurrency, L = {args.latency * 1000:g} ms, {args.runs} runs each, cache off; "
        f"median [min–max]; {time.perf_counter() - started:.0f} s"
    )
    print(f"Machine: {machine()}")
    print(
        table(
            [
                "path",
                "C",
                "calls",
                "ideal s",
                "wall s",
                "throughput / (C/L)",
                "client CPU ms/call",
                "CPU ceiling min(L/(L+cpu), L/(C·cpu))",
                "run-queue wait s",
                "note",
            ],
            rows,
        )
    )
    return rows


if __name__ == "__main__":
    main()
