"""Linear regression as an OPRO problem: the optimizer proposes integer pairs (w, b) that minimise
the sum of squared residuals on 50 noisy points (section 3 of the OPRO paper).

The data are ``x = 1..n`` and ``y = w_true·x + b_true + noise`` with Gaussian noise (sd 1 by default)
from a seeded generator, so a run is reproducible. A solution appears in the loop as the text
``"w=15, b=14"``, which is also how the meta-prompt shows it (as in the paper); the optimizer must end
its reply with ``[w, b]``.
"""

from __future__ import annotations

import math
import random
import re
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from pytest_opro.models.client import LLMClient, run_sync
from pytest_opro.models.config import DEFAULT_MODEL, ModelConfig, model_config
from pytest_opro.opro.loop import LoopResult
from pytest_opro.opro.problem import Parsed, Score
from pytest_opro.opro.settings import OptimizerSettings
from pytest_opro.problems.common import RunOptions, best_per_step, first_step_where, run_problem, usage_of

if TYPE_CHECKING:
    from typing_extensions import Unpack

#: Optimizer defaults for this problem: the paper's temperature, short replies.
OPTIMIZER_PARAMS: dict[str, Any] = {"temperature": 1.0, "max_tokens": 60}

_NUMBER = r"[-+]?\d+(?:\.\d*)?"
_PAIR = re.compile(
    rf"\[\s*(?:w\s*=\s*)?({_NUMBER})\s*,\s*(?:b\s*=\s*)?({_NUMBER})\s*\]",
    re.IGNORECASE,
)
_CANONICAL = re.compile(r"^w=(-?\d+), b=(-?\d+)$")


@dataclass(frozen=True)
class RegressionData:
    """Points ``(x, y)`` with ``x = 1..n`` and ``y = w_true·x + b_true + N(0, noise²)``."""

    xs: tuple[float, ...]
    ys: tuple[float, ...]
    w_true: float
    b_true: float
    noise: float
    seed: int

    @classmethod
    def generate(
        cls, w_true: float = 15, b_true: float = 14, *, noise: float = 1.0, seed: int = 0, n_points: int = 50
    ) -> "RegressionData":
        """Draw the data set; the same arguments always give the same points."""
        if n_points < 2:
            raise ValueError(f"linear regression needs at least 2 points, got n_points={n_points}")
        if noise < 0:
            raise ValueError(f"noise is a standard deviation and must be >= 0, got {noise}")
        rng = random.Random(f"linear_regression:{seed}")
        xs = tuple(float(x) for x in range(1, n_points + 1))
        ys = tuple(w_true * x + b_true + rng.gauss(0.0, noise) for x in xs)
        return cls(xs, ys, float(w_true), float(b_true), float(noise), int(seed))

    def loss(self, w: float, b: float) -> float:
        """Sum of squared residuals of the line ``y = w·x + b`` (the objective; lower is better)."""
        return math.fsum((y - (w * x + b)) ** 2 for x, y in zip(self.xs, self.ys))

    def least_squares(self) -> tuple[float, float]:
        """The exact (real-valued) least-squares line ``(w, b)``."""
        n = len(self.xs)
        mx, my = math.fsum(self.xs) / n, math.fsum(self.ys) / n
        sxx = math.fsum((x - mx) ** 2 for x in self.xs)
        sxy = math.fsum((x - mx) * (y - my) for x, y in zip(self.xs, self.ys))
        w = sxy / sxx
        return w, my - w * mx

    def optimum(self) -> tuple[int, int]:
        """The target pair: the least-squares solution rounded to integers."""
        w, b = self.least_squares()
        return round(w), round(b)

    def integer_minimum(self) -> tuple[int, int]:
        """The integer pair with the smallest loss (normally equal to :meth:`optimum`)."""
        w_ls, _ = self.least_squares()
        n = len(self.xs)
        best: tuple[float, int, int] | None = None
        for w in range(math.floor(w_ls) - 2, math.ceil(w_ls) + 3):
            # for a fixed w the loss is a parabola in b with its minimum at mean(y - w·x)
            b = round(math.fsum(y - w * x for x, y in zip(self.xs, self.ys)) / n)
            for cand in (b - 1, b, b + 1):
                value = self.loss(w, cand)
                if best is None or value < best[0]:
                    best = (value, w, cand)
        assert best is not None
        return best[1], best[2]


