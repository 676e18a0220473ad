"""Train / validation / test splits: stable hash assignment, optionally stratified by label.

Every example has a position in [0, 1) that is a hash of ``(split_seed, id)`` alone
(:func:`split_position`). How positions become splits:

**Plain** (``stratify=False``). With ``fractions``, an example goes to train, validation or test by
where its position falls on the cumulative fractions: it depends on nothing but its own id and the
seed, so adding or removing examples never moves another example. With ``counts``, examples are
ranked by position and taken in turn (exact sizes; adding an example can shift others by one place
along that ranking, from one split to the next).

**Stratified** (``stratify=True``, ``"auto"`` when targets repeat, or a callable ``example -> key``).
Examples are grouped by key (the target, case-folded, or the callable's result), and each group is
split on its own so that every split keeps the whole set's label proportions: a group of n examples
puts between ``floor`` and ``ceil`` of ``n * share`` of its examples in each split (within one
example per label and split). Within a group examples are taken in the order of their positions:
the first ``c1`` to train, the next ``c2 - c1`` to validation, the rest to test, where the cut
``c_k = floor(n * F_k + u)`` uses the cumulative fraction ``F_k`` and an offset ``u`` in [0, 1) that
is a hash of ``(split_seed, key)``, so small groups do not all round the same way.

What moves when an example is added, stratified with ``fractions``: only examples of the new
example's own group, at most two of them (one at each cut), each to the neighbouring split (train
<-> validation or validation <-> test; train <-> test when validation holds none of that group);
every other group keeps its assignment exactly. Removing an example is the reverse. With ``counts`` the sizes are exact: each group's quota is its
proportional share of each count (floor or ceil, chosen so that the counts add up), and a new
example changes every share slightly, so in any group the examples next to a cut can move to the
adjacent split. Examples beyond ``sum(counts)`` are left out, the last ones of each group in
position order.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Callable, Hashable, Sequence
from dataclasses import dataclass
from fractions import Fraction
from typing import TYPE_CHECKING, Any, Union

from pytest_opro.errors import ConfigError, ExampleError

if TYPE_CHECKING:
    from pytest_opro.prompts.examples import Example

__all__ = [
    "DEFAULT_FRACTIONS",
    "EARLIER_DEFAULT_FRACTIONS",
    "SPLIT_NAMES",
    "Splits",
    "Stratify",
    "resolve_stratify",
    "split_examples",
    "split_position",
    "split_rule",
    "targets_repeat",
]

SPLIT_NAMES = ("train", "validation", "test")

#: Default (train, validation, test) fractions.
#:
#: - test is the biggest (half) because the CI regression gate runs a paired test on it, and a paired
#:   test on few examples has no power to tell a real drop from noise;
#: - validation decides what ships (a paired test of the finalists against the baseline): on 100
#:   examples, 35 validation examples can confirm a gain of 5 examples net (14 points) where 20 needed
#:   25 points. Moving examples from train to validation shipped better instructions for fewer scorer
#:   calls in the racing benchmark (bench/RESULTS.md, "Patience and splits");
#: - train is scored for *every* candidate instruction at every step (8 a step by default), so it
#:   dominates cost and is kept small: it only has to rank a step's candidates.
DEFAULT_FRACTIONS: tuple[float, float, float] = (0.15, 0.35, 0.5)

#: Defaults of earlier versions, newest first. Test starts at the same cumulative share (0.5) in all
#: of them, so a task on the default fractions has the same test split under each; an artifact
#: recorded under an earlier default is still current (see :func:`pytest_opro.prompts.gate.stale_for`).
EARLIER_DEFAULT_FRACTIONS: tuple[tuple[float, float, float], ...] = ((0.3, 0.2, 0.5),)

#: What ``stratify`` accepts: "auto", True, False, or a callable ``example -> group key``.
Stratify = Union[bool, str, Callable[["Example"], Hashable]]

#: The split rule recorded by artifacts written before splits could be stratified.
LEGACY_RULE = "hash"


@dataclass(frozen=True)
class Splits:
    """Examples per split, each in the order of the original example list."""

    train: tuple[Example, ...]
    validation: tuple[Example, ...]
    test: tuple[Example, ...]

    def get(self, name: str) -> tuple[Example, ...]:
        """The split called ``name``: ``"train"``, ``"validation"`` or ``"test"``."""
        if name not in SPLIT_NAMES:
            raise ConfigError(f"unknown split {name!r}; use one of {', '.join(SPLIT_NAMES)}")
        return {"train": self.train, "validation": self.validation, "test": self.test}[name]


def split_position(example_id: str, seed: int = 0) -> float:
    """The example's uniform position in [0, 1): a function of ``(seed, id)`` alone."""
    digest = hashlib.sha256(f"{seed}:{example_id}".encode("utf-8")).digest()
    return (int.from_bytes(digest[:8], "big") >> 11) / float(1 << 53)


def _group_offset(key: str, seed: int) -> float:
    """The group's rounding offset in [0, 1): a function of ``(seed, key)`` alone."""
    return split_position("\x00group\x00" + key, seed)


