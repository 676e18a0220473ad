"""Item 7: scaling out — one Redis cache for many processes, a shared rate limit, Redis vs SQLite reads.

Four parts, each against a real ``redis-server`` (started here on a free loopback port in a
temporary directory, as the tests do) and the loopback provider in its own process:

- ``cache``: ``pytest -n 4 --opro-optimize`` of four identical tasks (same requests) against one
  Redis cache, then a second ``pytest --opro-optimize`` of the same tasks: the second run's provider
  calls (target 0) and the Redis keys against the distinct requests of the first run (no entry lost
  or duplicated).
- ``kill``: an optimisation whose Redis is killed (``kill -9``) after K provider calls; its artifact
  against an uncached run's; then Redis restarted from its append-only file and the run repeated:
  its calls against the requests not cached before the kill.
- ``rate``: four processes share a provider that answers 429 beyond R requests per second: direct
  calls; litellm's Router with its own rpm limits shared through Redis; the Router with pytest-opro's
  pacing per process only; the Router with pacing shared through Redis.
- ``latency``: a warm gate's reads: 1,000 cached calls through ``LLMClient.complete_many`` (one batch
  read per call) and 1,000 single ``get`` calls, SQLite vs Redis on loopback.

    python bench/bench_scale_out.py all          # ~4 min
    python bench/bench_scale_out.py rate --rate 20 --calls 60
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from bench.bench_common import ServerProcess, machine, table  # noqa: E402


def redis_server(directory: Path) -> Any:
    from tests.support.redis_server import RedisServer

    return RedisServer(directory).start()


# ----------------------------------------------------------------------------------------------
# a project whose tasks all make the same requests
# ----------------------------------------------------------------------------------------------
def write_project(root: Path, names: list[str], n_examples: int = 20) -> Any:
    from tests.support.loop_brain import write_project as write

    return write(root, names=names, n_examples=n_examples, settings={"max_steps": 3, "candidates": 3, "patience": 0})


def same_examples(root: Path, names: list[str]) -> None:
    """Give every task the first task's examples: identical requests, so concurrent writers collide."""
    first = (root / f"{names[0]}.jsonl").read_text(encoding="utf-8")
    for name in names[1:]:
        (root / f"{name}.jsonl").write_text(first, encoding="utf-8")


def run_pytest(project: Path, *args: str, url: str, timeout: float = 600) -> tuple[int, str, float]:
    """pytest on `project` in a subprocess (the tests' helper), its models at `url`: exit code,
    output and seconds."""
    from tests.support.loop_brain import run_pytest as run

    start = time.monotonic()
    proc = run(project, url, "-W", "ignore::DeprecationWarning", *args, timeout=timeout)
    return proc.returncode, proc.stdout + proc.stderr, time.monotonic() - start


def count_keys(server: Any) -> int:
    return sum(1 for _ in server.client().scan_iter(match="opro:resp:*", count=1000))


def bench_cache(workdir: Path) -> str:
    from tests.support.loop_brain import cache_entries
    from tests.support.loopback import LoopbackServer

    names = ["alpha", "beta", "gamma", "delta"]
    alone = workdir / "cache-alone"
    brain = write_project(alone, ["alpha"])
    with LoopbackServer(answer=brain, latency=0.02) as provider:
        code, out, _ = run_pytest(alone, "--opro-optimize", url=provider.url)
        assert code == 0, out
    one_task_keys = cache_entries(alone / ".opro_cache")
    project = workdir / "cache-project"
    brain = write_project(project, names)
    same_examples(project, names)
    brain.learn(json.loads(line) for line in (project / "alpha.jsonl").read_text().splitlines())
    server = redis_server(workdir / "redis-cache")
    rows = []
    try:
        with LoopbackServer(answer=brain, latency=0.02) as provider:
            code1, out1, t1 = run_pytest(
                project, "-n", "4", "--opro-optimize", f"--opro-cache-url={server.url}", url=provider.url
            )
            first_calls = provider.requests
            keys_after_first = count_keys(server)
            set_calls = server.client().info("commandstats").get("cmdstat_set", {}).get("calls", 0)
            code2, out2, t2 = run_pytest(project, "--opro-optimize", f"--opro-cache-url={server.url}", url=provider.url)
            second_calls = provider.requests - first_calls
            keys_after_second = count_keys(server)
    finally:
        server.stop()
    assert code1 == 0 and code2 == 0, out1 + out2
    # the optimizer's identical requests differ in the sample index (in the key, not the body)
    rows.append(["one task alone, SQLite cache (reference)", "–", one_task_keys, f"{one_task_keys} rows"])
    rows.append(
        ["`pytest -n 4 --opro-optimize`: 4 identical tasks, one Redis", f"{t1:.1f}", first_calls, keys_after_first]
    )
    rows.append(["second `pytest --opro-optimize`, same Redis", f"{t2:.1f}", second_calls, keys_after_second])
    text = table(["run", "wall s", "provider calls", "cache entries after"], rows)
    return (
        text + f"\n\nThe four workers sent {set_calls} `SET NX` for {keys_after_first} keys: each key was "
        f"stored once (the first writer), {set_calls - keys_after_first} writes found their key taken. "
        f"{first_calls - keys_after_first} of the {first_calls} calls repeated a question another worker "
        "had in flight: the four identical tasks ran in lock step, so most questions reached the provider "
        "from several workers before the first answer was stored."
    )


