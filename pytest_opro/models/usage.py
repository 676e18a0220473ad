"""What calls cost: one :class:`Completion`, per-model :class:`ModelUsage` and the run's :class:`Ledger`."""

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
    cache_scope: str | None = None  # the trust scope a cached answer was read from (scoped Redis cache)


@dataclass
class ModelUsage:
    calls: int = 0  # logical provider calls started (cache hits excluded)
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


#: The roles a call can be made in; the ledger also counts usage per role.
ROLES = ("scorer", "optimizer", "judge")


@dataclass
class Ledger:
    """Usage per model string, and the same usage per role (scorer / optimizer / judge).

    ``to_dict()`` is the per-model view (what artifacts and reports always had); ``roles_dict()`` is
    the per-role one. A call made without a role is counted per model only. ``hits_by_scope`` counts
    the cache hits of a scoped cache by the trust scope they came from (empty without scopes).
    """

    by_model: dict[str, ModelUsage] = field(default_factory=dict)
    by_role: dict[str, ModelUsage] = field(default_factory=dict)
    hits_by_scope: dict[str, int] = field(default_factory=dict)

    def usage(self, model: str) -> ModelUsage:
        if model not in self.by_model:
            self.by_model[model] = ModelUsage()
        return self.by_model[model]

    def role_usage(self, role: str) -> ModelUsage:
        if role not in self.by_role:
            self.by_role[role] = ModelUsage()
        return self.by_role[role]

    def usages(self, model: str, role: str | None) -> tuple[ModelUsage, ...]:
        """The counters one call updates: its model's and, when it has one, its role's."""
        return (self.usage(model),) if not role else (self.usage(model), self.role_usage(role))

    def add(
        self,
        model: str,
        role: str | None,
        *,
        calls: int = 0,
        cache_hits: int = 0,
        prompt_tokens: int = 0,
        completion_tokens: int = 0,
        cost_usd: float = 0.0,
        cost_unknown_calls: int = 0,
        retries: int = 0,
        failures: int = 0,
        seconds: float = 0.0,
    ) -> None:
        """Count usage of a call made to `model` in `role`: under its model and, when it has one, its role."""
        delta = ModelUsage(
            calls=calls,
            cache_hits=cache_hits,
            prompt_tokens=prompt_tokens,
            completion_tokens=completion_tokens,
            cost_usd=cost_usd,
            cost_unknown_calls=cost_unknown_calls,
            retries=retries,
            failures=failures,
            seconds=seconds,
        )
        for usage in self.usages(model, role):
            usage.add(delta)

    def scope_hit(self, scope: str | None) -> None:
        """Count a cache hit read from `scope` (nothing for an unscoped hit)."""
        if scope:
            self.hits_by_scope[scope] = self.hits_by_scope.get(scope, 0) + 1

    def total(self) -> ModelUsage:
        total = ModelUsage()
        for usage in self.by_model.values():
            total.add(usage)
        return total

    def merge(self, other: "Ledger") -> None:
        for model, usage in other.by_model.items():
            self.usage(model).add(usage)
        for role, usage in other.by_role.items():
            self.role_usage(role).add(usage)
        for scope, hits in other.hits_by_scope.items():
            self.hits_by_scope[scope] = self.hits_by_scope.get(scope, 0) + hits

    def to_dict(self) -> dict[str, Any]:
        return {model: asdict(usage) for model, usage in sorted(self.by_model.items())}

    def roles_dict(self) -> dict[str, Any]:
        """Usage per role as plain data, e.g. ``{"judge": {"calls": 40, ...}, "scorer": {...}}``."""
        return {role: asdict(usage) for role, usage in sorted(self.by_role.items())}

    def state(self) -> dict[str, Any]:
        """Both views as plain data, for checkpoints (read back by :meth:`from_state`); the hits per
        scope only when there are any."""
        state: dict[str, Any] = {"ledger_format": 2, "models": self.to_dict(), "roles": self.roles_dict()}
        if self.hits_by_scope:
            state["scopes"] = dict(sorted(self.hits_by_scope.items()))
        return state

    @classmethod
    def from_state(cls, data: Mapping[str, Any]) -> "Ledger":
        """A ledger from :meth:`state`, or from an older checkpoint's per-model ``to_dict()``."""
        data = dict(data or {})
        if data.get("ledger_format") == 2:
            ledger = cls.from_dict(data.get("models") or {})
            ledger.by_role = cls.from_dict(data.get("roles") or {}).by_model
            ledger.hits_by_scope = {str(k): int(v) for k, v in dict(data.get("scopes") or {}).items()}
            return ledger
        return cls.from_dict(data)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "Ledger":
        known = {f.name for f in fields(ModelUsage)}
        return cls(
            {
                model: ModelUsage(**{k: v for k, v in dict(u).items() if k in known})
                for model, u in dict(data or {}).items()
            }
        )


def usage_totals(usage: Mapping[str, Mapping[str, Any]], keys: Iterable[str]) -> dict[str, Any]:
    """Totals over models of a ``Ledger.to_dict()`` mapping, for the fields in `keys`."""
    total = asdict(Ledger.from_dict(usage).total())
    return {key: total[key] for key in keys}
