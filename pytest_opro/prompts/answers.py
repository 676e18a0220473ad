"""Reading answers out of model output: text normalisation and number extraction (GSM8K-style),
shared by the metrics.
"""

from __future__ import annotations

import math
import re
import string
import unicodedata
from typing import TYPE_CHECKING, NamedTuple

from pytest_opro.prompts.examples import Example

if TYPE_CHECKING:
    pass


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
        " " if ch.isspace() else ch for ch in text if not (ch in _PUNCT or unicodedata.category(ch).startswith("P"))
    )
    if articles:
        text = _ARTICLES.sub(" ", text)
    return " ".join(text.split())


_DIGIT_NUMBER = re.compile(
    r"(?<![\w.])(?P<sign>[-\u2212])?(?P<cur>[$\u20ac\u00a3\u00a5])?(?P<sign2>[-\u2212])?"
    r"(?P<num>\d{1,3}(?:,\d{3})+(?:\.\d+)?|\d+(?:\.\d+)?|\.\d+)(?!\d)"
)

_UNITS = {
    "zero": 0,
    "one": 1,
    "two": 2,
    "three": 3,
    "four": 4,
    "five": 5,
    "six": 6,
    "seven": 7,
    "eight": 8,
    "nine": 9,
}
_TEENS = {
    "ten": 10,
    "eleven": 11,
    "twelve": 12,
    "thirteen": 13,
    "fourteen": 14,
    "fifteen": 15,
    "sixteen": 16,
    "seventeen": 17,
    "eighteen": 18,
    "nineteen": 19,
}
_TENS = {
    "twenty": 20,
    "thirty": 30,
    "forty": 40,
    "fourty": 40,
    "fifty": 50,
    "sixty": 60,
    "seventy": 70,
    "eighty": 80,
    "ninety": 90,
}
_SCALES = {"thousand": 10**3, "million": 10**6, "billion": 10**9, "trillion": 10**12}
_NUMBER_WORDS = {**_UNITS, **_TEENS, **_TENS, "hundred": 100, **_SCALES}
_WORD_ALT = "|".join(sorted(_NUMBER_WORDS, key=len, reverse=True))
_WORD_NUMBER = re.compile(rf"\b(?:{_WORD_ALT})\b(?:(?:[\s-]+|\s+and\s+)\b(?:{_WORD_ALT})\b)*", re.IGNORECASE)
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