# ----------------------------------------------------------------------------------------------
# kill -9 mid-run
# ----------------------------------------------------------------------------------------------
def bench_kill(workdir: Path, kill_fraction: float = 1 / 3) -> str:
    import threading

    import yaml

    from tests.support.loopback import LoopbackServer

    names = ["alpha"]
    results: dict[str, Any] = {}

    def artifact(project: Path) -> dict:
        from tests.support.loop_brain import comparable

        return comparable(yaml.safe_load((project / "__opro__" / "alpha.yaml").read_text()))

    # uncached reference
    ref = workdir / "kill-reference"
    brain = write_project(ref, names)
    with LoopbackServer(answer=brain, latency=0.02) as provider:
        code, out, t_ref = run_pytest(ref, "--opro-optimize", "--opro-cache=off", url=provider.url)
        ref_calls = provider.requests
    assert code == 0, out
    kill_after = max(1, int(ref_calls * kill_fraction))

    project = workdir / "kill-project"
    brain = write_project(project, names)
    server = redis_server(workdir / "redis-kill")
    killed = threading.Event()

    def answer(messages: list[dict]) -> str:
        if provider.requests >= kill_after and not killed.is_set():
            killed.set()
            results["keys_before_kill"] = count_keys(server)
            server.kill()
        return brain(messages)

    try:
        with LoopbackServer(answer=answer, latency=0.02) as provider:
            code, out, t_kill = run_pytest(
                project,
                "--opro-optimize",
                f"--opro-cache-url={server.url}",
                "-W",
                "always::RuntimeWarning",
                url=provider.url,
            )
            calls_1 = provider.requests
        assert code == 0, out
        warnings_seen = out.count("continuing without the cache")
        same = artifact(project) == artifact(ref)
        (project / "__opro__" / "alpha.yaml").unlink()
        server.start()
        keys_after_restart = count_keys(server)
        with LoopbackServer(answer=brain, latency=0.02) as provider:
            code, out2, t_again = run_pytest(
                project, "--opro-optimize", f"--opro-cache-url={server.url}", url=provider.url
            )
            calls_2 = provider.requests
        assert code == 0, out2
        same_again = artifact(project) == artifact(ref)
    finally:
        server.stop()
    rows = [
        ["uncached reference (`--opro-cache=off`)", f"{t_ref:.1f}", ref_calls, "–", "–"],
        [
            f"Redis killed (`kill -9`) at provider call {kill_after}",
            f"{t_kill:.1f}",
            calls_1,
            f"{warnings_seen} warning line(s)",
            "identical" if same else "DIFFERENT",
        ],
        [
            "Redis restarted, same run again",
            f"{t_again:.1f}",
            calls_2,
            f"{keys_after_restart} keys restored",
            "identical" if same_again else "DIFFERENT",
        ],
    ]
    note = (
        f"Keys written before the kill: {results.get('keys_before_kill')}; after the restart: "
        f"{keys_after_restart}. Calls of the repeat run: {calls_2} = the {ref_calls} requests of a "
        f"whole run minus the {keys_after_restart} cached ({ref_calls - keys_after_restart})."
    )
    return table(["run", "wall s", "provider calls", "cache", "artifact vs reference"], rows) + "\n\n" + note


