"""Racing vs full scoring on simulated worlds: scorer calls and the shipped instruction's true accuracy.

No model: each world has examples with a difficulty and instructions with a skill; instruction s
answers example i right with probability sigmoid(SLOPE * (s - d_i)), drawn once per (world,
instruction, example) from a hash, so outcomes are paired and difficulty-correlated across
instructions. The instruction's true accuracy is that probability averaged over the difficulty
distribution. The scripted optimizer reads the meta-prompt the real loop builds and proposes skills
around the best skill it is shown (a noisy hill climb), so what racing shows the optimizer matters.

The real loop (`pytest_opro.opro.run_loop`) runs every world twice, with screening "off" (the paper)
and "race", and once per racing variant asked for. It also prints the scorer calls a DSPy COPRO run
with its defaults would make on the same task size, from COPRO's documented algorithm. With
``--settings`` it runs setting variants on the default race instead (patience, whether a step that
validated nothing counts, ...), for each train / validation split of ``--splits``.

    python bench/bench_racing.py --seeds 300
    python bench/bench_racing.py --seeds 200 --splits 30/20,15/35 --settings "patience=3;patience=5"
"""

from __future__ import annotations

import argparse
import asyncio
import math
import re
import statistics
import sys
import time
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from pytest_opro.opro import OptimizerSettings, Parsed, Score, run_loop  # noqa: E402
from pytest_opro.opro.meta_prompt import bucketize  # noqa: E402

SLOPE = 1.7
#: Quadrature nodes for a standard normal difficulty: the true accuracy of a skill.
_GRID = [(-4 + 8 * (k + 0.5) / 400) for k in range(400)]
_WEIGHTS = [math.exp(-x * x / 2) for x in _GRID]


def sigmoid(x: float) -> float:
    return 1.0 / (1.0 + math.exp(-x))


def true_accuracy(skill: float) -> float:
    return sum(w * sigmoid(SLOPE * (skill - x)) for x, w in zip(_GRID, _WEIGHTS)) / sum(_WEIGHTS)


def _unit(*parts: object) -> float:
    return zlib.crc32(":".join(map(str, parts)).encode()) / 2**32


def _normal(*parts: object) -> float:
    u1, u2 = max(_unit(*parts, "a"), 1e-12), _unit(*parts, "b")
    return math.sqrt(-2 * math.log(u1)) * math.cos(2 * math.pi * u2)


@dataclass
class World:
    """One simulated task: examples with difficulties, split train / validation."""

    seed: int
    n_train: int
    n_val: int
    difficulty: dict[str, float] = field(default_factory=dict)
    train: list[str] = field(default_factory=list)
    validation: list[str] = field(default_factory=list)
    evaluations: int = 0

    def __post_init__(self) -> None:
        for split, n in (("train", self.n_train), ("validation", self.n_val)):
            ids = [f"{split[0]}{i}" for i in range(n)]
            getattr(self, split).extend(ids)
            for i in ids:
                self.difficulty[i] = _normal(self.seed, "d", i)

    def outcome(self, text: str, example_id: str) -> float:
        skill = skill_of(text)
        p = sigmoid(SLOPE * (skill - self.difficulty[example_id]))
        return 1.0 if _unit(self.seed, text, example_id) < p else 0.0


def skill_of(text: str) -> float:
    return float(text.split()[1])


class SimProblem:
    """The world as a Problem with example scoring (so it can be raced)."""

    higher_is_better = True
    has_validation = True
    meta_prompt = "instruction"
    optimizer = "sim"

    def __init__(self, world: World, baseline_skill: float) -> None:
        self.world = world
        self.baseline_skill = baseline_skill

    def meta_prompt_variables(self, step: int, rng: Any) -> dict[str, Any]:
        return {"description": "", "exemplars": [], "position": "Q_begin"}

    def format_score(self, value: float, settings: OptimizerSettings) -> int:
        return bucketize(value, settings.score_buckets)

    def parse(self, text: str) -> Parsed:
        return Parsed(text.strip())

    def initial_solutions(self) -> list[str]:
        return [f"skill {self.baseline_skill:.4f} base"]

    def example_strata(self, split: str) -> dict[str, str]:
        return {i: "all" for i in getattr(self.world, split)}

    async def score_examples(self, solutions: list[str], split: str, ids: Sequence[str]) -> list[Score]:
        out = []
        for text in solutions:
            outcomes = {i: self.world.outcome(text, i) for i in ids}
            self.world.evaluations += len(ids)
            out.append(Score(sum(outcomes.values()) / len(outcomes), n=len(outcomes), outcomes=outcomes))
        return out

    async def score(self, solutions: list[str], split: str) -> list[Score]:
        return await self.score_examples(solutions, split, getattr(self.world, split))


