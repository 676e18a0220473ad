"""What a metric is: the :class:`Metric` and :class:`ModelGradedMetric` protocols, :class:`Graded`
(a score with its reason), and :func:`grade_outputs`, which scores a batch with any kind of metric.
"""

from __future__ import annotations

import hashlib
import inspect
import numbers
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable, Protocol, Sequence, runtime_checkable

from pytest_opro.errors import MetricError
from pytest_opro.prompts.examples import Example

if TYPE_CHECKING:
    from pytest_opro.models.client import LLMClient


@runtime_checkable
class Metric(Protocol):
    """Anything with a ``name``, a ``version`` and ``__call__(output, example) -> float`` in [0, 1]."""

    name: str
    version: str

    def __call__(self, output: str, example: Example) -> float: ...


@dataclass(frozen=True)
class Graded:
    """One output's grade: ``value`` in [0, 1] and, optionally, why (``reason``, a short label
    that reports count, e.g. "not JSON"). ``value=None`` means the output could not be graded (a
    judge reply without a readable grade, a failed judge call): it is counted as a failure with
    ``reason`` as the message, never scored 0."""

    value: float | None
    reason: str | None = None

    @property
    def failed(self) -> bool:
        return self.value is None


@runtime_checkable
class ModelGradedMetric(Protocol):
    """A metric that grades a batch of outputs asynchronously and may call models through `client`."""

    name: str
    version: str

    async def score_many(
        self, outputs: Sequence[str], examples: Sequence[Example], client: "LLMClient"
    ) -> Sequence["float | Graded"]: ...


def _checked(metric: Any, value: Any, example: Example) -> Graded:
    """`value` (a number, bool or Graded) as a Graded in [0, 1]; anything else is a MetricError."""
    name = getattr(metric, "name", type(metric).__name__)
    if isinstance(value, Graded):
        if value.value is None:
            return value
        graded, number = value, value.value
    else:
        graded, number = None, value
    if isinstance(number, bool):
        number = 1.0 if number else 0.0
    if not isinstance(number, numbers.Real):
        raise MetricError(
            f"metric {name!r} returned {type(number).__name__} {number!r:.60} for example {example.id!r}; "
            "a metric must return a number in [0, 1]"
        )
    number = float(number)
    if not 0.0 <= number <= 1.0:  # also rejects NaN
        raise MetricError(
            f"metric {name!r} returned {number!r} for example {example.id!r}; a metric must return a number in [0, 1]"
        )
    return Graded(number, graded.reason if graded is not None else None)


async def grade_outputs(
    metric: Any, outputs: Sequence[str], examples: Sequence[Example], client: "LLMClient | None" = None
) -> list[Graded]:
    """Grade `outputs[i]` against `examples[i]` with any kind of metric, all in one batch.

    A metric with ``score_many`` gets the whole batch and the client (its model calls run
    concurrently); a metric with ``grade`` gives reasons; any other is called once per output.
    """
    if len(outputs) != len(examples):
        raise ValueError(f"grade_outputs: {len(outputs)} outputs for {len(examples)} examples")
    if not outputs:
        return []
    score_many = getattr(metric, "score_many", None)
    if score_many is not None:
        values = list(await score_many(list(outputs), list(examples), client))
        if len(values) != len(outputs):
            raise MetricError(
                f"metric {getattr(metric, 'name', metric)!r}: score_many returned {len(values)} scores "
                f"for {len(outputs)} outputs"
            )
        return [_checked(metric, v, ex) for v, ex in zip(values, examples)]
    grade = getattr(metric, "grade", None)
    if grade is not None:
        return [_checked(metric, grade(out, ex), ex) for out, ex in zip(outputs, examples)]
    return [_checked(metric, metric(out, ex), ex) for out, ex in zip(outputs, examples)]


def code_digest(fn: Callable[..., Any]) -> str:
    """A short hash of a function's source (or bytecode), so editing it marks artifacts stale."""

    try:
        text = inspect.getsource(fn).encode("utf-8")
    except (OSError, TypeError):
        code = getattr(fn, "__code__", None) or getattr(getattr(type(fn), "__call__", None), "__code__", None)  # noqa: B004
        text = (
            (code.co_code + repr((code.co_consts, code.co_names)).encode("utf-8"))
            if code is not None
            else repr(fn).encode("utf-8")
        )
    return hashlib.sha256(text).hexdigest()[:8]
