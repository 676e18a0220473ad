"""Metrics: score one model output against one example, as a number in [0, 1].

Built in (use them by name in a task, e.g. ``metric="numeric"``):

- ``exact``: the output, stripped, equals the target (or an alias), stripped.
- ``normalized``: equal after :func:`normalize` (case, punctuation, whitespace).
- ``contains``: the normalised target (or an alias) appears as whole words in the normalised output.
- ``numeric``: the number the output gives (see :func:`extract_number`) equals the target's, within 1e-6.
- ``choice``: the option the output picks (see :func:`extract_choice`) is the target.
- ``regex(pattern)``: the pattern's first capture group (or whole match) equals the target, normalised.
- ``token_f1``: SQuAD-style F1 of the words shared by output and target (graded, for short free text).
- ``json_fields(...)``: the share of expected JSON fields the reply gets right (see :mod:`.structured`).
- ``judge(rubric, model=...)``: a judge model grades the output against a rubric (see :mod:`.judge`).
- ``custom(fn)``: any ``fn(output, example) -> float`` in [0, 1] (an ``async def`` works too).

Every metric has a ``name`` and a ``version``; both go into the task fingerprint, so a committed
score is not compared with one measured by a metric that has since changed. Built-in metrics never
raise on any output text.

Two kinds of metric fit the same slot:

- a plain metric is ``__call__(output, example) -> float``; it may also have
  ``grade(output, example) -> Graded`` to say *why* an output scored as it did (``json_fields``
  records "not JSON" that way, so a report can say "12 of 40 replies were not JSON");
- a model-graded (or otherwise asynchronous) metric has ``async score_many(outputs, examples, client)``
  returning one float or :class:`Graded` per output. It calls models through the run's ``LLMClient``
  (cache, budget, ledger), all outputs of a scoring pass in one concurrent batch. A
  ``Graded(None, reason)`` is a failed grading (like a failed model call: left out of the mean,
  counted in failures), never a 0. ``fingerprint_parts()`` adds entries to the task fingerprint and
  ``calls_per_output`` / ``model`` feed the pre-run estimate.

:func:`grade_outputs` scores a batch with either kind; user callables keep working unchanged.
"""

from __future__ import annotations

import asyncio
import inspect
import math
import re
import unicodedata
from collections import Counter
from functools import lru_cache
from typing import TYPE_CHECKING, Any, Callable, Mapping, NamedTuple, Sequence

from pytest_opro.errors import MetricError
from pytest_opro.prompts.answers import _answers, extract_number, normalize
from pytest_opro.prompts.examples import Example
from pytest_opro.prompts.metric_types import Graded, Metric, ModelGradedMetric, _checked, code_digest, grade_outputs

if TYPE_CHECKING:
    from pytest_opro.models.config import ModelSpec

__all__ = [
    "Graded",
    "Metric",
    "ModelGradedMetric",
    "Normalized",
    "answer_of",
    "choice",
    "contains",
    "custom",
    "exact",
    "extract_choice",
    "extract_json",
    "extract_number",
    "grade_outputs",
    "json_fields",
    "judge",
    "normalize",
    "normalized",
    "numeric",
    "regex",
    "resolve",
    "token_f1",
]


class _BuiltinMetric:
    name: str = ""
    version: str = "1"

    def __call__(self, output: str, example: Example) -> float:
        return float(self.score("" if output is None else str(output), example))

    def score(self, output: str, example: Example) -> float:  # pragma: no cover - abstract
        raise NotImplementedError

    def answer(self, output: str, example: Example) -> str | None:
        """The answer this metric reads in `output` (what it compares with the target), or None."""
        return _short(normalize(output or ""))

    def __repr__(self) -> str:
        return f"<metric {self.name}@{self.version}>"


def _short(text: str, width: int = 60) -> str | None:
    """An answer as it is counted for collapse diagnostics: None when empty, cut to `width` characters."""
    text = " ".join(text.split())
    return (text[: width - 1] + "…" if len(text) > width else text) or None


def answer_of(metric: Metric, output: str, example: Example) -> str | None:
    """The answer `metric` reads in `output`; for a custom metric, the normalised output (first 60 chars)."""
    reader = getattr(metric, "answer", None)
    try:
        return reader(output, example) if reader is not None else _short(normalize(output or ""))
    except Exception:  # noqa: BLE001 - a diagnostic must never break scoring
        return None