_SHOWN = re.compile(r"text:\n(skill [-0-9.]+ \S+)\nscore:\n(\d+)")


@dataclass
class _Reply:
    text: str


@dataclass
class _Usage:
    calls: int = 0
    cache_hits: int = 0
    cost_usd: float = 0.0


class SimOptimizer:
    """A scripted optimizer: proposes skills around the best one its meta-prompt shows."""

    def __init__(self, seed: int, spread: float, drift: float) -> None:
        self.seed, self.spread, self.drift = seed, spread, drift
        self.usage = _Usage()

    async def complete_many(
        self, model: Any, requests: Sequence[tuple[list[dict[str, Any]], int]], *, role: str | None = None
    ) -> list[Any]:
        replies = []
        for messages, index in requests:
            shown = _SHOWN.findall(messages[-1]["content"])
            best = max(shown, key=lambda m: (int(m[1]), m[0]))[0] if shown else "skill 0 x"
            skill = skill_of(best) + self.drift + self.spread * _normal(self.seed, "p", index)
            replies.append(_Reply(f"skill {skill:.4f} c{index}"))
            self.usage.calls += 1
        return replies

    def usage_totals(self) -> _Usage:
        return self.usage

    def usage_state(self) -> dict[str, Any]:
        return {}

    def restore_usage(self, state: Any) -> None:
        return None


@dataclass
class RunOutcome:
    calls: int
    shipped: float
    baseline: float
    best_proposed: float
    candidates: int  # accepted candidates (baseline included)


def run_world(seed: int, settings: OptimizerSettings, n_train: int, n_val: int) -> RunOutcome:
    world = World(seed, n_train, n_val)
    baseline_skill = round(-0.3 + 0.6 * _normal(seed, "base"), 4)  # as the instruction text states it
    problem = SimProblem(world, baseline_skill)
    optimizer = SimOptimizer(seed, spread=0.5, drift=-0.15)
    loop = asyncio.run(run_loop(problem, optimizer, settings))  # type: ignore[arg-type]
    proposed = [skill_of(c.text) for c in loop.trajectory.candidates if c.rejection is None]
    return RunOutcome(
        world.evaluations,
        true_accuracy(skill_of(loop.best.text)),
        true_accuracy(baseline_skill),
        true_accuracy(max(proposed)),
        len(proposed),
    )


def copro_calls(n_train: int, breadth: int = 10, depth: int = 3) -> int:
    """Scorer calls of DSPy COPRO with its defaults on one predictor.

    COPRO (dspy.teleprompt.COPRO, ``breadth=10, depth=3``) first evaluates ``breadth`` candidates
    (breadth - 1 generated plus the initial instruction) on the whole trainset, then at each of the
    ``depth - 1`` further rounds evaluates ``breadth`` new candidates on the whole trainset again;
    it has no validation split and no early stopping. Cached repeats are not subtracted.
    """
    return breadth * depth * n_train


def summarise(name: str, outcomes: list[RunOutcome], reference: list[RunOutcome] | None) -> str:
    calls = [o.calls for o in outcomes]
    shipped = [o.shipped for o in outcomes]
    false_ship = sum(1 for o in outcomes if o.shipped < o.baseline - 1e-12) / len(outcomes)
    regret = statistics.mean(o.best_proposed - o.shipped for o in outcomes)
    ratio = (
        "1.00x" if reference is None else f"{statistics.mean(calls) / statistics.mean(r.calls for r in reference):.2f}x"
    )
    delta = ""
    if reference is not None:
        diffs = [o.shipped - r.shipped for o, r in zip(outcomes, reference)]
        se = statistics.stdev(diffs) / math.sqrt(len(diffs)) if len(diffs) > 1 else 0.0
        delta = f"{100 * statistics.mean(diffs):+.2f} ± {100 * se:.2f}"
    return (
        f"| {name} | {statistics.mean(calls):.0f} | {statistics.median(calls):.0f} | {ratio} | "
        f"{100 * statistics.mean(shipped):.2f}% | {delta or '-'} | {100 * false_ship:.1f}% | {100 * regret:.2f} | "
        f"{statistics.mean(o.calls / o.candidates for o in outcomes):.1f} |"
    )