# ----------------------------------------------------------------------------------------------
# a rate limit shared by four processes
# ----------------------------------------------------------------------------------------------
def _rate_worker(
    index: int, url: str, router_file: str | None, calls: int, concurrency: int, ready: Any, start: Any, out: Any
) -> None:
    import asyncio

    from pytest_opro.models.client import LLMClient
    from pytest_opro.models.config import ModelConfig

    router = None
    if router_file:
        from pytest_opro.models.router import open_router

        router = open_router(router_file)
        router.router()  # build (and import litellm) before the clock starts
        model = ModelConfig("bench", params={"temperature": 0, "max_tokens": 8}, timeout=30, max_retries=30)
    else:
        from pytest_opro.models.litellm_bridge import get_litellm

        get_litellm()
        model = ModelConfig(
            "openai/bench-model",
            params={"temperature": 0, "max_tokens": 8},
            api_base=url,
            api_key="sk-loopback",
            timeout=30,
            max_retries=30,
        )
    client = LLMClient(concurrency=concurrency, router=router, retry_base=0.2, retry_cap=5.0)
    requests = [([{"role": "user", "content": f"process {index} request {i}"}], 0) for i in range(calls)]
    # one call first: the first call through litellm sets up its HTTP client (about a second)
    asyncio.run(LLMClient(router=router).complete(model, [{"role": "user", "content": f"warm-up {index}"}]))
    ready.put(index)
    start.wait()
    t0 = time.time()
    results = asyncio.run(client.complete_many(model, requests))
    t1 = time.time()
    usage = client.usage_totals()
    out.put(
        {
            "index": index,
            "t0": t0,
            "t1": t1,
            "ok": sum(1 for r in results if hasattr(r, "text")),
            "retries": usage.retries,
            "failures": usage.failures,
        }
    )


def _router_yaml(path: Path, url: str, *, rpm: float, pacing: bool, redis_url: str | None, strategy: str) -> str:
    import yaml

    data: dict[str, Any] = {
        "model_list": [
            {
                "model_name": "bench",
                "litellm_params": {
                    "model": "openai/bench-model",
                    "api_base": url,
                    "api_key": "sk-loopback",
                    "rpm": rpm,
                },
            }
        ],
        "router_settings": {"routing_strategy": strategy},
        "pacing": {"enabled": pacing},
    }
    if redis_url:
        data["router_settings"]["redis_url"] = redis_url
    path.write_text(yaml.safe_dump(data), encoding="utf-8")
    return str(path)


def rate_variant(
    workdir: Path,
    label: str,
    rate: float,
    burst: float,
    calls: int,
    concurrency: int,
    router: dict | None,
    processes: int = 4,
) -> list[Any]:
    with ServerProcess(latency=0.02, rate_limit=rate, rate_burst=burst) as provider:
        router_file = None
        if router is not None:
            router_file = _router_yaml(workdir / f"router-{abs(hash(label))}.yaml", provider.url, **router)
        ctx = mp.get_context("spawn")
        ready, start, out = ctx.Queue(), ctx.Event(), ctx.Queue()
        procs = [
            ctx.Process(target=_rate_worker, args=(i, provider.url, router_file, calls, concurrency, ready, start, out))
            for i in range(processes)
        ]
        for p in procs:
            p.start()
        for _ in procs:  # every worker has imported litellm and built its Router: start them together
            ready.get(timeout=300)
        provider.reset()
        start.set()
        got = [out.get(timeout=600) for _ in procs]
        for p in procs:
            p.join(30)
        stats = provider.stats()
    t0, t1 = min(g["t0"] for g in got), max(g["t1"] for g in got)
    ok = sum(g["ok"] for g in got)
    requests = stats["requests"]
    limited = stats["faults"].get("429", 0)
    return [
        label,
        processes * calls,
        ok,
        requests,
        limited,
        f"{100 * limited / max(1, requests):.1f}%",
        f"{ok / (t1 - t0):.1f}",
        f"{ok / (t1 - t0) / rate:.2f}",
        sum(g["retries"] for g in got),
        sum(g["failures"] for g in got),
    ]


def bench_rate(
    workdir: Path, rate: float = 20.0, calls: int = 60, concurrency: int = 8, burst: float | None = None
) -> str:
    burst = rate if burst is None else burst
    server = redis_server(workdir / "redis-rate")
    try:
        variants = [
            ("direct, no Router", None),
            (
                "Router, litellm rpm limit shared in Redis (usage-based-routing-v2)",
                {"rpm": 60 * rate, "pacing": False, "redis_url": server.url, "strategy": "usage-based-routing-v2"},
            ),
            (
                "Router + pacing, each process on its own",
                {"rpm": 0.9 * 60 * rate, "pacing": True, "redis_url": None, "strategy": "simple-shuffle"},
            ),
            (
                "Router + pacing shared in Redis",
                {"rpm": 0.9 * 60 * rate, "pacing": True, "redis_url": server.url, "strategy": "simple-shuffle"},
            ),
        ]
        rows = []
        for label, router in variants:
            server.client().flushall()
            rows.append(rate_variant(workdir, label, rate, burst, calls, concurrency, router))
            print(" | ".join(map(str, rows[-1])), flush=True)
    finally:
        server.stop()
    head = [
        "setup",
        "calls",
        "answered",
        "provider requests",
        "429s",
        "429 share",
        "answers/s",
        "× R",
        "client retries",
        "failed",
    ]
    return (
        f"Provider: at most R = {rate:g} requests/s (token bucket of {burst:g}, refilled at R), latency 20 ms; "
        f"4 processes × {calls} calls, {concurrency} concurrent per process; pacing at 0.9 × R.\n\n" + table(head, rows)
    )


