"""Helpers shared by the example problems' runners and reports."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable, TypedDict

from pytest_opro.models.cache import Cache
from pytest_opro.models.client import LLMClient
from pytest_opro.models.config import Budget
from pytest_opro.opro.loop import CandidateCallback, LoopResult, StepCallback, run_loop
from pytest_opro.opro.problem import Problem
from pytest_opro.opro.settings import OptimizerSettings


class RunOptions(TypedDict, total=False):
    """Keyword arguments every problem runner takes, passed on to :func:`run_problem`."""

    cache: Cache | str | Path | None
    cache_mode: str
    budget: Budget | None
    client: LLMClient | None
    concurrency: int
    on_step: StepCallback | None
    on_candidate: CandidateCallback | None


async def run_problem(
    problem: Problem,
    settings: OptimizerSettings,
    *,
    cache: Cache | str | Path | None = ".opro_cache",
    cache_mode: str = "rw",
    budget: Budget | None = None,
    client: LLMClient | None = None,
    concurrency: int = 16,
    on_step: StepCallback | None = None,
    on_candidate: CandidateCallback | None = None,
) -> tuple[LoopResult, LLMClient]:
    """Run the OPRO loop over `problem`; return the loop's result and the client that made the calls.

    Without `client`, one is opened with the response cache and budget prompt tasks use.
    """
    client = client or open_client(cache, cache_mode, budget, concurrency)
    loop = await run_loop(problem, client, settings, on_step=on_step, on_candidate=on_candidate)
    return loop, client


def open_client(
    cache: Cache | str | Path | None, cache_mode: str, budget: Budget | None, concurrency: int
) -> LLMClient:
    """An LLMClient with the response cache and budget prompt tasks use."""
    from pytest_opro.models.cache import open_cache

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
