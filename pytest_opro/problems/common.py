"""Helpers shared by the example problems' runners and reports."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

from ..cache import ResponseCache
from ..llm import Budget, LLMClient
from ..opro.loop import LoopResult


def open_client(cache: ResponseCache | str | Path | None, cache_mode: str, budget: Budget | None,
                concurrency: int) -> LLMClient:
    """An LLMClient with the response cache and budget prompt tasks use."""
    from ..optimization import open_cache

    return LLMClient(cache=open_cache(cache, cache_mode), concurrency=concurrency, budget=budget)


def best_per_step(loop: LoopResult, *, higher_is_better: bool) -> list[float]:
    """Best score found up to and including each step; index 0 is the starting solutions."""
    pick = max if higher_is_better else min
    scored = loop.trajectory.scored()
    out: list[float] = []
    for step in range(loop.steps_run + 1):
        values = [c.train for c in scored if c.step <= step and c.train is not None]
        if values:
            out.append(pick(values))
    return out


def first_step_where(loop: LoopResult, reached: Callable[[float], bool]) -> int | None:
    """The first step (0 = starting solutions) at which a scored solution satisfies `reached`."""
    steps = [c.step for c in loop.trajectory.scored() if c.train is not None and reached(c.train)]
    return min(steps) if steps else None


def usage_of(client: LLMClient) -> dict[str, Any]:
    """Calls, cache hits, tokens and cost per model, as prompt-task results record them."""
    return client.ledger.to_dict()
