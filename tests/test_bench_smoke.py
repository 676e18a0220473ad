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


def test_selection_benchmark_smoke():
    """A few seeds of bench/bench_selection.py: the new rule ships noise far less often than the old one."""
    from bench.bench_selection import WORLDS, Setup, run_world

    setup = Setup(n_val=40, alphas=(0.05,))
    null = run_world(next(w for w in WORLDS if w.name == "all -2"), setup, seeds=40)
    old, new = null["old (best on val, min_delta 0)"], null["new (alpha 0.05)"]
    assert old.runs == new.runs == 40
    assert old.worse >= 20 and new.worse <= 4  # every proposal is truly worse: shipping one is a false ship
    assert new.calls // new.runs == (1 + 32) * 20 + (1 + 8) * 40  # train for all, validation for the screened
    strong = run_world(next(w for w in WORLDS if w.name == "one +20, rest -2"), setup, seeds=40)
    assert strong["new (alpha 0.05)"].shipped_better_when_exists >= 8  # a large gain does get through
