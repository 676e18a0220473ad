"""Canonical JSON and short hashes: the one recipe behind cache keys, example ids and fingerprints."""

from __future__ import annotations

import hashlib
import json
from typing import Any, Callable


def canonical_json(obj: Any, *, default: Callable[[Any], Any] = str, compact: bool = True) -> str:
    """`obj` as JSON with sorted keys and Unicode kept, so equal data always gives equal text.

    ``compact=False`` keeps JSON's default separators: task fingerprints were first recorded that
    way, and committed artifacts must keep matching them.
    """
    separators = (",", ":") if compact else (", ", ": ")
    return json.dumps(obj, sort_keys=True, ensure_ascii=False, separators=separators, default=default)


def sha256_hex(text: str, length: int = 64) -> str:
    """The first `length` hex digits of the SHA-256 of `text` (UTF-8)."""
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:length]
