"""The optimizer's settings, with the OPRO paper's defaults."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, Literal, get_args

from pytest_opro.errors import ConfigError
from pytest_opro.opro.collapse import DEFAULT_THRESHOLD
from pytest_opro.opro.mix import MixSpec, parse_mix

# A fixed choice is a Literal type with the tuple of its values beside it (``get_args``): settings
# check values against the tuple, code that branches on them is checked by mypy against the type.

#: The screening modes: "race" races candidates on train, "off" scores each on all of train (the paper).
Screening = Literal["race", "off"]
SCREENING: tuple[Screening, ...] = get_args(Screening)
#: The elimination rules a race knows (see :mod:`pytest_opro.opro.racing`).
RaceRule = Literal["halving", "significance"]
RULES: tuple[RaceRule, ...] = get_args(RaceRule)
#: What a collapsed candidate gets (see ``OptimizerSettings.collapse``).
CollapseAction = Literal["reject", "flag"]
COLLAPSE_ACTIONS: tuple[CollapseAction, ...] = get_args(CollapseAction)

#: How the k samples of one example become its score: their mean (graded), 1 only when all k are
#: right (pass^k), or 1 when more than half are right. A sample is right when it scores 1.
Aggregate = Literal["mean", "all", "majority"]
AGGREGATES: tuple[str, ...] = get_args(Aggregate)


@dataclass
class OptimizerSettings:
    """Loop settings; the defaults follow the OPRO paper where it has one."""

    max_steps: int = 10
    candidates: int = 8
    top_k: int = 20
    exemplars: int = 3
    score_buckets: int = 100
    show_scores: bool = True
    max_chars: int = 500
    patience: int = 3
    #: Whether a step that validated nothing (racing: every finalist below the best earlier candidate
    #: on train) counts against `patience` (see bench/RESULTS.md, "Patience and splits").
    patience_counts_unvalidated: bool = True
    min_delta: float = 0.0
    validate_top: int = 2
    seed: int = 0
    max_failure_rate: float = 0.1
    reask: int = 0
    #: Significance level of the winner's paired test on validation, candidates tested in a fixed
    #: sequence ordered by train score (see pytest_opro.opro.selection; bench/RESULTS.md).
    select_alpha: float = 0.05
    #: Share of one answer from which a validated candidate is flagged as collapsed.
    collapse_share: float = DEFAULT_THRESHOLD
    #: What a collapsed candidate gets: "reject" (not shipped when the task's targets are less
    #: concentrated than its answers' threshold) or "flag" (shipped when it wins, and flagged).
    collapse: CollapseAction = "reject"
    #: How a step's candidates are shared among proposers (see :mod:`pytest_opro.opro.proposers`):
    #: None is OPRO's meta-prompt only, as in the paper.
    proposers: MixSpec = None
    # Racing on train (see pytest_opro.opro.racing and the README's "Racing" section).
    screening: Screening = "race"
    race_minibatch: int = 4
    race_rule: RaceRule = "halving"
    race_alpha: float = 0.2
    #: Show candidates a race stopped early in the meta-prompt, marked with the examples behind their
    #: score; off by default (bench/RESULTS.md, "Racing": the optimizer climbs better without them).
    race_show_partial: bool = False
    #: Scorer calls per example (sample indices 0..k-1, each its own cache entry), for scorers whose
    #: answers vary between calls (temperature > 0, reasoning models, a judge that votes).
    samples: int = 1
    #: How an example's k samples become its score (see :data:`Aggregate`).
    aggregate: Aggregate = "mean"

    def __post_init__(self) -> None:
        checks = {
            "max_steps": self.max_steps >= 0,
            "candidates": self.candidates >= 1,
            "top_k": self.top_k >= 1,
            "exemplars": self.exemplars >= 0,
            "score_buckets": self.score_buckets >= 0,
            "max_chars": self.max_chars >= 1,
            "patience": self.patience >= 0,
            "min_delta": self.min_delta >= 0,
            "validate_top": self.validate_top >= 1,
            "max_failure_rate": 0 <= self.max_failure_rate <= 1,
            "reask": self.reask >= 0,
            "select_alpha": 0 < self.select_alpha <= 1,
            "collapse_share": 0 < self.collapse_share <= 1,
            "collapse": self.collapse in COLLAPSE_ACTIONS,
            "screening": self.screening in SCREENING,
            "race_minibatch": self.race_minibatch >= 1,
            "race_rule": self.race_rule in RULES,
            "race_alpha": 0 <= self.race_alpha < 1,
            "samples": isinstance(self.samples, int) and self.samples >= 1,
            "aggregate": self.aggregate in AGGREGATES,
        }
        if self.proposers is not None:
            parse_mix(self.proposers)  # raises ConfigError on an unknown name or a bad share
        for name, ok in checks.items():
            if not ok:
                raise ConfigError(f"optimizer setting {name}={getattr(self, name)!r} is out of range")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)
