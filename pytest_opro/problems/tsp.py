"""The travelling salesman problem as an OPRO problem (section 3 of the OPRO paper).

``n`` random points with integer coordinates in [-100, 100] (seeded, all distinct). The optimizer
proposes a trace ``<trace>0,3,1,2</trace>``; it counts only when it starts at node 0 and visits
every node exactly once. Its objective is the length of the closed tour (back to node 0).

Progress is measured as the optimality gap ``(length - reference) / reference`` against three
reference tours: nearest neighbour, farthest insertion, and the exact optimum (Held–Karp) for
n ≤ 12 — beyond that the best known tour, farthest insertion followed by 2-opt, labelled as such.
"""

from __future__ import annotations

import functools
import math
import random
import re
from dataclasses import dataclass, field
from itertools import permutations
from typing import TYPE_CHECKING, Any, Sequence

from pytest_opro.models.client import LLMClient, run_sync
from pytest_opro.models.config import DEFAULT_MODEL, ModelConfig, model_config
from pytest_opro.opro.loop import LoopResult
from pytest_opro.opro.problem import Parsed, Score
from pytest_opro.opro.settings import OptimizerSettings
from pytest_opro.problems.common import RunOptions, best_per_step, first_step_where, run_problem, usage_of
from pytest_opro.problems.tsp_solvers import (
    HELD_KARP_MAX_NODES,
    Point,
    distance_matrix,
    farthest_insertion,
    held_karp,
    nearest_neighbour,
    tour_length,
    two_opt,
)

if TYPE_CHECKING:
    from typing_extensions import Unpack

COORDINATE_RANGE = (-100, 100)
NEAREST_NEIGHBOUR = "nearest neighbour"
FARTHEST_INSERTION = "farthest insertion"
OPTIMUM = "optimum (Held-Karp)"
BEST_KNOWN = "farthest insertion + 2-opt"

_TRACE = re.compile(r"<trace>(.*?)</trace>", re.IGNORECASE | re.DOTALL)
_TRACE_BODY = re.compile(r"[\s\d,;\->→–]*")
_TOLERANCE = 1e-9


def _within_tolerance(value: float, reference: float) -> bool:
    """Whether a tour length reaches a reference length (up to float noise)."""
    return value <= reference * (1 + _TOLERANCE) + _TOLERANCE


def random_points(n: int, seed: int = 0, coordinate_range: tuple[int, int] = COORDINATE_RANGE) -> list[Point]:
    """`n` distinct points with integer coordinates in `coordinate_range`, the same for the same seed."""
    low, high = coordinate_range
    if n < 3:
        raise ValueError(f"a TSP instance needs at least 3 points, got n={n}")
    if n > (high - low + 1) ** 2:
        raise ValueError(f"cannot place {n} distinct points in {coordinate_range}")
    rng = random.Random(f"tsp:{seed}")
    points: list[Point] = []
    while len(points) < n:
        point = (rng.randint(low, high), rng.randint(low, high))
        if point not in points:
            points.append(point)
    return points


@dataclass(frozen=True)
class Reference:
    """A reference tour; `exact` when it is a proven optimum."""

    name: str
    tour: tuple[int, ...]
    length: float
    exact: bool = False


def reference_tours(points: Sequence[Point]) -> list[Reference]:
    """Nearest neighbour, farthest insertion, and the optimum (n ≤ 12) or farthest insertion + 2-opt."""
    dist = distance_matrix(points)
    nn = nearest_neighbour(dist)
    fi = farthest_insertion(dist)
    refs = [
        Reference(NEAREST_NEIGHBOUR, tuple(nn), tour_length(nn, dist)),
        Reference(FARTHEST_INSERTION, tuple(fi), tour_length(fi, dist)),
    ]
    if len(points) <= HELD_KARP_MAX_NODES:
        best = held_karp(dist)
        refs.append(Reference(OPTIMUM, tuple(best), tour_length(best, dist), exact=True))
    else:
        best = two_opt(fi, dist)
        refs.append(Reference(BEST_KNOWN, tuple(best), tour_length(best, dist)))
    return refs


def format_trace(tour: Sequence[int]) -> str:
    """The canonical text of a tour in the loop and the meta-prompt: ``"0,3,1,2"``."""
    return ",".join(str(node) for node in tour)


def tour_of(text: str) -> list[int]:
    """Read back a canonical trace text."""
    return [int(part) for part in text.split(",")]


def trace_rejection(nodes: Sequence[int], n: int) -> str | None:
    """Why `nodes` is not a valid trace over `n` nodes, or None when it is."""
    if not nodes or nodes[0] != 0:
        return "trace does not start at node 0"
    if any(node >= n for node in nodes):
        return "trace has an unknown node"
    if len(set(nodes)) != len(nodes):
        return "trace repeats a node"
    if len(nodes) != n:
        return "trace misses nodes"
    return None


