"""Metrics: score one model output against one example, as a number in [0, 1].

Built in (use them by name in a task, e.g. ``metric="numeric"``):

- ``exact``: the output, stripped, equals the target (or an alias), stripped.
- ``normalized``: equal after :func:`normalize` (case, punctuation, whitespace).
- ``contains``: the normalised target (or an alias) appears as whole words in the normalised output.
- ``numeric``: the number the output gives (see :func:`extract_number`) equals the target's, within 1e-6.
- ``choice``: the option the output picks (see :func:`extract_choice`) is the target.
- ``regex(pattern)``: the pattern's first capture group (or whole match) equals the target, normalised.
- ``custom(fn)``: any ``fn(output, example) -> float`` in [0, 1].

Every metric has a ``name`` and a ``version``; both go into the task fingerprint, so a committed
score is not compared with one measured by a metric that has since changed. Built-in metrics never
raise on any output text.
"""

from __future__ import annotations

import hashlib
import math
import numbers
import re
import string
import unicodedata
from functools import lru_cache
from typing import Any, Callable, NamedTuple, Protocol, runtime_checkable

from pytest_opro.errors import MetricError
from pytest_opro.prompts.examples import Example

__all__ = [
    "Metric",
    "Normalized",
    "answer_of",
    "choice",
    "contains",
    "custom",
    "exact",
    "extract_choice",
    "extract_number",
    "normalize",
    "normalized",
    "numeric",
    "regex",
    "resolve",
]


@runtime_checkable
class Metric(Protocol):
    """Anything with a ``name``, a ``version`` and ``__call__(output, example) -> float`` in [0, 1]."""

    name: str
    version: str

    def __call__(self, output: str, example: Example) -> float: ...


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


def _answers(example: Example) -> list[str]:
    """The target followed by its aliases."""
    return [example.target, *example.aliases]


# ------------------------------------------------------------------------------------- normalisation

_ARTICLES = re.compile(r"\b(?:a|an|the)\b")
_PUNCT = set(string.punctuation)


def normalize(text: str, *, articles: bool = False) -> str:
    """Lower case, NFKC, punctuation removed, whitespace collapsed; ``articles=True`` also drops a/an/the.

    Punctuation is deleted rather than replaced by spaces (SQuAD convention): "U.S." -> "us".
    """
    text = unicodedata.normalize("NFKC", text or "").casefold()
    text = "".join(
        " " if ch.isspace() else ch
        for ch in text
        if not (ch in _PUNCT or unicodedata.category(ch).startswith("P"))
    )
    if articles:
        text = _ARTICLES.sub(" ", text)
    return " ".join(text.split())


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

_DIGIT_NUMBER = re.compile(
    r"(?<![\w.])(?P<sign>[-\u2212])?(?P<cur>[$\u20ac\u00a3\u00a5])?(?P<sign2>[-\u2212])?"
    r"(?P<num>\d{1,3}(?:,\d{3})+(?:\.\d+)?|\d+(?:\.\d+)?|\.\d+)(?!\d)"
)

_UNITS = {
    "zero": 0, "one": 1, "two": 2, "three": 3, "four": 4, "five": 5, "six": 6, "seven": 7, "eight": 8,
    "nine": 9,
}
_TEENS = {
    "ten": 10, "eleven": 11, "twelve": 12, "thirteen": 13, "fourteen": 14, "fifteen": 15, "sixteen": 16,
    "seventeen": 17, "eighteen": 18, "nineteen": 19,
}
_TENS = {
    "twenty": 20, "thirty": 30, "forty": 40, "fourty": 40, "fifty": 50, "sixty": 60, "seventy": 70,
    "eighty": 80, "ninety": 90,
}
_SCALES = {"thousand": 10**3, "million": 10**6, "billion": 10**9, "trillion": 10**12}
_NUMBER_WORDS = {**_UNITS, **_TEENS, **_TENS, "hundred": 100, **_SCALES}
_WORD_ALT = "|".join(sorted(_NUMBER_WORDS, key=len, reverse=True))
_WORD_NUMBER = re.compile(
    rf"\b(?:{_WORD_ALT})\b(?:(?:[\s-]+|\s+and\s+)\b(?:{_WORD_ALT})\b)*", re.IGNORECASE
)
_WORD_TOKEN = re.compile(r"[a-z]+", re.IGNORECASE)

