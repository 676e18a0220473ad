"""Racing: score a step's candidates on growing minibatches of train and stop the clearly worse early.

Full scoring (the OPRO paper) costs candidates x |train| scorer calls a step, although most
candidates are clearly worse after a dozen examples. A race scores every candidate on the same
first minibatch (stratified, so each class is represented), then lets only the better part continue
on the next, larger minibatch, and so on until the survivors have seen the whole split:

- rung sizes grow geometrically: ``first``, ``2 x first``, ``4 x first``, ... up to the whole split;
- ``rule="halving"`` (successive halving): after each rung the better half goes on, never fewer than
  ``keep`` (the number of candidates the loop validates), so the step's best ``keep`` on train are
  still scored on every train example; candidates tied with the last one kept go on too; once no more
  than ``keep`` run, they are scored on the rest of the split in one batch;
- with either rule a candidate whose paired test on the examples seen so far says it is worse than
  the race's leader or the incumbent (the best earlier candidate, whose per-example outcomes are
  known) at level ``alpha`` stops at once; ``rule="significance"`` uses only this test.

Comparisons are paired: every candidate sees the same examples in the same order, and the test is
:func:`pytest_opro.opro.stats.paired_test` on the examples both sides were scored on.

Validation is the race's last rung: the loop validates a finalist only when its train score is at
least the incumbent's (``worth_validating`` in :mod:`pytest_opro.opro.loop`).
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass, field
from typing import Awaitable, Callable, Mapping, Sequence

from pytest_opro.opro.problem import Score, score_sign
from pytest_opro.opro.settings import RULES, SCREENING, RaceRule, Screening
from pytest_opro.opro.stats import paired_test

ScoreExamples = Callable[[list[str], list[str]], Awaitable[list[Score]]]
"""Scores solutions on the given example ids of the split being raced."""


@dataclass
class Entrant:
    """One candidate's state in a race: per-example outcomes so far and whether it is still running."""

    text: str
    outcomes: dict[str, float] = field(default_factory=dict)
    failures: int = 0
    error: str | None = None
    running: bool = True
    calls: int = 0  # examples it was sent to the scorer for

    @property
    def value(self) -> float:
        return sum(self.outcomes.values()) / len(self.outcomes) if self.outcomes else 0.0

    def score(self) -> Score:
        """Its score on the examples seen so far (n = examples with an outcome)."""
        return Score(
            self.value, n=len(self.outcomes), outcomes=dict(self.outcomes), failures=self.failures, error=self.error
        )


@dataclass(frozen=True)
class RaceStats:
    """One step's racing figures: candidates stopped early, train scorer calls made, calls saved
    against full scoring (train calls of the candidates stopped early, validation calls of the
    finalists not validated)."""

    screened_out: int = 0
    train_calls: int = 0
    calls_saved: int = 0


@dataclass
class RaceResult:
    """What a race found: each entrant's score, whether it saw the whole split, and the calls made."""

    entrants: list[Entrant]
    finished: list[bool]
    calls: int
    full_calls: int

    @property
    def screened_out(self) -> int:
        return sum(1 for done in self.finished if not done)

    @property
    def saved(self) -> int:
        return self.full_calls - self.calls

    def stats(self) -> RaceStats:
        return RaceStats(self.screened_out, self.calls, self.saved)


def rung_sizes(n: int, first: int) -> list[int]:
    """Cumulative minibatch sizes: first, 2 x first, 4 x first, ..., ending at exactly `n`."""
    if n <= 0:
        return []
    sizes: list[int] = []
    size = max(1, first)
    while size < n:
        sizes.append(size)
        size *= 2
    sizes.append(n)
    return sizes


def halving_survivors(count: int, keep: int) -> int:
    """How many of `count` running candidates successive halving lets continue."""
    return min(count, max(keep, math.ceil(count / 2)))


def expected_race_calls(candidates: int, n: int, first: int, keep: int, rule: RaceRule) -> int:
    """The scorer calls of one race (at most `candidates` x `n`, when ties or a significance-only rule
    keep everyone running) when successive halving cuts exactly half at each rung (no ties,
    no significance stops): what a ``rule="halving"`` race is expected to cost, a little more with
    ties and less when paired tests stop candidates sooner."""
    if rule != "halving":
        return candidates * n
    total, running, previous = 0, candidates, 0
    for size in rung_sizes(n, first):
        total += running * (size - previous)
        previous = size
        running = halving_survivors(running, keep)
    return total


