"""What every response-cache backend shares: the key, the stored value's format, the modes, the
TTL check and the :class:`Cache` interface the model client talks to.
"""

from __future__ import annotations

import json
import zlib
from typing import Any, Iterable, Literal, Mapping, Protocol, runtime_checkable

from pytest_opro.errors import ConfigError
from pytest_opro.hashing import canonical_json, sha256_hex

CacheMode = Literal["rw", "ro", "off"]
MODES = ("rw", "ro", "off")
KEY_VERSION = 1

# Parameters that never reach the cache key: they are secrets or transport details.
SECRET_PARAMS = frozenset(
    {"api_key", "headers", "extra_headers", "api_base", "base_url", "timeout", "num_retries", "max_retries", "metadata"}
)

#: A hit from a scoped cache carries the name of the trust scope it was read from under this field
#: (see :mod:`pytest_opro.models.redis_cache`); it is never stored.
SCOPE_FIELD = "cache_scope"

#: Values longer than this (bytes of JSON) are stored zlib-compressed where the backend stores bytes.
COMPRESS_OVER = 1024
_PLAIN, _ZLIB = b"j", b"z"


def _canonical(obj: Any) -> str:
    return canonical_json(obj, default=repr)


def cache_key(model: str, messages: list[dict[str, Any]], params: Mapping[str, Any], sample_index: int) -> str:
    """sha256 hex of the canonical JSON of everything that changes the answer (every backend's key)."""
    clean = {k: v for k, v in dict(params or {}).items() if k not in SECRET_PARAMS}
    payload = {
        "v": KEY_VERSION,
        "model": model,
        "messages": messages,
        "params": clean,
        "sample_index": int(sample_index),
    }
    return sha256_hex(_canonical(payload))


def clean_value(value: Mapping[str, Any]) -> dict[str, Any]:
    """The value without anything that could be a secret, nor the scope a hit was read from."""
    return {k: v for k, v in value.items() if k not in SECRET_PARAMS and k != SCOPE_FIELD}


def encode_value(value: Mapping[str, Any], compress_over: int = COMPRESS_OVER) -> bytes:
    """Bytes to store: a one-byte tag, then canonical JSON, zlib-compressed when longer than `compress_over`."""
    data = _canonical(clean_value(value)).encode("utf-8")
    if len(data) > compress_over:
        packed = zlib.compress(data, 6)
        if len(packed) < len(data):
            return _ZLIB + packed
    return _PLAIN + data


def decode_value(blob: bytes | str | None) -> dict[str, Any] | None:
    """The dict :func:`encode_value` stored (plain JSON text is read too); None when unreadable."""
    if blob is None:
        return None
    try:
        if isinstance(blob, str):
            text = blob
        elif blob[:1] == _ZLIB:
            text = zlib.decompress(blob[1:]).decode("utf-8")
        elif blob[:1] == _PLAIN:
            text = blob[1:].decode("utf-8")
        else:
            text = blob.decode("utf-8")
        value = json.loads(text)
    except (ValueError, zlib.error, UnicodeDecodeError, TypeError):
        return None
    return value if isinstance(value, dict) else None


@runtime_checkable
class Cache(Protocol):
    """What the model client needs from a response cache (see the module docstring for semantics).

    ``location`` names the store in messages, without any password. A backend with trust scopes
    puts the scope a hit came from in the hit's :data:`SCOPE_FIELD`.
    """

    mode: CacheMode
    location: str

    def key(self, model: str, messages: list[dict[str, Any]], params: Mapping[str, Any], sample_index: int) -> str: ...

    def get(self, key: str) -> dict[str, Any] | None: ...

    def get_many(self, keys: list[str]) -> list[dict[str, Any] | None]: ...

    def put(self, key: str, value: dict[str, Any]) -> None: ...

    def stats(self) -> dict[str, Any]: ...

    def close(self) -> None: ...


def check_ttl(ttl: float | None) -> float | None:
    if ttl is None:
        return None
    ttl = float(ttl)
    if not ttl > 0:
        raise ConfigError(f"cache TTL must be a positive number of seconds, got {ttl:g}")
    return ttl


def decode_values(blobs: Iterable[bytes | str | None]) -> tuple[list[dict[str, Any] | None], int]:
    """Each stored blob decoded (None for a miss or an unreadable entry), and how many were hits."""
    values = [decode_value(blob) for blob in blobs]
    return values, sum(value is not None for value in values)
