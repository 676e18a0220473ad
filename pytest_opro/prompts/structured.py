"""Structured-output metrics: JSON read out of a reply, checked against a schema and expected fields.

Models asked for JSON answer with bare JSON, JSON in a code fence, or JSON with a sentence around it;
:func:`extract_json` finds the object in all three. :class:`JsonFields` (``metrics.json_fields``)
scores the share of expected fields the object gets right. A reply with no JSON object scores 0 with
the reason "not JSON", one that breaks the schema scores 0 with the reason "schema violation", so a
report can count them ("12 of 40 replies were not JSON").
"""

from __future__ import annotations

import hashlib
import json
import math
import re
from typing import Any, Callable, Mapping, Sequence

from pytest_opro.errors import MetricError
from pytest_opro.prompts.answers import extract_number, normalize
from pytest_opro.prompts.examples import Example
from pytest_opro.prompts.metric_types import Graded

#: Reasons a reply scored 0 without its fields being compared.
NOT_JSON = "not JSON"
NOT_OBJECT = "JSON but not an object"
SCHEMA_VIOLATION = "schema violation"

COMPARISONS = ("exact", "normalized", "numeric")

_FENCE = re.compile(r"```[ \t]*(?:json5?|JSON)?[ \t]*\r?\n?(.*?)```", re.DOTALL)
_DECODER = json.JSONDecoder()


def extract_json(text: str) -> tuple[Any, str | None]:
    """The first JSON value in `text` and None, or (None, why there is none).

    Tried in order: the whole reply; the inside of each ```json fence; the first ``{`` or ``[``
    from which a complete JSON value decodes (prose before and after is ignored). Objects are
    preferred to arrays when both appear.
    """
    text = text or ""
    stripped = text.strip()
    if stripped:
        try:
            return json.loads(stripped), None
        except ValueError:
            pass
    for match in _FENCE.finditer(text):
        body = match.group(1).strip()
        try:
            return json.loads(body), None
        except ValueError:
            continue
    found_array: Any = None
    for match in re.finditer(r"[{\[]", text):
        try:
            value, _ = _DECODER.raw_decode(text, match.start())
        except ValueError:
            continue
        if isinstance(value, dict):
            return value, None
        if found_array is None:
            found_array = value
    if found_array is not None:
        return found_array, None
    return None, "no JSON object in the reply" if stripped else "empty reply"


def _canonical(value: Any) -> str:
    return json.dumps(value, sort_keys=True, ensure_ascii=False)


def _field_matches(got: Any, want: Any, how: str) -> bool:
    if how == "numeric":
        want_n = want if isinstance(want, (int, float)) and not isinstance(want, bool) else extract_number(str(want))
        got_n = got if isinstance(got, (int, float)) and not isinstance(got, bool) else extract_number(str(got))
        if want_n is None or got_n is None or not math.isfinite(float(got_n)):
            return want_n is None and got_n is None and normalize(str(got)) == normalize(str(want))
        return math.isclose(float(got_n), float(want_n), rel_tol=1e-6, abs_tol=1e-6)
    if how == "exact":
        if isinstance(got, str) and isinstance(want, str):
            return got.strip() == want.strip()
        return _canonical(got) == _canonical(want)
    # normalized: case, punctuation and whitespace do not matter; containers compare item by item
    if isinstance(want, (list, tuple)) and isinstance(got, (list, tuple)):
        return len(got) == len(want) and all(_field_matches(g, w, how) for g, w in zip(got, want))
    if isinstance(want, dict) and isinstance(got, dict):
        return set(got) == set(want) and all(_field_matches(got[k], want[k], how) for k in want)
    if want is None or got is None:
        return want is None and got is None
    return normalize(_scalar_text(got)) == normalize(_scalar_text(want))


def _scalar_text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return value if isinstance(value, str) else _canonical(value)