class _Exact(_BuiltinMetric):
    name = "exact"

    def answer(self, output: str, example: Example) -> str | None:
        return _short((output or "").strip())

    def score(self, output: str, example: Example) -> float:
        out = output.strip()
        return 1.0 if any(out == a.strip() for a in _answers(example)) else 0.0


class Normalized(_BuiltinMetric):
    """Equality after :func:`normalize`. ``Normalized(articles=True)`` also ignores a/an/the."""

    def __init__(self, articles: bool = False) -> None:
        self.articles = articles
        self.name = "normalized:no-articles" if articles else "normalized"

    def score(self, output: str, example: Example) -> float:
        out = normalize(output, articles=self.articles)
        return 1.0 if any(out == normalize(a, articles=self.articles) for a in _answers(example)) else 0.0


class _Contains(_BuiltinMetric):
    """Whole-word containment: target "8" is not found in "18"; "new york" is found in "in new york."."""

    name = "contains"

    def score(self, output: str, example: Example) -> float:
        out = f" {normalize(output)} "
        for answer in _answers(example):
            norm = normalize(answer)
            if norm and f" {norm} " in out:
                return 1.0
            if not norm and answer.strip() and answer.strip() in output:  # an all-punctuation target
                return 1.0
        return 0.0


# ------------------------------------------------------------------------------------------- numbers


class _Numeric(_BuiltinMetric):
    name = "numeric"

    def answer(self, output: str, example: Example) -> str | None:
        got = extract_number(output or "")
        if got is None or not math.isfinite(got):
            return None
        return str(int(got)) if got == int(got) else f"{got:g}"

    def score(self, output: str, example: Example) -> float:
        targets = [v for v in (extract_number(a) for a in _answers(example)) if v is not None]
        if not targets:
            raise MetricError(
                f"metric 'numeric': target {example.target!r} of example {example.id!r}"
                f"{' (' + example.source + ')' if example.source else ''} is not a number; "
                "fix the target or use another metric"
            )
        got = extract_number(output)
        if got is None or not math.isfinite(got):
            return 0.0
        return 1.0 if any(math.isclose(got, t, rel_tol=1e-6, abs_tol=1e-6) for t in targets) else 0.0


# ------------------------------------------------------------------------------------------- choices

_POSITIVE = ("yes", "true", "valid", "plausible", "correct", "possible")
_NEGATIVE = ("no", "false", "invalid", "implausible", "incorrect", "impossible")
_POLARITY = {**{w: True for w in _POSITIVE}, **{w: False for w in _NEGATIVE}}
_OPPOSITE = dict(zip(_POSITIVE, _NEGATIVE)) | dict(zip(_NEGATIVE, _POSITIVE))
_NEGATION_BEFORE = re.compile(
    r"(?:\bnot|\bcannot|\bnever|\bhardly|n't|n\u2019t)\s+(?:be\s+)?(?:(?:very|really|entirely|quite|"
    r"particularly|completely|totally|at\s+all|that|so|too|a)\s+)?(?:(?!only\b)\w+ly\s+)?$",
    re.IGNORECASE,
)
_CHOICE_ANCHOR = re.compile(
    r"\b(?:final\s+)?answer\s*(?:is|would\s+be|will\s+be|should\s+be|[:=])\s*:?|^\s*A:\s*",
    re.IGNORECASE | re.MULTILINE,
)
_LETTER_PATTERNS = (
    re.compile(r"\(([A-Za-z])\)"),  # (b)
    re.compile(r"(?<![\w(])([A-Z])\)"),  # B)
    re.compile(r"^\s*([A-Z])(?:[.)]|\s*$)", re.MULTILINE),  # B. / a line that is just B
    re.compile(r"\b(?i:option|choice|answer(?:\s+is)?)\s*:?\s*\(?([A-Z])\)?(?!\w)"),  # option B / answer: B
)
_MARKUP = re.compile(r"\*+|`+|__")
_FIRST_SENTENCE = re.compile(r"\s*.*?(?:[.!?](?=\s|$)|\n|$)", re.DOTALL)


class _Mention(NamedTuple):
    start: int
    end: int
    key: str  # normalised option the mention picks


@lru_cache(maxsize=1024)
def _option_pattern(option: str) -> re.Pattern[str] | None:
    words = re.findall(r"\w+", option)
    if not words:
        return re.compile(re.escape(option.strip())) if option.strip() else None
    return re.compile(r"(?<!\w)" + r"[\W_]+".join(re.escape(w) for w in words) + r"(?!\w)", re.IGNORECASE)


