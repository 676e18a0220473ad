"""The read-path cost of a second trust scope: a warm gate's cached calls, Redis with one scope vs two.

Against a real ``redis-server`` on a free loopback port, N answers are stored, then read back as a
warm gate reads them: ``LLMClient.complete_many`` over the N calls (one ``MGET`` per batch), and one
``get`` per key (one round trip per call). Four layouts of the same answers, measured in turn
within each round (the order rotates every round, so drift on a shared machine falls on all alike):

- no scope: the layout of earlier versions, one key per call;
- one scope: a default-branch run (``--opro-cache-scope main``), which reads only its own scope;
- two scopes, hits in the trusted one: a pull request (``pr-1``, trusting ``main``) whose own scope
  is empty, so every answer comes from ``main``: two keys per call, one value back;
- two scopes, both full: ``pr-2``, whose own scope and ``main`` both hold every answer: two keys and
  two values per call (the most bytes a second scope can cost).

    python bench/bench_cache_scopes.py                 # about 1 minute
    python bench/bench_cache_scopes.py --calls 200 --rounds 2
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Callable

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from bench.bench_common import machine, table  # noqa: E402

VALUE = {"text": "positive", "prompt_tokens": 20, "completion_tokens": 1, "cost_usd": 0.0}


def requests(n: int) -> list[tuple[list[dict[str, Any]], int]]:
    """A gate's scorer calls: one per test example."""
    return [
        (
            [
                {"role": "system", "content": "Label the review."},
                {"role": "user", "content": f"Review {i}: the film was {'good' if i % 2 else 'dull'}."},
            ],
            0,
        )
        for i in range(n)
    ]


def run(n: int, rounds: int) -> tuple[str, dict[str, dict[str, list[float]]]]:
    from pytest_opro.models.client import LLMClient
    from pytest_opro.models.config import Budget, ModelConfig
    from pytest_opro.models.redis_cache import RedisCache
    from tests.support.redis_server import RedisServer

    model = ModelConfig("openai/bench-model", params={"temperature": 0, "max_tokens": 8})
    calls = requests(n)
    with tempfile.TemporaryDirectory() as tmp, RedisServer(Path(tmp) / "redis") as server:
        layouts: dict[str, Callable[[], RedisCache]] = {
            "no scope (as before)": lambda: RedisCache(server.url),
            "one scope: main": lambda: RedisCache(server.url, scope="main"),
            "two scopes: pr-1 + main, hits in main": lambda: RedisCache(server.url, scope="pr-1", trust=["main"]),
            "two scopes: pr-2 + main, both full": lambda: RedisCache(server.url, scope="pr-2", trust=["main"]),
        }
        for make in (
            layouts["no scope (as before)"],
            layouts["one scope: main"],
            layouts["two scopes: pr-2 + main, both full"],
        ):
            with make() as cache:  # pr-2 writes its own scope; main's entries serve pr-1
                for messages, index in calls:
                    cache.put(cache.key(model.model, messages, model.params, index), VALUE)
        results: dict[str, dict[str, list[float]]] = {name: {"batch": [], "single": []} for name in layouts}
        names = list(layouts)
        for r in range(rounds):
            for name in names[r % len(names) :] + names[: r % len(names)]:
                with layouts[name]() as cache:
                    client = LLMClient(cache=cache, budget=Budget(max_calls=0))  # a call would be refused
                    t = time.perf_counter()
                    out = asyncio.run(client.complete_many(model, calls))
                    results[name]["batch"].append((time.perf_counter() - t) / n * 1e6)
                    assert all(c.cached for c in out if not isinstance(c, Exception))
                    keys = [cache.key(model.model, m, model.params, i) for m, i in calls]
                    t = time.perf_counter()
                    for key in keys:
                        assert cache.get(key) is not None
                    results[name]["single"].append((time.perf_counter() - t) / n * 1e6)
                    scopes = client.ledger.hits_by_scope
                    assert sum(scopes.values()) == (n if cache.scope else 0), scopes
    return render(results, n, rounds), results


def render(results: dict[str, dict[str, list[float]]], n: int, rounds: int) -> str:
    def cell(values: list[float]) -> str:
        return f"{statistics.median(values):.1f} [{min(values):.1f}–{max(values):.1f}]"

    rows = [[name, cell(r["batch"]), cell(r["single"])] for name, r in results.items()]
    one = results["one scope: main"]
    for name in ("two scopes: pr-1 + main, hits in main", "two scopes: pr-2 + main, both full"):
        two = results[name]
        rows.append(
            [
                f"{name.split(',')[1].strip()} / one scope",
                f"×{statistics.median(two['batch']) / statistics.median(one['batch']):.2f}",
                f"×{statistics.median(two['single']) / statistics.median(one['single']):.2f}",
            ]
        )
    head = [
        "layout",
        f"warm gate: µs per cached call ({n} calls, complete_many)",
        "one get() per key: µs per read",
    ]
    return f"{rounds} rounds, median [min–max]\n\n" + table(head, rows)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--calls", type=int, default=1000, help="cached calls of the warm gate")
    parser.add_argument("--rounds", type=int, default=7, help="rounds (each reads every layout once)")
    args = parser.parse_args(argv)
    print(machine())
    text, _ = run(args.calls, args.rounds)
    print(text)


if __name__ == "__main__":
    main()