def parse_trace(text: str, n: int) -> Parsed:
    """The last ``<trace>...</trace>`` holding node numbers, validated against `n` nodes.

    Nodes may be separated by commas, spaces, semicolons or arrows. Rejection reasons: no trace,
    malformed trace, not starting at node 0, unknown node, repeated node, missing nodes.
    """
    bodies = [body for body in _TRACE.findall(text or "") if re.search(r"\d", body)]
    if not bodies:
        return Parsed(None, rejection="no <trace>...</trace>")
    body = bodies[-1]
    if not _TRACE_BODY.fullmatch(body):
        return Parsed(None, rejection="malformed trace")
    nodes = [int(token) for token in re.findall(r"\d+", body)]
    why = trace_rejection(nodes, n)
    if why:
        return Parsed(None, rejection=why)
    return Parsed(format_trace(nodes))


class TspProblem:
    """Find a short closed tour through `points`, starting at node 0."""

    higher_is_better = False
    has_validation = False

    def __init__(
        self,
        points: Sequence[Point],
        optimizer: ModelConfig,
        *,
        starting_traces: int = 5,
        seed: int = 0,
        meta_prompt: str = "tsp",
    ) -> None:
        self.points: list[tuple[int, int]] = [(int(p[0]), int(p[1])) for p in points]
        self.n = len(self.points)
        self.dist = distance_matrix(self.points)
        self.references = reference_tours(self.points)
        self.optimizer = optimizer
        self.meta_prompt = meta_prompt
        self.starting_traces = starting_traces
        self.seed = seed

    @property
    def optimum(self) -> Reference | None:
        """The exact optimum when it is known (n ≤ 12)."""
        return next((r for r in self.references if r.exact), None)

    @property
    def best_reference(self) -> Reference:
        """The exact optimum, or else the best known tour."""
        return self.references[-1]

    def length(self, tour: Sequence[int]) -> float:
        return tour_length(tour, self.dist)

    def initial_solutions(self) -> list[str]:
        """`starting_traces` distinct random tours, none of them optimal when fewer could be found."""
        rng = random.Random(f"tsp:start:{self.seed}")
        target = self.best_reference.length
        rest = list(range(1, self.n))
        if math.factorial(self.n - 1) <= 5040:
            pool = [[0, *p] for p in permutations(rest)]
            worse = [t for t in pool if self.length(t) > target + _TOLERANCE]
            pool = worse or pool
            return [format_trace(t) for t in rng.sample(pool, min(self.starting_traces, len(pool)))]
        tours: list[str] = []
        while len(tours) < self.starting_traces:
            rng.shuffle(rest)
            text = format_trace([0, *rest])
            if text not in tours and self.length([0, *rest]) > target + _TOLERANCE:
                tours.append(text)
        return tours

    def meta_prompt_variables(self, step: int, rng: random.Random) -> dict[str, Any]:
        coordinates = ", ".join(f"({i}): ({x}, {y})" for i, (x, y) in enumerate(self.points))
        return {
            "coordinates": coordinates,
            "points": [{"index": i, "x": x, "y": y} for i, (x, y) in enumerate(self.points)],
            "n": self.n,
        }

    def format_score(self, value: float, settings: OptimizerSettings) -> int:
        return round(value)

    def parse(self, text: str) -> Parsed:
        return parse_trace(text, self.n)

    async def score(self, solutions: list[str], split: str) -> list[Score]:
        return [Score(value=self.length(tour_of(s)), n=1) for s in solutions]

    def is_optimal(self, value: float) -> bool:
        """True once a tour is as short as the exact optimum (only known for n ≤ 12)."""
        optimum = self.optimum
        return optimum is not None and value <= optimum.length * (1 + _TOLERANCE) + _TOLERANCE


def optimality_gap(length: float, reference: float) -> float:
    """``(length - reference) / reference``, as in the paper (0 = as good as the reference)."""
    return (length - reference) / reference if reference else 0.0


