"""What calls cost: one :class:`Completion`, per-model :class:`ModelUsage` and the run's :class:`Ledger`.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields
from typing import Any, Iterable, Mapping


@dataclass
class Completion:
    text: str
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cost_usd: float | None = 0.0
    cached: bool = False
    retries: int = 0


@dataclass
class ModelUsage:
    calls: int = 0               # logical provider calls started (cache hits excluded)
    cache_hits: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cost_usd: float = 0.0
    cost_unknown_calls: int = 0
    retries: int = 0
    failures: int = 0
    seconds: float = 0.0

    def add(self, other: "ModelUsage") -> None:
        for f in fields(self):
            setattr(self, f.name, getattr(self, f.name) + getattr(other, f.name))


@dataclass
class Ledger:
    by_model: dict[str, ModelUsage] = field(default_factory=dict)

    def usage(self, model: str) -> ModelUsage:
        if model not in self.by_model:
            self.by_model[model] = ModelUsage()
        return self.by_model[model]

    def total(self) -> ModelUsage:
        total = ModelUsage()
        for usage in self.by_model.values():
            total.add(usage)
        return total

    def merge(self, other: "Ledger") -> None:
        for model, usage in other.by_model.items():
            self.usage(model).add(usage)

    def to_dict(self) -> dict[str, Any]:
        return {model: asdict(usage) for model, usage in sorted(self.by_model.items())}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "Ledger":
        known = {f.name for f in fields(ModelUsage)}
        return cls({model: ModelUsage(**{k: v for k, v in dict(u).items() if k in known})
                    for model, u in dict(data or {}).items()})


def usage_totals(usage: Mapping[str, Mapping[str, Any]], keys: Iterable[str]) -> dict[str, Any]:
    """Totals over models of a ``Ledger.to_dict()`` mapping, for the fields in `keys`."""
    total = asdict(Ledger.from_dict(usage).total())
    return {key: total[key] for key in keys}