# ----------------------------------------------------------------------------------------------
# read latency of a warm gate
# ----------------------------------------------------------------------------------------------
def bench_latency(workdir: Path, n: int = 1000, rounds: int = 5) -> str:
    import asyncio

    from pytest_opro.models.cache import ResponseCache
    from pytest_opro.models.client import LLMClient
    from pytest_opro.models.config import Budget, ModelConfig
    from pytest_opro.models.redis_cache import RedisCache

    server = redis_server(workdir / "redis-latency")
    model = ModelConfig("openai/bench-model", params={"temperature": 0, "max_tokens": 8})
    requests = [
        (
            [
                {"role": "system", "content": "Label the review."},
                {"role": "user", "content": f"Review {i}: the film was {'good' if i % 2 else 'dull'}."},
            ],
            0,
        )
        for i in range(n)
    ]
    value = {"text": "positive", "prompt_tokens": 20, "completion_tokens": 1, "cost_usd": 0.0}
    results: dict[str, dict[str, list[float]]] = {}
    try:
        caches = {
            "SQLite": lambda: ResponseCache(workdir / "sqlite-latency"),
            "Redis (loopback)": lambda: RedisCache(server.url),
        }
        for name, make in caches.items():
            cache = make()
            for messages, index in requests:
                cache.put(cache.key(model.model, messages, model.params, index), value)
            cache.close()
            batch, single = [], []
            for _ in range(rounds):
                cache = make()
                client = LLMClient(cache=cache, budget=Budget(max_calls=0))
                t = time.perf_counter()
                out = asyncio.run(client.complete_many(model, requests))
                batch.append((time.perf_counter() - t) / n * 1e6)
                assert all(getattr(c, "cached", False) for c in out)
                keys = [cache.key(model.model, m, model.params, i) for m, i in requests]
                t = time.perf_counter()
                for key in keys:
                    assert cache.get(key) is not None
                single.append((time.perf_counter() - t) / n * 1e6)
                cache.close()
            results[name] = {"batch": batch, "single": single}
    finally:
        server.stop()
    rows = []
    for name, r in results.items():
        rows.append(
            [
                name,
                f"{statistics.median(r['batch']):.1f} [{min(r['batch']):.1f}–{max(r['batch']):.1f}]",
                f"{statistics.median(r['single']):.1f} [{min(r['single']):.1f}–{max(r['single']):.1f}]",
            ]
        )
    sq, rd = results["SQLite"], results["Redis (loopback)"]
    ratio_batch = statistics.median(rd["batch"]) / statistics.median(sq["batch"])
    ratio_single = statistics.median(rd["single"]) / statistics.median(sq["single"])
    rows.append(["Redis / SQLite", f"×{ratio_batch:.2f}", f"×{ratio_single:.2f}"])
    return table(
        ["cache", f"warm gate: µs per cached call ({n} calls, complete_many)", "one get() per key: µs per read"], rows
    )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("part", choices=("cache", "kill", "rate", "latency", "all"))
    parser.add_argument("--rate", type=float, default=20.0, help="the provider's limit R, requests per second")
    parser.add_argument("--calls", type=int, default=60, help="calls per process in the rate part")
    parser.add_argument("--concurrency", type=int, default=8, help="concurrent calls per process in the rate part")
    parser.add_argument(
        "--burst", type=float, default=None, help="the provider's token bucket (default R: R requests in any second)"
    )
    parser.add_argument("--latency-calls", type=int, default=1000, help="cached calls the latency part reads")
    parser.add_argument("--latency-rounds", type=int, default=5, help="rounds of the latency part")
    args = parser.parse_args(argv)
    print(f"Machine: {machine()}\n", flush=True)
    with tempfile.TemporaryDirectory(prefix="opro-scale-") as tmp:
        workdir = Path(tmp)
        parts = ("cache", "kill", "rate", "latency") if args.part == "all" else (args.part,)
        for part in parts:
            start = time.monotonic()
            if part == "cache":
                text = bench_cache(workdir)
            elif part == "kill":
                text = bench_kill(workdir)
            elif part == "rate":
                text = bench_rate(workdir, args.rate, args.calls, args.concurrency, args.burst)
            else:
                text = bench_latency(workdir, n=args.latency_calls, rounds=args.latency_rounds)
            print(f"### {part} ({time.monotonic() - start:.0f} s)\n\n{text}\n", flush=True)


if __name__ == "__main__":
    main()
