"""A tiny run of the scoring-concurrency benchmark against the loopback server (no timing asserts)."""

from __future__ import annotations

from bench.bench_common import model_config
from bench.bench_concurrency import score_pass
from pytest_opro.models.client import LLMClient, run_sync
from tests.loopback import LoopbackServer


def test_concurrency_benchmark_smoke():
    with LoopbackServer(latency=0.05) as server:
        client = LLMClient(cache=None, concurrency=16)
        result = run_sync(score_pass(client, model_config(server.url), 32, "smoke"))
        assert result["n"] == 32 and result["failures"] == 0
        assert server.requests == 32
        assert 1 <= server.max_in_flight <= 16


def test_scale_out_latency_benchmark_smoke(tmp_path):
    from bench.bench_scale_out import bench_latency
    from tests.redis_server import require_binary

    require_binary()  # skips without redis-server (fails under CI)
    text = bench_latency(tmp_path, n=50, rounds=1)
    assert "SQLite" in text and "Redis (loopback)" in text and "Redis / SQLite" in text