class JsonFields:
    """Score = share of expected fields whose value in the reply's JSON object matches.

    See :func:`pytest_opro.metrics.json_fields` for the arguments. ``grade()`` gives the reason for a
    0 that was not a field mismatch ("not JSON", "JSON but not an object", "schema violation").
    """

    version = "1"

    def __init__(
        self,
        fields: Sequence[str] | Mapping[str, str] | None = None,
        *,
        schema: Mapping[str, Any] | None = None,
        compare: str = "normalized",
        expected: Callable[[Example], Mapping[str, Any]] | None = None,
    ) -> None:
        if compare not in COMPARISONS:
            raise MetricError(f"json_fields: compare={compare!r} is not one of {', '.join(COMPARISONS)}")
        if fields is None:
            self.fields: dict[str, str] | None = None
        elif isinstance(fields, Mapping):
            self.fields = {str(k): str(v) for k, v in fields.items()}
        elif isinstance(fields, str):
            raise MetricError("json_fields: pass the field names as a list, e.g. json_fields(['name', 'date'])")
        else:
            self.fields = {str(f): compare for f in fields}
        bad = sorted({how for how in (self.fields or {}).values() if how not in COMPARISONS})
        if bad:
            raise MetricError(f"json_fields: comparison {bad[0]!r} is not one of {', '.join(COMPARISONS)}")
        self.compare = compare
        self.schema = dict(schema) if schema is not None else None
        self._validator: Any = None
        if self.schema is not None:
            self._validator = _validator(self.schema)
        self.expected = expected
        config = {"fields": self.fields, "schema": self.schema, "compare": compare}
        self.name = "json_fields"
        self.digest = hashlib.sha256(_canonical(config).encode("utf-8")).hexdigest()[:8]
        if expected is not None:
            from pytest_opro.prompts.metric_types import code_digest

            self.digest += code_digest(expected)

    def __repr__(self) -> str:
        return f"<metric {self.name}@{self.version}>"

    def expected_object(self, example: Example) -> dict[str, Any]:
        """The fields an answer to `example` should have."""
        if self.expected is not None:
            want = self.expected(example)
        else:
            try:
                want = json.loads(example.target)
            except ValueError:
                want = None
        if not isinstance(want, Mapping):
            where = f" ({example.source})" if example.source else ""
            raise MetricError(
                f"metric 'json_fields': the target of example {example.id!r}{where} is not a JSON object; "
                "write the expected fields as a JSON object in 'target', or pass expected=<function>"
            )
        return dict(want)

    def grade(self, output: str, example: Example) -> Graded:
        want = self.expected_object(example)
        got, why = extract_json("" if output is None else str(output))
        if why is not None:
            return Graded(0.0, NOT_JSON)
        if not isinstance(got, dict):
            return Graded(0.0, NOT_OBJECT)
        if self._validator is not None and next(iter(self._validator.iter_errors(got)), None) is not None:
            return Graded(0.0, SCHEMA_VIOLATION)
        fields = self.fields if self.fields is not None else {k: self.compare for k in want}
        if not fields:
            return Graded(1.0)
        right = 0
        for name, how in fields.items():
            if name not in want:
                raise MetricError(
                    f"metric 'json_fields': field {name!r} is not in the expected object of example {example.id!r}"
                )
            if name in got and _field_matches(got[name], want[name], how):
                right += 1
        return Graded(right / len(fields))

    def __call__(self, output: str, example: Example) -> float:
        value = self.grade(output, example).value
        return 0.0 if value is None else value

    def schema_errors(self, output: str) -> list[str]:
        """Messages of every schema violation in `output`'s JSON (empty when valid or no schema)."""
        got, why = extract_json(output)
        if why is not None or self._validator is None:
            return [] if why is None else [why]
        return [error.message for error in self._validator.iter_errors(got)]


def _validator(schema: Mapping[str, Any]) -> Any:
    """A jsonschema validator for `schema` (its declared draft, else the newest), checked once."""
    try:
        import jsonschema
    except ImportError:  # pragma: no cover - a dependency of pytest-opro
        raise MetricError("json_fields(schema=...) needs the jsonschema package: pip install jsonschema") from None
    cls = jsonschema.validators.validator_for(schema)
    try:
        cls.check_schema(schema)
    except jsonschema.exceptions.SchemaError as exc:
        raise MetricError(f"json_fields: the schema is not a valid JSON Schema: {exc.message}") from None
    return cls(schema)