def target_key(example: Example) -> str:
    """The label a target stands for: stripped and case-folded ("Plausible" and "plausible" are one)."""
    return example.target.strip().casefold()


def targets_repeat(examples: Sequence[Example]) -> bool:
    """Whether targets are labels: at least two distinct ones, each used twice on average.

    True for choice tasks (plausible / implausible) and small numeric ranges (counts 1-17), false for
    free-form answers. ``stratify="auto"`` stratifies exactly when this holds, and the answer-collapse
    diagnostics only apply then.
    """
    distinct = len({target_key(ex) for ex in examples})
    return 2 <= distinct and 2 * distinct <= len(examples)


def resolve_stratify(stratify: Stratify, examples: Sequence[Example]) -> Callable[[Example], Any] | None:
    """The group-key function `stratify` asks for on these examples, or None for plain splits."""
    if isinstance(stratify, str):
        if stratify != "auto":
            raise ConfigError(f"stratify={stratify!r}: use 'auto', True, False or a callable example -> group key")
        return target_key if targets_repeat(examples) else None
    if stratify is True:
        return target_key
    if stratify is False or stratify is None:
        return None
    if callable(stratify):
        return stratify
    raise ConfigError(f"stratify={stratify!r}: use 'auto', True, False or a callable example -> group key")


def split_rule(stratify: Stratify, examples: Sequence[Example]) -> str:
    """The split rule in words, for the task fingerprint: "hash", "stratified:target" or a callable's name and hash."""
    fn = resolve_stratify(stratify, examples)
    if fn is None:
        return LEGACY_RULE
    if fn is target_key:
        return "stratified:target"
    from pytest_opro.prompts.metric_types import code_digest

    name = getattr(fn, "__qualname__", None) or type(fn).__qualname__
    return f"stratified:{name}+{code_digest(fn)}"


def _keys(examples: Sequence[Example], fn: Callable[[Example], Any]) -> list[str]:
    keys = []
    for ex in examples:
        try:
            key = fn(ex)
        except Exception as exc:  # noqa: BLE001 - the user's function; say which example broke it
            raise ConfigError(
                f"stratify function raised {type(exc).__name__}: {exc} (example {ex.id!r}); fix the function"
            ) from exc
        keys.append(key if isinstance(key, str) else repr(key))
    return keys


def split_examples(
    examples: Sequence[Example],
    *,
    seed: int = 0,
    fractions: Sequence[float] | None = None,
    counts: Sequence[int] | None = None,
    stratify: Stratify = False,
) -> Splits:
    """Assign each example to train, validation or test by a stable hash of ``(seed, id)``.

    With ``fractions`` (default :data:`DEFAULT_FRACTIONS`), plain splits depend only on each
    example's own id and the seed: adding or removing examples never moves the others, so a
    committed score stays comparable as the set grows. Split sizes are then only approximately
    proportional.

    With ``counts=(n_train, n_validation, n_test)`` (takes precedence over ``fractions``), sizes are
    exact, but adding an example can shift others from one split to the next.

    ``stratify`` (``False`` here; a :class:`~pytest_opro.prompts.task.PromptTask` defaults to
    ``"auto"``) keeps each label's proportion in every split within one example; see the module
    docstring for exactly which examples move when one is added.

    A split with a non-zero share that ends up empty raises ExampleError; a zero share gives an
    intentionally empty split (e.g. no validation split).
    """
    examples = tuple(examples)
    if not examples:
        raise ExampleError("no examples to split; load at least one example")
    pos = {ex.id: split_position(ex.id, seed) for ex in examples}
    group = resolve_stratify(stratify, examples)

    if counts is not None:
        counts = tuple(counts)
        if len(counts) != 3 or any(isinstance(c, bool) or not isinstance(c, int) or c < 0 for c in counts):
            raise ConfigError(f"split counts {counts!r} must be three non-negative integers (train, validation, test)")
        if sum(counts) > len(examples):
            raise ExampleError(
                f"split counts train={counts[0]}, validation={counts[1]}, test={counts[2]} need {sum(counts)} "
                f"examples but there are {len(examples)}; add examples or lower the counts"
            )
        shares: tuple[float, ...] = tuple(float(c) for c in counts)
        described = f"counts train={counts[0]}, validation={counts[1]}, test={counts[2]}"
        if group is None:
            ranked = sorted(examples, key=lambda ex: (pos[ex.id], ex.id))
            bounds = [0, counts[0], counts[0] + counts[1], sum(counts)]
            chosen = {ranked[i].id: k for k in range(3) for i in range(bounds[k], bounds[k + 1])}
        else:
            chosen = _stratified_counts(examples, _keys(examples, group), pos, counts, seed)
    else:
        fr = tuple(DEFAULT_FRACTIONS if fractions is None else fractions)
        if len(fr) != 3 or any(
            isinstance(f, bool) or not isinstance(f, (int, float)) or not math.isfinite(f) or f < 0 for f in fr
        ):
            raise ConfigError(f"split fractions {fr!r} must be three non-negative numbers (train, validation, test)")
        if abs(sum(fr) - 1.0) > 1e-6:
            raise ConfigError(f"split fractions {fr!r} must add up to 1 (they add up to {sum(fr):g})")
        cut1, cut2 = fr[0], fr[0] + fr[1]
        if group is None:
            chosen = {ex.id: 0 if pos[ex.id] < cut1 else 1 if pos[ex.id] < cut2 else 2 for ex in examples}
        else:
            chosen = _stratified_fractions(examples, _keys(examples, group), pos, (cut1, cut2), seed)
        shares = tuple(float(f) for f in fr)
        described = f"fractions train={fr[0]:g}, validation={fr[1]:g}, test={fr[2]:g}"

    buckets: tuple[list[Example], list[Example], list[Example]] = ([], [], [])
    for ex in examples:
        k = chosen.get(ex.id)
        if k is not None and k < 3:
            buckets[k].append(ex)
    for k, name in enumerate(SPLIT_NAMES):
        if shares[k] > 0 and not buckets[k]:
            raise ExampleError(
                f"split {name!r} is empty ({described} over {len(examples)} examples); "
                f"add examples or raise the {name} share (set it to 0 to go without a {name} split)"
            )
    return Splits(train=tuple(buckets[0]), validation=tuple(buckets[1]), test=tuple(buckets[2]))