def _negated(text: str, start: int) -> bool:
    return bool(_NEGATION_BEFORE.search(text[max(0, start - 40) : start]))


def _options(example: Example) -> tuple[list[tuple[str, str]], dict[bool, str]]:
    """(label, key) pairs to look for, and the key for each polarity when the options are a yes/no pair."""
    target_key = normalize(example.target)
    choices = list(example.choices)
    if not choices and target_key in _OPPOSITE:  # a boolean target without choices: its natural pair
        choices = [example.target, _OPPOSITE[target_key]]
    labels = [(c, normalize(c)) for c in choices]
    if not any(key == target_key for _, key in labels):
        labels.append((example.target, target_key))
    labels += [(a, target_key) for a in example.aliases]
    polarity: dict[bool, str] = {}
    for _, key in labels:
        if key in _POLARITY:
            polarity.setdefault(_POLARITY[key], key)
    if len(polarity) < 2:
        polarity = {}
    return labels, polarity


def _mentions(text: str, example: Example) -> list[_Mention]:
    labels, polarity = _options(example)
    found: list[_Mention] = []
    single_letters = {c.strip() for c in example.choices if len(c.strip()) == 1 and c.strip().isalpha()}
    for label, key in labels:
        if label.strip() in single_letters:
            continue  # "A" as an option is found by the letter patterns, not as the article "a"
        pattern = _option_pattern(label)
        if pattern is None:
            continue
        for m in pattern.finditer(text):
            if _negated(text, m.start()):
                if key in _POLARITY and polarity:
                    found.append(_Mention(m.start(), m.end(), polarity[not _POLARITY[key]]))
                continue  # a negated non-boolean option ("not Paris") picks nothing
            found.append(_Mention(m.start(), m.end(), key))
    if example.choices:
        by_text = {c.strip().upper(): normalize(c) for c in example.choices if c.strip() in single_letters}
        for pattern in _LETTER_PATTERNS:
            for m in pattern.finditer(text):
                letter = m.group(1).upper()
                if letter in by_text:
                    key = by_text[letter]
                else:
                    index = ord(letter) - ord("A")
                    if not 0 <= index < len(example.choices):
                        continue
                    key = normalize(example.choices[index])
                found.append(_Mention(m.start(1), m.end(1), key))
    if not found and polarity:  # "Yes" / "That is not true" for a plausible/implausible task
        for word, positive in _POLARITY.items():
            for m in re.finditer(rf"(?<!\w){word}(?!\w)", text, re.IGNORECASE):
                value = positive != _negated(text, m.start())
                found.append(_Mention(m.start(), m.end(), polarity[value]))
    # Keep the longest mention where two overlap ("dark red" over "red").
    found.sort(key=lambda mn: (mn.start, -(mn.end - mn.start)))
    kept: list[_Mention] = []
    for mn in found:
        if kept and mn.start < kept[-1].end:
            continue
        kept.append(mn)
    return kept


def extract_choice(output: str, example: Example) -> str | None:
    """The option (normalised) that ``output`` picks among the example's choices, or None.

    Options are recognised by their text (whole words, so "implausible" never counts as
    "plausible"), by letter when the example has choices ("(b)", "B)", "Answer: B", "option B"),
    and, for yes/no-like options (plausible/implausible, True/False, valid/invalid, yes/no), by
    any word of that family when the option text itself does not appear ("Yes" picks "True").
    A negated positive ("not plausible", "isn't valid") counts as its negative.

    Which mention decides: the first one after the last "answer is" / "answer:" / leading "A:"
    that has one; else the first one in the first sentence (a direct answer); else the last one
    in the text (the conclusion of a chain of reasoning).
    """
    text = _MARKUP.sub("", unicodedata.normalize("NFKC", output or ""))
    mentions = _mentions(text, example)
    if not mentions:
        return None
    for anchor in reversed(list(_CHOICE_ANCHOR.finditer(text))):
        after = [mn for mn in mentions if mn.start >= anchor.end()]
        if after:
            return after[0].key
    first = _FIRST_SENTENCE.match(text)
    first_end = first.end() if first else 0
    early = [mn for mn in mentions if mn.start < first_end]
    if early:
        return early[0].key
    return mentions[-1].key