def format_pair(w: int, b: int) -> str:
    """The canonical text of a pair in the loop and the meta-prompt: ``"w=15, b=14"``."""
    return f"w={w}, b={b}"


def pair_of(text: str) -> tuple[int, int]:
    """Read back a canonical pair text."""
    match = _CANONICAL.match(text.strip())
    if not match:
        raise ValueError(f"not a canonical pair: {text!r}")
    return int(match.group(1)), int(match.group(2))


def parse_pair(text: str) -> Parsed:
    """The last bracketed numeric pair in `text` (``[15, 14]`` or ``[w=15, b=14]``).

    The placeholder ``[w, b]`` and other non-numeric brackets are skipped. Non-integer values are
    rejected (the solution space is integer pairs); ``15.0`` counts as 15.
    """
    matches = _PAIR.findall(text or "")
    if not matches:
        return Parsed(None, rejection="no [w, b] pair")
    w_text, b_text = matches[-1]
    w, b = float(w_text), float(b_text)
    if not (w.is_integer() and b.is_integer()):
        return Parsed(None, rejection="non-integer pair")
    return Parsed(format_pair(int(w), int(b)))


class LinearRegressionProblem:
    """Minimise the sum of squared residuals over integer pairs (w, b)."""

    higher_is_better = False
    has_validation = False

    def __init__(
        self,
        data: RegressionData,
        optimizer: ModelConfig,
        *,
        starting_pairs: int = 5,
        start_range: tuple[int, int] = (10, 20),
        seed: int = 0,
        meta_prompt: str = "linear_regression",
    ) -> None:
        self.data = data
        self.optimizer = optimizer
        self.meta_prompt = meta_prompt
        self.starting_pairs = starting_pairs
        self.start_range = start_range
        self.seed = seed
        self.target = data.optimum()
        self.target_loss = data.loss(*self.target)

    def initial_solutions(self) -> list[str]:
        """`starting_pairs` distinct random pairs in `start_range` (never the optimum itself)."""
        low, high = self.start_range
        room = (high - low + 1) ** 2 - 1
        if self.starting_pairs > room:
            raise ValueError(f"start_range {self.start_range} holds fewer than {self.starting_pairs} pairs")
        rng = random.Random(f"linear_regression:start:{self.seed}")
        pairs: list[tuple[int, int]] = []
        while len(pairs) < self.starting_pairs:
            pair = (rng.randint(low, high), rng.randint(low, high))
            if pair != self.target and pair not in pairs:
                pairs.append(pair)
        return [format_pair(*p) for p in pairs]

    def meta_prompt_variables(self, step: int, rng: random.Random) -> dict[str, Any]:
        return {"n_points": len(self.data.xs)}

    def format_score(self, value: float, settings: OptimizerSettings) -> int:
        return round(value)

    def parse(self, text: str) -> Parsed:
        return parse_pair(text)

    async def score(self, solutions: list[str], split: str) -> list[Score]:
        return [Score(value=self.data.loss(*pair_of(s)), n=1) for s in solutions]

    def is_optimal(self, value: float) -> bool:
        """True once a pair is at least as good as the rounded least-squares solution."""
        return value <= self.target_loss * (1 + 1e-12) + 1e-9