def _value(text: str) -> Any:
    """A setting's value from the command line: bool, int, float or text."""
    if text.lower() in ("true", "false"):
        return text.lower() == "true"
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            pass
    return text


def settings_table(args: argparse.Namespace, base: dict[str, Any]) -> int:
    """Setting variants on the default race, for each train/validation split asked for."""
    started = time.monotonic()
    splits = [tuple(int(x) for x in s.split("/")) for s in args.splits.split(",") if s] or [
        (args.train, args.validation)
    ]
    variants = [v.strip() for v in args.settings.split(";") if v.strip()]
    print(f"worlds: {args.seeds} seeds, {args.steps} steps x {args.candidates} candidates, race defaults otherwise")
    print(
        "| train / validation | settings | mean scorer calls | median | calls vs first row | mean shipped true acc "
        "| vs first row (points ± SE) | false-ship rate | mean regret vs best proposed (points) | scorer calls per candidate |"
    )
    print("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    reference: list[RunOutcome] | None = None
    for n_train, n_val in splits:
        for variant in variants:
            overrides = {k.strip(): _value(v.strip()) for k, v in (kv.split("=") for kv in variant.split(",")) if k}
            settings = OptimizerSettings(**{**base, **overrides})
            outcomes = [run_world(s, settings, n_train, n_val) for s in range(args.seeds)]
            row = summarise(variant, outcomes, reference)
            print(f"| {n_train} / {n_val} " + row, flush=True)
            reference = reference or outcomes
    print(f"elapsed {time.monotonic() - started:.1f}s")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=300)
    parser.add_argument("--train", type=int, default=30)
    parser.add_argument("--validation", type=int, default=20)
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--candidates", type=int, default=8)
    parser.add_argument(
        "--variants",
        default="race:4:halving:0.2,race:4:halving:0.2:partial,race:5:halving:0.05,"
        "race:10:halving:0.2,race:4:significance:0.2",
        help="comma-separated race variants race:minibatch:rule[:alpha][:partial] (partial: "
        "race_show_partial, the meta-prompt also shows candidates stopped early)",
    )
    parser.add_argument(
        "--settings",
        default="",
        help="semicolon-separated setting variants run with the default race, each key=value[,key=value], "
        "e.g. 'patience=5;patience=3,patience_counts_unvalidated=false' (replaces --variants)",
    )
    parser.add_argument(
        "--splits",
        default="",
        help="comma-separated train/validation sizes to run --settings on, e.g. '30/20,20/30' "
        "(default: --train/--validation)",
    )
    args = parser.parse_args(argv)
    base = dict(max_steps=args.steps, candidates=args.candidates, seed=0)
    if args.settings:
        return settings_table(args, base)
    started = time.monotonic()
    print(
        f"worlds: {args.seeds} seeds, train {args.train}, validation {args.validation}, "
        f"{args.steps} steps x {args.candidates} candidates, defaults otherwise"
    )
    print(
        "| scoring | mean scorer calls | median | calls vs off | mean shipped true acc | vs off (points ± SE) | "
        "false-ship rate | mean regret vs best proposed (points) | scorer calls per candidate |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    off = [
        run_world(s, OptimizerSettings(**base, screening="off"), args.train, args.validation) for s in range(args.seeds)
    ]
    print(summarise("off (paper)", off, None), flush=True)
    for variant in filter(None, args.variants.split(",")):
        _, minibatch, rule, *rest = variant.split(":")
        partial = "partial" in rest
        alpha = [a for a in rest if a != "partial"]
        race_alpha = float(alpha[0]) if alpha else OptimizerSettings().race_alpha
        settings = OptimizerSettings(
            **base,
            screening="race",
            race_minibatch=int(minibatch),
            race_rule=rule,
            race_alpha=race_alpha,
            race_show_partial=partial,
        )
        outcomes = [run_world(s, settings, args.train, args.validation) for s in range(args.seeds)]
        name = f"race, minibatch {minibatch}, {rule}, alpha {race_alpha:g}" + (
            ", partial scores shown" if partial else ""
        )
        print(summarise(name, outcomes, off), flush=True)
    off_train = args.steps * args.candidates * args.train
    copro = copro_calls(args.train)
    print(
        f"\nDSPy COPRO defaults (breadth 10, depth 3) on a trainset of {args.train}: {copro} scorer calls for "
        f"30 candidates, {copro / 30:.0f} per candidate, no held-out selection (pytest-opro full scoring, "
        f"train part only, all {args.steps} steps: {off_train})"
    )
    print(f"elapsed {time.monotonic() - started:.1f}s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