class _Choice(_BuiltinMetric):
    name = "choice"

    def answer(self, output: str, example: Example) -> str | None:
        return extract_choice(output or "", example)

    def score(self, output: str, example: Example) -> float:
        picked = extract_choice(output, example)
        return 1.0 if picked is not None and picked == normalize(example.target) else 0.0


# ------------------------------------------------------------------------------------------ token F1


def _f1(prediction: str, truth: str) -> float:
    pred, gold = normalize(prediction, articles=True).split(), normalize(truth, articles=True).split()
    if not pred or not gold:
        return 1.0 if pred == gold else 0.0
    common = sum((Counter(pred) & Counter(gold)).values())
    if common == 0:
        return 0.0
    precision, recall = common / len(pred), common / len(gold)
    return 2 * precision * recall / (precision + recall)


class _TokenF1(_BuiltinMetric):
    """SQuAD's F1: words shared by output and answer (after :func:`normalize` without a/an/the),
    harmonic mean of precision and recall, best over the target and its aliases."""

    name = "token_f1"

    def score(self, output: str, example: Example) -> float:
        return max(_f1(output, answer) for answer in _answers(example))


# ------------------------------------------------------------------------------------- regex, custom


class _Regex(_BuiltinMetric):
    def __init__(self, pattern: str, flags: int = 0) -> None:
        try:
            self.pattern = re.compile(pattern, flags)
        except (re.error, TypeError) as exc:
            raise MetricError(
                f"metric regex({pattern!r}): invalid pattern ({exc}); fix the regular expression"
            ) from None
        self.name = f"regex:{pattern}"
        self.version = "1" if not flags else f"1+flags{int(flags)}"

    def answer(self, output: str, example: Example) -> str | None:
        m = self.pattern.search(output or "")
        if m is None:
            return None
        return _short(normalize(m.group(1) if self.pattern.groups and m.group(1) is not None else m.group(0)))

    def score(self, output: str, example: Example) -> float:
        m = self.pattern.search(output)
        if m is None:
            return 0.0
        got = m.group(1) if self.pattern.groups and m.group(1) is not None else m.group(0)
        norm = normalize(got)
        return 1.0 if any(got.strip() == a.strip() or norm == normalize(a) for a in _answers(example)) else 0.0


def regex(pattern: str, flags: int = 0) -> Metric:
    """Score 1 when the first match's first capture group (or the whole match) equals the target.

    Comparison is after :func:`normalize`, so case and punctuation do not matter. Name ``regex:<pattern>``.
    """
    return _Regex(pattern, flags)


class _Custom:
    def __init__(self, fn: Callable[[str, Example], Any], name: str, version: str) -> None:
        self.fn = fn
        self.name = name
        self.version = version
        self.digest = code_digest(fn)

    def _raised(self, exc: Exception, example: Example) -> MetricError:
        return MetricError(
            f"metric {self.name!r} raised {type(exc).__name__}: {exc} (example {example.id!r}); fix the metric"
        )

    def __call__(self, output: str, example: Example) -> float:
        try:
            value = self.fn(output, example)
        except Exception as exc:  # noqa: BLE001 - the user's function; report which one failed
            raise self._raised(exc, example) from exc
        graded = _checked(self, value, example)
        if graded.value is None:
            raise MetricError(f"metric {self.name!r} could not grade example {example.id!r}: {graded.reason}")
        return graded.value

    def __repr__(self) -> str:
        return f"<metric {self.name}@{self.version}>"


class _AsyncCustom(_Custom):
    """A user's ``async def fn(output, example)``: the outputs of a batch are graded concurrently."""

    def __call__(self, output: str, example: Example) -> float:
        raise MetricError(f"metric {self.name!r} is asynchronous; it scores through a task's scoring pass")

    async def score_many(self, outputs: Sequence[str], examples: Sequence[Example], client: Any) -> list[Any]:
        async def one(output: str, example: Example) -> Any:
            try:
                return await self.fn(output, example)
            except Exception as exc:  # noqa: BLE001 - the user's function; report which one failed
                raise self._raised(exc, example) from exc

        return list(await asyncio.gather(*(one(o, e) for o, e in zip(outputs, examples))))