@dataclass
class LinearRegressionReport:
    """What a run found.

    ``steps_to_optimum``: the step at which a pair at least as good as the rounded least-squares
    solution was first proposed (None: never). ``distinct_pairs``: pairs evaluated, the starting
    pairs included. ``best_per_step[i]``: the best loss after step ``i`` (0: the starting pairs).
    """

    w_true: float
    b_true: float
    noise: float
    seed: int
    optimum: tuple[int, int]
    optimum_loss: float
    best_pair: tuple[int, int]
    best_loss: float
    steps_run: int
    stop_reason: str
    steps_to_optimum: int | None
    distinct_pairs: int
    best_per_step: list[float]
    rejections: dict[str, int]
    usage: dict[str, Any]
    loop: LoopResult | None = field(default=None, repr=False, compare=False)

    @property
    def solved(self) -> bool:
        return self.steps_to_optimum is not None

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready summary (without the full trajectory)."""
        data = {k: v for k, v in self.__dict__.items() if k != "loop"}
        data["optimum"], data["best_pair"] = list(self.optimum), list(self.best_pair)
        data["trajectory"] = [
            {"step": c.step, "pair": c.text, "loss": c.train, "rejection": c.rejection}
            for c in (self.loop.trajectory.candidates if self.loop else [])
        ]
        return data

    def summary(self) -> str:
        """A few lines for a terminal."""
        reached = (
            f"optimum {list(self.optimum)} reached at step {self.steps_to_optimum}"
            if self.solved
            else f"optimum {list(self.optimum)} (loss {self.optimum_loss:.1f}) not reached"
        )
        per_step = ", ".join(f"{v:.0f}" for v in self.best_per_step)
        rejected = ", ".join(f"{k}: {v}" for k, v in sorted(self.rejections.items())) or "none"
        return "\n".join(
            [
                f"linear regression w_true={self.w_true:g} b_true={self.b_true:g} noise={self.noise:g} seed={self.seed}",
                f"  {reached}; {self.steps_run} steps ({self.stop_reason})",
                f"  best pair {list(self.best_pair)} loss {self.best_loss:.1f}; {self.distinct_pairs} distinct pairs evaluated",
                f"  best loss per step: {per_step}",
                f"  rejected proposals: {rejected}",
            ]
        )


def report_from(problem: LinearRegressionProblem, loop: LoopResult, client: LLMClient) -> LinearRegressionReport:
    """Summarise a finished loop over `problem`."""
    data = problem.data
    scored = loop.trajectory.scored()
    best = min(scored, key=lambda c: (c.train, c.step))
    return LinearRegressionReport(
        w_true=data.w_true,
        b_true=data.b_true,
        noise=data.noise,
        seed=data.seed,
        optimum=problem.target,
        optimum_loss=problem.target_loss,
        best_pair=pair_of(best.text),
        best_loss=float(best.train if best.train is not None else math.inf),
        steps_run=loop.steps_run,
        stop_reason=loop.stop_reason,
        steps_to_optimum=first_step_where(loop, problem.is_optimal),
        distinct_pairs=len({c.text for c in scored}),
        best_per_step=best_per_step(loop, higher_is_better=False),
        rejections=loop.rejections,
        usage=usage_of(client),
        loop=loop,
    )


async def run_linear_regression_async(
    *,
    optimizer: ModelConfig | str | None = DEFAULT_MODEL,
    steps: int = 10,
    seed: int = 0,
    w_true: float = 15,
    b_true: float = 14,
    noise: float = 1.0,
    n_points: int = 50,
    candidates: int = 8,
    top_k: int = 20,
    starting_pairs: int = 5,
    settings: OptimizerSettings | None = None,
    **run: Unpack[RunOptions],
) -> LinearRegressionReport:
    """Async form of :func:`run_linear_regression`."""
    data = RegressionData.generate(w_true, b_true, noise=noise, seed=seed, n_points=n_points)
    config = model_config(optimizer, OPTIMIZER_PARAMS)
    problem = LinearRegressionProblem(data, config, starting_pairs=starting_pairs, seed=seed)
    settings = settings or OptimizerSettings(
        max_steps=steps, candidates=candidates, top_k=top_k, exemplars=0, patience=0, seed=seed
    )
    loop, client = await run_problem(problem, settings, **run)
    return report_from(problem, loop, client)


def run_linear_regression(**kwargs: Any) -> LinearRegressionReport:
    """Let an LLM fit a line by proposing integer pairs (w, b), as in section 3 of the OPRO paper.

    Keyword arguments: ``optimizer`` (model string or ModelConfig; default the embedded
    ``local/smollm2``), ``steps`` (default 10), ``seed`` (data, starting pairs and loop), ``w_true``,
    ``b_true`` (the paper used (15, 14) and (36, -1)), ``noise`` (sd, default 1), ``n_points`` (50),
    ``candidates`` per step (8), ``top_k`` pairs shown (20), ``starting_pairs`` (5), ``settings``
    (an :class:`OptimizerSettings` replacing the previous four), ``cache`` / ``cache_mode``,
    ``budget``, ``client``, ``concurrency``, ``on_step`` and ``on_candidate`` callbacks.
    The run stops at ``steps`` or as soon as the rounded least-squares pair is proposed.
    """
    return run_sync(run_linear_regression_async(**kwargs))


__all__ = [
    "LinearRegressionProblem",
    "LinearRegressionReport",
    "RegressionData",
    "format_pair",
    "pair_of",
    "parse_pair",
    "run_linear_regression",
    "run_linear_regression_async",
]
