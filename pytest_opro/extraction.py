"""Pulling one instruction out of optimizer text: ``<INS>...</INS>``, then ``[...]``, then all of it."""

from __future__ import annotations

import re
import unicodedata

_INS_BLOCK = re.compile(r"<INS>(.*?)</INS>", re.IGNORECASE | re.DOTALL)
_INS_TAG = re.compile(r"</?INS>", re.IGNORECASE)
_BRACKETS = re.compile(r"\[([^\[\]]*)\]", re.DOTALL)


def strip_invisible(text: str) -> str:
    """Drop zero-width and other format characters (they make equal texts look different)."""
    return "".join(ch for ch in text if unicodedata.category(ch) != "Cf")


def extract_instruction(text: str) -> str:
    """The instruction in an optimizer reply, stripped; "" when there is nothing usable.

    Nested tags take the innermost non-empty block; an unclosed ``<INS>`` takes what follows it.
    """
    text = strip_invisible(text or "")
    blocks = [_INS_TAG.sub("", m).strip() for m in _INS_BLOCK.findall(text)]
    blocks = [b for b in blocks if b]
    if blocks:
        return blocks[0]
    opening = list(re.finditer(r"<INS>", text, re.IGNORECASE))
    if opening:
        return _INS_TAG.sub("", text[opening[-1].end():]).strip()
    brackets = [b.strip() for b in _BRACKETS.findall(text) if b.strip()]
    if brackets:
        return brackets[0]
    return _INS_TAG.sub("", text).strip()
