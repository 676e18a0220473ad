"""Pulling one instruction out of optimizer text: ``<INS>...</INS>``, then ``[...]``, then all of it."""

from __future__ import annotations

import re
import unicodedata

_INS_TAG = re.compile(r"</?INS>", re.IGNORECASE)
_BRACKETS = re.compile(r"\[([^\[\]]*)\]", re.DOTALL)


def strip_invisible(text: str) -> str:
    """Drop zero-width and other format characters (they make equal texts look different)."""
    return "".join(ch for ch in text if unicodedata.category(ch) != "Cf")


def extract_instruction(text: str) -> str:
    """The instruction in an optimizer reply, stripped; "" when there is nothing usable.

    The first non-empty block wins, with nested tags dropped from it; an unclosed ``<INS>`` takes
    what follows the last one.
    One pass over the tags: a 100 KB reply of unmatched ``<INS>`` takes milliseconds, not minutes.
    """
    text = strip_invisible(text or "")
    opened: int | None = None
    last_open: int | None = None
    for tag in _INS_TAG.finditer(text):
        if not tag.group(0).startswith("</"):
            last_open = tag.end()
            if opened is None:
                opened = tag.end()
        elif opened is not None:
            block = _INS_TAG.sub("", text[opened : tag.start()]).strip()
            if block:
                return block
            opened = None
    if last_open is not None:
        return _INS_TAG.sub("", text[last_open:]).strip()
    brackets = [_INS_TAG.sub("", b).strip() for b in _BRACKETS.findall(text)]
    brackets = [b for b in brackets if b]
    if brackets:
        return brackets[0]
    return _INS_TAG.sub("", text).strip()
