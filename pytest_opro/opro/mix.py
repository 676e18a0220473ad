"""The proposer mix: how a step's candidates are shared among proposers, and which slot gets which.

Kept apart from :mod:`pytest_opro.opro.proposers` so that settings can check a mix early.
"""

from __future__ import annotations

import random
import re
from typing import Any, Literal, Mapping, Sequence, Union, get_args

from pytest_opro.errors import ConfigError

#: Every proposer name the loop knows.
ProposerName = Literal["opro", "edit", "format", "classic"]
KNOWN: tuple[ProposerName, ...] = get_args(ProposerName)
#: OPRO's meta-prompt: the proposer of the paper, always part of a mix.
DEFAULT_PROPOSER: ProposerName = "opro"
#: What the starting points (step 0) record as their proposer.
INITIAL = "initial"
#: Proposers that call the optimizer model; every other name is answered by the problem.
MODEL_PROPOSERS: tuple[ProposerName, ...] = ("opro", "edit")
#: A proposer mix as a user writes it: None, "opro:2,edit:1", ["opro", "edit"], {"opro": 0.5, "edit": 0.5}.
MixSpec = Union[None, str, Sequence[Any], Mapping[str, Any]]


def proposer_of(proposer: str | None, step: int) -> str:
    """The proposer a recorded candidate names; older records leave it empty (step 0: initial, else OPRO)."""
    return proposer or (INITIAL if step == 0 else DEFAULT_PROPOSER)


def parse_mix(spec: MixSpec) -> dict[str, float]:
    """The proposer shares of `spec`, summing to 1, in the order given.

    Accepts None (OPRO only), a name list (equal shares), a mapping of name to weight, or the
    string form ``"opro:2, edit:1, format:1"`` used by the ``--opro-proposers`` option.
    """
    if spec is None:
        return {DEFAULT_PROPOSER: 1.0}
    weights: dict[str, float] = {}
    items: list[tuple[str, Any]]
    if isinstance(spec, str):
        items = []
        for part in re.split(r"[,\s]+", spec.strip()):
            if part:
                name, _, weight = part.partition(":")
                items.append((name, weight or 1))
    elif isinstance(spec, Mapping):
        items = list(spec.items())
    elif isinstance(spec, Sequence):
        items = [(str(s), 1) if isinstance(s, str) else (str(s[0]), s[1]) for s in spec]
    else:
        raise ConfigError(f"proposers must be names or name: share pairs, got {spec!r}")
    for name, weight in items:
        name = str(name).strip().lower()
        if name not in KNOWN:
            raise ConfigError(f"unknown proposer {name!r}; known: {', '.join(KNOWN)}")
        try:
            value = float(weight)
        except (TypeError, ValueError):
            raise ConfigError(f"proposer {name!r}: share {weight!r} is not a number") from None
        if not value > 0:
            raise ConfigError(f"proposer {name!r}: share must be > 0, got {weight!r}")
        weights[name] = weights.get(name, 0.0) + value
    if DEFAULT_PROPOSER not in weights:
        raise ConfigError("proposers must include 'opro' (OPRO's meta-prompt is always one of them)")
    total = sum(weights.values())
    return {name: w / total for name, w in weights.items()}


def allocate(mix: Mapping[str, float], n: int, rng: random.Random) -> list[str]:
    """Which proposer fills each of `n` slots: largest-remainder quotas, grouped in mix order.

    A share too small for one slot at this `n` still gets one on some steps: the remainder
    order is drawn from `rng` (seeded by step), so over steps every proposer takes its share.
    """
    names = list(mix)
    if len(names) == 1:
        return [names[0]] * n
    quotas = {name: int(n * share) for name, share in mix.items()}
    left = n - sum(quotas.values())
    ties = {name: rng.random() for name in names}
    order = sorted(names, key=lambda name: (-(n * mix[name] - quotas[name]), ties[name]))
    for name in order[:left]:
        quotas[name] += 1
    return [name for name in names for _ in range(quotas[name])]