def _groups(examples: Sequence[Example], keys: list[str], pos: dict[str, float]) -> dict[str, list[Example]]:
    """Examples per group key, each group in position order."""
    groups: dict[str, list[Example]] = {}
    for ex, key in zip(examples, keys):
        groups.setdefault(key, []).append(ex)
    for members in groups.values():
        members.sort(key=lambda ex: (pos[ex.id], ex.id))
    return groups


def _stratified_fractions(
    examples: Sequence[Example], keys: list[str], pos: dict[str, float], cuts: tuple[float, float], seed: int
) -> dict[str, int]:
    chosen: dict[str, int] = {}
    for key, members in _groups(examples, keys, pos).items():
        n, u = len(members), _group_offset(key, seed)
        c1 = min(n, math.floor(n * cuts[0] + u))
        c2 = max(c1, min(n, math.floor(n * cuts[1] + u)))
        for i, ex in enumerate(members):
            chosen[ex.id] = 0 if i < c1 else 1 if i < c2 else 2
    return chosen


def _stratified_counts(
    examples: Sequence[Example], keys: list[str], pos: dict[str, float], counts: tuple[int, ...], seed: int
) -> dict[str, int]:
    """Per-group quotas that are floor or ceil of the proportional share and add up to the counts exactly.

    Columns are train, validation, test and "left out" (examples beyond sum(counts)). Each group
    starts from its own cumulative rounding (row sums exact); then units move along paths
    column -> group -> column from columns with too many to columns with too few, within each
    group's floor/ceil bounds. Such a path always exists while the columns are unbalanced (the
    proportional shares are a fractional solution, and the bounds form a transportation problem).
    """
    total = len(examples)
    demand = [*counts, total - sum(counts)]
    groups = _groups(examples, keys, pos)
    order = sorted(groups, key=lambda k: (_group_offset(k, seed), k))
    share = {g: [Fraction(len(groups[g]) * d, total) for d in demand] for g in order}
    low = {g: [math.floor(q) for q in share[g]] for g in order}
    high = {g: [math.ceil(q) for q in share[g]] for g in order}
    quota: dict[str, list[int]] = {}
    for g in order:
        n, u = len(groups[g]), Fraction(_group_offset(g, seed))
        cumulative, cuts = Fraction(0), [0]
        for q in share[g]:
            cumulative += q
            cuts.append(min(n, math.floor(cumulative + u)))
        cuts[-1] = n
        quota[g] = [cuts[k + 1] - cuts[k] for k in range(len(demand))]

    def column_sum(k: int) -> int:
        return sum(quota[g][k] for g in order)

    while True:
        surplus = [k for k in range(len(demand)) if column_sum(k) > demand[k]]
        if not surplus:
            break
        # breadth-first search over columns; an edge k -> j through group g moves one example of g
        parent: dict[int, tuple[int, str] | None] = {k: None for k in surplus}
        frontier, target = list(surplus), None
        while frontier and target is None:
            nxt = []
            for k in frontier:
                for g in order:
                    if quota[g][k] <= low[g][k]:
                        continue
                    for j in range(len(demand)):
                        if j in parent or quota[g][j] >= high[g][j]:
                            continue
                        parent[j] = (k, g)
                        if column_sum(j) < demand[j]:
                            target = j
                            break
                        nxt.append(j)
                    if target is not None:
                        break
                if target is not None:
                    break
            frontier = nxt
        if target is None:  # pragma: no cover - impossible by the transportation argument above
            raise ExampleError("could not balance stratified split counts; report this with your examples")
        j = target
        link = parent[j]
        while link is not None:
            k, g = link
            quota[g][k] -= 1
            quota[g][j] += 1
            j = k
            link = parent[j]

    chosen: dict[str, int] = {}
    for g in order:
        start = 0
        for k, size in enumerate(quota[g]):
            for ex in groups[g][start : start + size]:
                chosen[ex.id] = k
            start += size
    return chosen