def custom(fn: Callable[[str, Example], Any], name: str | None = None, version: str = "1") -> Metric:
    """Wrap ``fn(output, example) -> float`` as a metric; results outside [0, 1] raise MetricError.

    ``name`` defaults to the function's qualified name. Bump ``version`` when you change what the
    function computes, so committed scores made with the old one are reported as stale.
    """
    if not callable(fn):
        raise MetricError(f"custom metric must be callable (output, example) -> float, got {type(fn).__name__}")
    if name is None:
        name = getattr(fn, "__qualname__", None) or getattr(fn, "__name__", None) or type(fn).__qualname__
    call = vars(type(fn)).get("__call__")  # an object whose class defines ``async def __call__``
    is_async = inspect.iscoroutinefunction(fn) or inspect.iscoroutinefunction(call)
    return (_AsyncCustom if is_async else _Custom)(fn, str(name), str(version))


def json_fields(
    fields: Sequence[str] | Mapping[str, str] | None = None,
    *,
    schema: Mapping[str, Any] | None = None,
    compare: str = "normalized",
    expected: Callable[[Example], Mapping[str, Any]] | None = None,
) -> Metric:
    """The share of expected JSON fields a reply gets right; see :class:`pytest_opro.prompts.structured.JsonFields`.

    ``fields`` lists the fields to check (default: every key of the expected object), or maps each
    to its comparison ("exact", "normalized" or "numeric"; ``compare`` is the default). The
    expected object is the example's target read as JSON, or ``expected(example)``. ``schema`` (a
    JSON Schema, checked with the ``jsonschema`` library) makes a reply that violates it score 0.
    A reply with no JSON object in it scores 0 with the reason "not JSON".
    """
    from pytest_opro.prompts.structured import JsonFields

    return JsonFields(fields, schema=schema, compare=compare, expected=expected)


def extract_json(text: str) -> tuple[Any, str | None]:
    """The first JSON value in a reply (bare, fenced, or with prose around it) and None, or (None, why)."""
    from pytest_opro.prompts.structured import extract_json as _extract

    return _extract(text)


def judge(
    rubric: str,
    model: "ModelSpec" = None,
    *,
    scale: tuple[int, int] = (1, 5),
    votes: int = 1,
    template: str | None = None,
    params: Mapping[str, Any] | None = None,
    reference: bool = True,
    name: str = "judge",
) -> "ModelGradedMetric":
    """A judge model grades each output against `rubric` (and the reference answer); see
    :class:`pytest_opro.prompts.judge.Judge`. The grade on `scale` maps to [0, 1]; `votes=k`
    averages k judgments drawn with distinct sample indices."""
    from pytest_opro.prompts.judge import Judge

    return Judge(
        rubric, model, scale=scale, votes=votes, template=template, params=params, reference=reference, name=name
    )


exact: Metric = _Exact()
normalized: Metric = Normalized()
contains: Metric = _Contains()
numeric: Metric = _Numeric()
choice: Metric = _Choice()
token_f1: Metric = _TokenF1()

_BY_NAME: dict[str, Metric] = {m.name: m for m in (exact, normalized, contains, numeric, choice, token_f1)}


def resolve(spec: str | Metric | Callable[[str, Example], float]) -> Metric:
    """A metric from a name ("exact", "regex:<pattern>", ...), a Metric, or a plain callable."""
    if isinstance(spec, str):
        key = spec.strip()
        if key.lower() in _BY_NAME:
            return _BY_NAME[key.lower()]
        if key.lower() == "normalized:no-articles":
            return Normalized(articles=True)
        if key.startswith("regex:"):
            return regex(key[len("regex:") :])
        known = ", ".join([*sorted(_BY_NAME), "regex:<pattern>"])
        raise MetricError(f"unknown metric {spec!r}; known metrics: {known} (or pass a callable)")
    if isinstance(spec, (_BuiltinMetric, _Custom)):
        return spec
    if callable(getattr(spec, "score_many", None)) or callable(getattr(spec, "grade", None)):
        if not isinstance(getattr(spec, "name", None), str) or not isinstance(getattr(spec, "version", None), str):
            raise MetricError(
                f"metric object {type(spec).__name__} needs a 'name' and a 'version' (strings) for the fingerprint"
            )
        return spec  # type: ignore[return-value]
    if isinstance(spec, Metric) and isinstance(getattr(spec, "name", None), str):
        return custom(spec, name=spec.name, version=str(getattr(spec, "version", "1")))
    if callable(spec):
        return custom(spec)
    raise MetricError(
        f"metric must be a name, a Metric or a callable (output, example) -> float, got {type(spec).__name__}"
    )