def stratified_order(strata: Mapping[str, str], seed: str) -> list[str]:
    """Example ids in a seeded order whose every prefix holds each stratum in proportion.

    Within a stratum ids are shuffled; an id at position i of a stratum of size k is placed at
    (i + 0.5) / k, so a first minibatch of 10 from a 60/40 split holds 6 and 4.
    """
    rng = random.Random(seed)
    groups: dict[str, list[str]] = {}
    for example_id in sorted(strata):
        groups.setdefault(strata[example_id], []).append(example_id)
    keyed: list[tuple[float, float, str]] = []
    for label in sorted(groups):
        ids = groups[label]
        rng.shuffle(ids)
        for i, example_id in enumerate(ids):
            keyed.append(((i + 0.5) / len(ids), rng.random(), example_id))
    return [example_id for _, _, example_id in sorted(keyed)]


def _worse(entrant: Entrant, reference: Mapping[str, float], alpha: float, higher_is_better: bool) -> bool:
    """Whether `reference` is significantly better than `entrant` on the examples both have."""
    common = [i for i in entrant.outcomes if i in reference]
    if not common:
        return False
    sign = score_sign(higher_is_better)
    mine = [sign * entrant.outcomes[i] for i in common]
    theirs = [sign * float(reference[i]) for i in common]
    return paired_test(mine, theirs, resamples=2000, seed=0).p_value < alpha


async def race(
    texts: Sequence[str],
    order: Sequence[str],
    score_examples: ScoreExamples,
    *,
    first: int,
    keep: int,
    rule: RaceRule = "halving",
    alpha: float = 0.2,
    incumbent: Mapping[str, float] | None = None,
    higher_is_better: bool = True,
    on_rung: Callable[[list[Score]], None] | None = None,
) -> RaceResult:
    """Race `texts` over the example ids in `order`; see the module docstring for the rules.

    `incumbent` maps example id to the best earlier candidate's outcome (it is not scored again).
    `on_rung` sees each rung's fresh scores (the loop checks the failure rate there).
    """
    if rule not in RULES:
        raise ValueError(f"unknown race rule {rule!r}; use one of {', '.join(RULES)}")
    entrants = [Entrant(text) for text in texts]
    order = list(order)
    previous = 0
    sizes = rung_sizes(len(order), first)
    rung = 0
    while rung < len(sizes):
        running = [e for e in entrants if e.running]
        if not running:
            break
        batch = order[previous : sizes[rung]]
        previous = sizes[rung]
        scores = await score_examples([e.text for e in running], batch)
        for entrant, score in zip(running, scores):
            entrant.outcomes.update(score.outcomes or {})
            entrant.failures += score.failures
            entrant.error = entrant.error or score.error
            entrant.calls += len(batch)
        if on_rung is not None:
            on_rung(scores)
        if rung == len(sizes) - 1:
            break
        _eliminate(running, keep, rule, alpha, incumbent, higher_is_better)
        # Halving with no more than `keep` left has no cut to make: the rest of the split goes in one
        # batch (one batch is much faster than several for a local model, which decodes a batch at once).
        done_cutting = rule == "halving" and sum(e.running for e in entrants) <= keep
        rung = len(sizes) - 1 if done_cutting else rung + 1
    calls = sum(e.calls for e in entrants)
    finished = [e.running and len(e.outcomes) + e.failures >= len(order) for e in entrants]
    return RaceResult(entrants, finished, calls, len(entrants) * len(order))


def _eliminate(
    running: list[Entrant],
    keep: int,
    rule: RaceRule,
    alpha: float,
    incumbent: Mapping[str, float] | None,
    higher_is_better: bool,
) -> None:
    """Stop the entrants that the rule says cannot be among the step's best."""
    sign = score_sign(higher_is_better)
    # Best first; ties keep the proposal order, so the result does not depend on dict order.
    ranked = sorted(running, key=lambda e: -sign * e.value)
    leader = ranked[0]
    for entrant in ranked:
        if entrant is not leader and _worse(entrant, leader.outcomes, alpha, higher_is_better):
            entrant.running = False
        elif incumbent and _worse(entrant, incumbent, alpha, higher_is_better):
            entrant.running = False
    if rule == "halving":
        still = [e for e in ranked if e.running]
        cut = halving_survivors(len(still), keep)
        if cut < len(still):
            # Entrants tied with the last one kept go on too: a tie on a few examples decides nothing,
            # and a candidate at least as good as every other on every example is never cut.
            bar = still[cut - 1].value
            for entrant in still[cut:]:
                if abs(entrant.value - bar) > 1e-12:
                    entrant.running = False


__all__ = [
    "RULES",
    "SCREENING",
    "Entrant",
    "RaceResult",
    "RaceRule",
    "RaceStats",
    "Screening",
    "expected_race_calls",
    "halving_survivors",
    "race",
    "rung_sizes",
    "stratified_order",
]
