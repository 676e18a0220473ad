"""The optimizer's settings, with the OPRO paper's defaults."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, Literal

from pytest_opro.errors import ConfigError
from pytest_opro.opro.collapse import DEFAULT_THRESHOLD


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
    collapse: Literal["reject", "flag"] = "reject"
    #: How a step's candidates are shared among proposers (see :mod:`pytest_opro.opro.proposers`):
    #: None is OPRO's meta-prompt only, as in the paper.
    proposers: Any = None
    # Racing on train (see pytest_opro.opro.racing and the README's "Racing" section).
    screening: str = "race"
    race_minibatch: int = 4
    race_rule: str = "halving"
    race_alpha: float = 0.2
    #: Show candidates a race stopped early in the meta-prompt, marked with the examples behind their
    #: score; off by default (bench/RESULTS.md, "Racing": the optimizer climbs better without them).
    race_show_partial: bool = False

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
            "collapse": self.collapse in ("reject", "flag"),
            "screening": self.screening in ("race", "off"),
            "race_minibatch": self.race_minibatch >= 1,
            "race_rule": self.race_rule in ("halving", "significance"),
            "race_alpha": 0 <= self.race_alpha < 1,
        }
        if self.proposers is not None:
            from pytest_opro.opro.mix import parse_mix

            parse_mix(self.proposers)  # raises ConfigError on an unknown name or a bad share
        for name, ok in checks.items():
            if not ok:
                raise ConfigError(f"optimizer setting {name}={getattr(self, name)!r} is out of range")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)
