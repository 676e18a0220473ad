"""What the optimizer works on and what it calls: the :class:`Problem` and :class:`Completer` protocols.

The loop knows nothing about prompts or providers. A Problem describes itself to the meta-prompt,
parses solutions out of optimizer text and scores batches of solutions; a Completer answers the
optimizer's chat requests (``pytest_opro.models.LLMClient`` is one) and keeps count of their cost.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Mapping, Protocol, Sequence

from pytest_opro.errors import ProviderError

if TYPE_CHECKING:
    from pytest_opro.opro.settings import OptimizerSettings

#: One chat request: the messages and the sample index (part of the cache key, and of the seed).
Request = tuple[list[dict[str, Any]], int]


def score_sign(higher_is_better: bool) -> float:
    """+1 when higher scores are better, -1 when lower are: multiply a score by it to rank best-highest."""
    return 1.0 if higher_is_better else -1.0


class Reply(Protocol):
    """An optimizer answer."""

    @property
    def text(self) -> str: ...


class UsageTotals(Protocol):
    """Running totals over every call a Completer made."""

    @property
    def calls(self) -> int: ...

    @property
    def cache_hits(self) -> int: ...

    @property
    def cost_usd(self) -> float: ...


class Completer(Protocol):
    """What the loop calls models through; the models package implements it."""

    async def complete_many(
        self, model: Any, requests: Sequence[Request], /, *, role: str | None = None
    ) -> Sequence[Reply | ProviderError]:
        """Answer every request; a call that failed for good comes back as its ProviderError.

        `role` says what the calls are for ("optimizer" from the loop), for accounting per role."""
        ...

    def usage_totals(self) -> UsageTotals:
        """Calls, cache hits and cost so far."""
        ...

    def usage_state(self) -> dict[str, Any]:
        """Usage as plain data, for checkpoints."""
        ...

    def restore_usage(self, state: Mapping[str, Any]) -> None:
        """Add usage saved by :meth:`usage_state` (a resumed run counts what it paid before)."""
        ...


@dataclass(frozen=True)
class Parsed:
    """What a problem found in one optimizer reply: a solution, or why there is none."""

    solution: str | None
    rejection: str | None = None


@dataclass
class Score:
    """A solution's score on one split; `outcomes` maps example id to its score where that applies.

    `answers` maps example id to the answer the metric read (None when it found none), for problems
    whose targets are labels; the loop keeps its distribution to flag answer collapse. `outputs` maps
    example id to what the model replied, for reports that show it (the loop never reads it).
    """

    value: float
    n: int = 0
    outcomes: dict[str, float] | None = None
    failures: int = 0
    error: str | None = None  # one failed call's message, when there were failures
    notes: dict[str, int] | None = None  # why outputs scored as they did, counted (e.g. {"not JSON": 12})
    answers: dict[str, str | None] | None = None
    outputs: dict[str, str] | None = None


def check_failure_rate(failed: int, total: int, what: str, max_rate: float, cause: str | None = None) -> None:
    """Stop the run (ProviderError) when more than `max_rate` of `total` calls failed for good.

    Failed calls are never scored as wrong answers: below the threshold they are left out of the
    mean, above it the run stops so that a provider outage cannot pass for a bad instruction.
    `cause` is one failure's message, shown so the user knows what to fix.
    """
    if total and failed / total > max_rate:
        first = f" (first: {cause})" if cause else ""
        raise ProviderError(
            f"{failed} of {total} {what} failed after retries{first}; more than max_failure_rate={max_rate:.0%}, "
            "so the run stopped with its completed steps checkpointed: fix the provider and run again to resume"
        )


class Problem(Protocol):
    """What the loop needs from a thing to optimise.

    Optional, used when present: ``edit_prompt`` (a template name for the ``edit`` proposer),
    ``proposals(kind, top, rng) -> list[str]`` (model-free candidates for proposers such as
    ``format`` and ``classic``; `top` is the best texts so far, worst first) and
    ``screen(text) -> str | None`` (a reason to reject a candidate, e.g. leakage).
    """

    higher_is_better: bool
    has_validation: bool
    meta_prompt: str
    optimizer: Any  # the model optimizer calls go to, handed to the Completer as it is

    def meta_prompt_variables(self, step: int, rng: random.Random) -> dict[str, Any]:
        """Problem description, exemplars and anything else its template shows."""

    def format_score(self, value: float, settings: "OptimizerSettings") -> Any:
        """How a score appears in the meta-prompt."""

    def parse(self, text: str) -> Parsed:
        """Extract one solution from optimizer output."""

    def initial_solutions(self) -> list[str]:
        """Solutions scored before the first step (the baseline)."""

    async def score(self, solutions: list[str], split: str) -> list[Score]:
        """Score each solution on `split` ("train", "validation" or "test")."""


class ExampleScoring(Protocol):
    """Optional: a Problem whose score is a mean over examples and that can score a subset of them.

    Problems that implement both methods are raced on train (``screening="race"``); the others are
    always scored on the whole split.
    """

    def example_strata(self, split: str) -> dict[str, str]:
        """Every example id of `split` mapped to its stratum (e.g. its target), for stratified minibatches."""

    async def score_examples(self, solutions: list[str], split: str, ids: Sequence[str]) -> list[Score]:
        """Score each solution on the examples of `split` whose ids are `ids` (same order for every solution)."""


def supports_example_scoring(problem: object) -> bool:
    """Whether `problem` implements :class:`ExampleScoring` (it can be raced)."""
    return callable(getattr(problem, "example_strata", None)) and callable(getattr(problem, "score_examples", None))