_NUM_ANCHORS = (
    re.compile(r"####"),
    re.compile(r"\\boxed\{"),
    re.compile(
        r"\b(?:final\s+)?answer\s*(?:is|would\s+be|will\s+be|should\s+be|=|:)\s*:?|\banswer\b\s*(?=[-$\d])",
        re.IGNORECASE,
    ),
)


class _Num(NamedTuple):
    start: int
    end: int
    value: float


def _word_kind(word: str) -> str:
    if word in _UNITS:
        return "zero" if word == "zero" else "unit"
    if word in _TEENS:
        return "teen"
    if word in _TENS:
        return "ten"
    if word == "hundred":
        return "hundred"
    return "scale"


def _parse_word_numbers(match: re.Match[str]) -> list[_Num]:
    """Split a run of number words into numbers: "twenty-one" -> 21, "one two" -> 1, 2."""
    out: list[_Num] = []
    total = current = 0
    last: str | None = None
    start = end = -1
    last_scale = math.inf

    def flush() -> None:
        nonlocal total, current, last, start, last_scale
        if last is not None:
            out.append(_Num(start, end, float(total + current)))
        total = current = 0
        last = None
        last_scale = math.inf

    base = match.start()
    for tok in _WORD_TOKEN.finditer(match.group(0)):
        word = tok.group(0).lower()
        if word == "and":
            if last not in ("hundred", "scale"):
                flush()
            continue
        kind = _word_kind(word)
        breaks = (
            last == "zero"
            or (kind == "zero" and last is not None)
            or (kind in ("unit", "teen") and last in ("unit", "teen"))
            or (kind == "teen" and last == "ten")
            or (kind == "ten" and last in ("unit", "teen", "ten"))
            or (kind == "hundred" and last in ("ten", "hundred"))
            or (kind == "scale" and _SCALES[word] >= last_scale)
        )
        if breaks:
            flush()
        if last is None:
            start = base + tok.start()
        end = base + tok.end()
        if kind in ("unit", "teen", "ten", "zero"):
            current += _NUMBER_WORDS[word]
        elif kind == "hundred":
            current = (current or 1) * 100
        else:
            total += (current or 1) * _SCALES[word]
            current = 0
            last_scale = _SCALES[word]
        last = kind
    flush()
    return out


def _numbers(text: str) -> list[_Num]:
    """Every number in ``text`` (digits, "1,234", "$5", "-3", "50%", "twenty-one"), in order."""
    found: list[_Num] = []
    for m in _DIGIT_NUMBER.finditer(text):
        raw = m.group("num").replace(",", "")
        try:
            value = float(raw)
        except ValueError:  # pragma: no cover - the pattern only admits valid numbers
            continue
        if m.group("sign") or m.group("sign2"):
            value = -value
        found.append(_Num(m.start(), m.end(), value))
    for m in _WORD_NUMBER.finditer(text):
        found.extend(_parse_word_numbers(m))
    found.sort(key=lambda n: n.start)
    return found


def extract_number(text: str) -> float | None:
    """The number a (possibly rambling) answer gives, or None.

    Order of preference, as in GSM8K scoring: the first number after the last ``####``; in
    ``\\boxed{...}``; the first number on the line after the last "answer is" / "answer:" that has
    one; otherwise the last number in the text. Thousands separators, currency signs, a minus sign,
    a trailing percent sign (dropped: "50%" reads as 50) and number words ("twenty-one",
    "one hundred and five") are understood.
    """
    text = unicodedata.normalize("NFKC", text or "")
    nums = _numbers(text)
    if not nums:
        return None
    for anchor in _NUM_ANCHORS:
        for m in reversed(list(anchor.finditer(text))):
            pos = m.end()
            newline = text.find("\n", pos + len(text[pos:]) - len(text[pos:].lstrip()))
            stop = len(text) if newline < 0 else newline
            after = [n for n in nums if pos <= n.start < stop]
            if after:
                return after[0].value
    return nums[-1].value


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
    return bool(_NEGATION_BEFORE.search(text[max(0, start - 40):start]))


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


# ------------------------------------------------------------------------------------- regex, custom