@dataclass
class TspReport:
    """What a run found.

    ``references`` maps each reference's name to its length; ``length_per_step[i]`` is the best
    length after step ``i`` (0: the starting traces) and ``gaps[name][i]`` its optimality gap.
    ``steps_to_reference[name]`` is the first step whose best tour was no longer than that
    reference; ``steps_to_optimum`` the same for the exact optimum (None when not reached or
    when n > 12, where no optimum is computed).
    """

    n: int
    seed: int
    points: list[Point]
    references: dict[str, float]
    reference_tours: dict[str, list[int]]
    optimum_known: bool
    best_tour: list[int]
    best_length: float
    length_per_step: list[float]
    gaps: dict[str, list[float]]
    steps_to_reference: dict[str, int | None]
    steps_to_optimum: int | None
    steps_run: int
    stop_reason: str
    rejections: dict[str, int]
    usage: dict[str, Any]
    loop: LoopResult | None = field(default=None, repr=False, compare=False)

    @property
    def solved(self) -> bool:
        return self.steps_to_optimum is not None

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready summary (without the full trajectory)."""
        data = {k: v for k, v in self.__dict__.items() if k != "loop"}
        data["points"] = [list(p) for p in self.points]
        data["trajectory"] = [
            {"step": c.step, "trace": c.text, "length": c.train, "rejection": c.rejection}
            for c in (self.loop.trajectory.candidates if self.loop else [])
        ]
        return data

    def summary(self) -> str:
        """A few lines for a terminal."""
        lines = [
            f"TSP n={self.n} seed={self.seed}: {self.steps_run} steps ({self.stop_reason})",
            f"  best tour length {self.best_length:.1f}: {format_trace(self.best_tour)}",
        ]
        for name, length in self.references.items():
            gaps = ", ".join(f"{g:.1%}" for g in self.gaps[name])
            reached = self.steps_to_reference[name]
            when = f"matched at step {reached}" if reached is not None else "not matched"
            lines.append(f"  vs {name} ({length:.1f}, {when}): gap per step {gaps}")
        if not self.optimum_known:
            lines.append(f"  (n > {HELD_KARP_MAX_NODES}: the exact optimum is not computed)")
        rejected = ", ".join(f"{k}: {v}" for k, v in sorted(self.rejections.items())) or "none"
        lines.append(f"  rejected proposals: {rejected}")
        return "\n".join(lines)


def report_from(problem: TspProblem, loop: LoopResult, client: LLMClient) -> TspReport:
    """Summarise a finished loop over `problem`."""
    scored = loop.trajectory.scored()
    best = min(scored, key=lambda c: (c.train, c.step))
    per_step = best_per_step(loop, higher_is_better=False)
    refs = {r.name: r.length for r in problem.references}
    reached = {
        name: first_step_where(loop, functools.partial(_within_tolerance, reference=length))
        for name, length in refs.items()
    }
    return TspReport(
        n=problem.n,
        seed=problem.seed,
        points=list(problem.points),
        references=refs,
        reference_tours={r.name: list(r.tour) for r in problem.references},
        optimum_known=problem.optimum is not None,
        best_tour=tour_of(best.text),
        best_length=float(best.train if best.train is not None else math.inf),
        length_per_step=per_step,
        gaps={name: [optimality_gap(v, length) for v in per_step] for name, length in refs.items()},
        steps_to_reference=reached,
        steps_to_optimum=first_step_where(loop, problem.is_optimal),
        steps_run=loop.steps_run,
        stop_reason=loop.stop_reason,
        rejections=loop.rejections,
        usage=usage_of(client),
        loop=loop,
    )


def optimizer_params(n: int) -> dict[str, Any]:
    """Optimizer defaults: the paper's temperature; room for a trace of `n` nodes and some prose."""
    return {"temperature": 1.0, "max_tokens": 100 + 6 * n}


async def run_tsp_async(
    *,
    optimizer: ModelConfig | str | None = DEFAULT_MODEL,
    n: int = 10,
    steps: int = 10,
    seed: int = 0,
    candidates: int = 8,
    top_k: int = 10,
    starting_traces: int = 5,
    reask: int = 3,
    settings: OptimizerSettings | None = None,
    **run: Unpack[RunOptions],
) -> TspReport:
    """Async form of :func:`run_tsp`."""
    config = model_config(optimizer, optimizer_params(n))
    problem = TspProblem(random_points(n, seed), config, starting_traces=starting_traces, seed=seed)
    settings = settings or OptimizerSettings(
        max_steps=steps,
        candidates=candidates,
        top_k=top_k,
        exemplars=0,
        patience=0,
        seed=seed,
        reask=reask,
        max_chars=max(500, 6 * n),
    )
    loop, client = await run_problem(problem, settings, **run)
    return report_from(problem, loop, client)


def run_tsp(**kwargs: Any) -> TspReport:
    """Let an LLM improve tours through `n` random points, as in section 3 of the OPRO paper.

    Keyword arguments: ``optimizer`` (model string or ModelConfig; default the embedded
    ``local/smollm2``), ``n`` (points; the paper used 10, 15, 20 and 50), ``steps`` (default 10),
    ``seed`` (points, starting traces and loop), ``candidates`` per step (8), ``top_k`` traces shown
    (10), ``starting_traces`` (5), ``reask`` (how many more times a step asks the optimizer when
    replies hold no valid trace; default 3), ``settings`` (an :class:`OptimizerSettings` replacing
    the previous five), ``cache`` / ``cache_mode``, ``budget``, ``client``, ``concurrency``,
    ``on_step`` and ``on_candidate`` callbacks. The run stops at ``steps`` or at the exact optimum.
    """
    return run_sync(run_tsp_async(**kwargs))


__all__ = [
    "BEST_KNOWN",
    "FARTHEST_INSERTION",
    "NEAREST_NEIGHBOUR",
    "OPTIMUM",
    "Reference",
    "TspProblem",
    "TspReport",
    "format_trace",
    "optimality_gap",
    "parse_trace",
    "random_points",
    "reference_tours",
    "run_tsp",
    "run_tsp_async",
    "tour_of",
]