class _Regex(_BuiltinMetric):
    def __init__(self, pattern: str, flags: int = 0) -> None:
        try:
            self.pattern = re.compile(pattern, flags)
        except (re.error, TypeError) as exc:
            raise MetricError(f"metric regex({pattern!r}): invalid pattern ({exc}); fix the regular expression") from None
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


def _code_digest(fn: Callable[..., Any]) -> str:
    """A short hash of a function's source (or bytecode), so editing it marks artifacts stale."""
    import inspect

    try:
        text = inspect.getsource(fn).encode("utf-8")
    except (OSError, TypeError):
        code = getattr(fn, "__code__", None) or getattr(getattr(type(fn), "__call__", None), "__code__", None)  # noqa: B004
        text = (code.co_code + repr((code.co_consts, code.co_names)).encode("utf-8")) if code is not None \
            else repr(fn).encode("utf-8")
    return hashlib.sha256(text).hexdigest()[:8]


class _Custom:
    def __init__(self, fn: Callable[[str, Example], Any], name: str, version: str) -> None:
        self.fn = fn
        self.name = name
        self.version = version
        self.digest = _code_digest(fn)

    def __call__(self, output: str, example: Example) -> float:
        try:
            value = self.fn(output, example)
        except Exception as exc:  # noqa: BLE001 - the user's function; report which one failed
            raise MetricError(
                f"metric {self.name!r} raised {type(exc).__name__}: {exc} (example {example.id!r}); fix the metric"
            ) from exc
        if isinstance(value, bool):
            return 1.0 if value else 0.0
        if not isinstance(value, numbers.Real):
            raise MetricError(
                f"metric {self.name!r} returned {type(value).__name__} {value!r:.60} for example {example.id!r}; "
                "a metric must return a number in [0, 1]"
            )
        value = float(value)
        if not 0.0 <= value <= 1.0:  # also rejects NaN
            raise MetricError(
                f"metric {self.name!r} returned {value!r} for example {example.id!r}; "
                "a metric must return a number in [0, 1]"
            )
        return value

    def __repr__(self) -> str:
        return f"<metric {self.name}@{self.version}>"


def custom(fn: Callable[[str, Example], Any], name: str | None = None, version: str = "1") -> Metric:
    """Wrap ``fn(output, example) -> float`` as a metric; results outside [0, 1] raise MetricError.

    ``name`` defaults to the function's qualified name. Bump ``version`` when you change what the
    function computes, so committed scores made with the old one are reported as stale.
    """
    if not callable(fn):
        raise MetricError(f"custom metric must be callable (output, example) -> float, got {type(fn).__name__}")
    if name is None:
        name = getattr(fn, "__qualname__", None) or getattr(fn, "__name__", None) or type(fn).__qualname__
    return _Custom(fn, str(name), str(version))


exact: Metric = _Exact()
normalized: Metric = Normalized()
contains: Metric = _Contains()
numeric: Metric = _Numeric()
choice: Metric = _Choice()

_BY_NAME: dict[str, Metric] = {m.name: m for m in (exact, normalized, contains, numeric, choice)}


def resolve(spec: str | Metric | Callable[[str, Example], float]) -> Metric:
    """A metric from a name ("exact", "regex:<pattern>", ...), a Metric, or a plain callable."""
    if isinstance(spec, str):
        key = spec.strip()
        if key.lower() in _BY_NAME:
            return _BY_NAME[key.lower()]
        if key.lower() == "normalized:no-articles":
            return Normalized(articles=True)
        if key.startswith("regex:"):
            return regex(key[len("regex:"):])
        known = ", ".join([*sorted(_BY_NAME), "regex:<pattern>"])
        raise MetricError(f"unknown metric {spec!r}; known metrics: {known} (or pass a callable)")
    if isinstance(spec, (_BuiltinMetric, _Custom)):
        return spec
    if isinstance(spec, Metric) and isinstance(getattr(spec, "name", None), str):
        return custom(spec, name=spec.name, version=str(getattr(spec, "version", "1")))
    if callable(spec):
        return custom(spec)
    raise MetricError(
        f"metric must be a name, a Metric or a callable (output, example) -> float, got {type(spec).__name__}"
    )

