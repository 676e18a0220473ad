"""The Redis response cache: one cache shared by every CI runner (``--opro-cache-url redis://host:6379/0``).

It has the SQLite cache's semantics exactly (see :mod:`pytest_opro.models.cache`): the same key,
modes ``rw``/``ro``/``off``, the first writer of a key wins (``SET NX``: a replayed run never sees an
answer change under it), an optional TTL (``SET ... EX``) and values zlib-compressed when large.

- The URL may be ``redis://`` or ``rediss://`` (TLS). The password comes from the URL
  (``redis://:PASSWORD@host:6379/0``) or, when the URL has none, from the environment variable
  :data:`PASSWORD_ENV` (``OPRO_REDIS_PASSWORD``). It is never written anywhere: every message
  names the URL through :func:`redact_url`.
- Unreachable when opened: one :class:`~pytest_opro.errors.ConfigError` naming the URL.
- Lost mid-run: one warning, then every lookup misses and nothing is written for the rest of the
  process; calls go to the provider, so the run's result does not change. Entries written before
  survive as far as the server persists them (run Redis with ``--appendonly yes``).

Needs the ``redis`` package: ``pip install "pytest-opro[redis]"``.
"""

from __future__ import annotations

import os
import threading
import warnings
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from pytest_opro.errors import ConfigError
from pytest_opro.models.cache_format import (
    MODES,
    CacheMode,
    cache_key,
    check_ttl,
    decode_values,
    encode_value,
)

#: Environment variable holding the Redis password when the URL has none.
PASSWORD_ENV = "OPRO_REDIS_PASSWORD"
#: Every key this cache writes starts with this (the rest is the sha256 of :func:`cache_key`).
KEY_PREFIX = "opro:resp:v1:"
CONNECT_TIMEOUT = 5.0
SOCKET_TIMEOUT = 10.0
_SECRET_QUERY = ("password", "pass", "pwd", "token", "ssl_password")


def redact_url(url: str) -> str:
    """`url` with any password (in the userinfo or the query string) replaced by ``***``."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return "<unparseable cache URL>"
    netloc = parts.netloc
    if "@" in netloc:
        userinfo, host = netloc.rsplit("@", 1)
        # user:password@ keeps the user; a lone userinfo may be a token pasted there: hidden too
        netloc = f"{userinfo.split(':', 1)[0]}:***@{host}" if ":" in userinfo else f"***@{host}"
    query = parts.query
    if query:
        pairs = parse_qsl(query, keep_blank_values=True)
        query = urlencode([(k, "***" if k.lower() in _SECRET_QUERY else v) for k, v in pairs], safe="*")
    return urlunsplit((parts.scheme, netloc, parts.path, query, parts.fragment))


def url_password(url: str) -> str | None:
    """The password a URL carries (userinfo or query string), if any."""
    try:
        parts = urlsplit(url)
        password = parts.password
        for k, v in parse_qsl(parts.query):
            if k.lower() in _SECRET_QUERY and v:
                password = v
    except ValueError:
        return None
    return password or None


def url_secrets(url: str) -> tuple[str, ...]:
    """Everything in `url` that must not be printed: the password, and a lone userinfo."""
    found = [url_password(url) or ""]
    try:
        netloc = urlsplit(url).netloc
    except ValueError:
        return ()
    if "@" in netloc:
        userinfo = netloc.rsplit("@", 1)[0]
        found.append(userinfo if ":" not in userinfo else "")
    return tuple(s for s in found if len(s) >= 3)


def check_url(url: str) -> str:
    """The URL, stripped, when it is a Redis URL; ValueError (naming it without its password) otherwise."""
    url = url.strip()
    if not url.startswith(("redis://", "rediss://", "unix://")):
        raise ValueError(f"{redact_url(url)!r} is not a Redis URL: use redis://host:6379/0 or rediss://host:6380/0")
    try:
        parts = urlsplit(url)
        if url.startswith(("redis://", "rediss://")):
            if not parts.hostname:
                raise ValueError("no host")
            parts.port  # noqa: B018 - raises ValueError for a bad port
    except ValueError:
        raise ValueError(f"{redact_url(url)!r} is not a valid Redis URL: use redis://host:6379/0") from None
    return url


def scrub(text: str, *secrets: str | None) -> str:
    """`text` with each secret replaced by ``***``."""
    for secret in secrets:
        if secret:
            text = text.replace(secret, "***")
    return text


def connect(
    url: str,
    *,
    decode_responses: bool = False,
    connect_timeout: float = CONNECT_TIMEOUT,
    socket_timeout: float = SOCKET_TIMEOUT,
) -> Any:
    """A ``redis.Redis`` client for `url` (password from the URL, else :data:`PASSWORD_ENV`), not yet
    connected. ImportError names the extra to install."""
    try:
        import redis
        from redis.backoff import ExponentialBackoff
        from redis.retry import Retry
    except ImportError:
        raise ConfigError('a Redis URL needs the redis package: pip install "pytest-opro[redis]"') from None
    kwargs: dict[str, Any] = {
        "socket_connect_timeout": connect_timeout,
        "socket_timeout": socket_timeout,
        "decode_responses": decode_responses,
        "health_check_interval": 0,
        # a short retry only: a server that is gone is detected within a second, not after a long backoff
        "retry": Retry(ExponentialBackoff(cap=0.2, base=0.05), 1),
    }
    if url_password(url) is None and os.environ.get(PASSWORD_ENV):
        kwargs["password"] = os.environ[PASSWORD_ENV]
    return redis.Redis.from_url(url, **kwargs)


def connection_errors() -> tuple[type[BaseException], ...]:
    """The exceptions that mean the server is gone (connection refused, reset or timed out)."""
    import redis

    return (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError, OSError)


def describe_error(exc: BaseException, *secrets: str | None) -> str:
    text = " ".join(str(exc).split()) or type(exc).__name__
    return scrub(f"{type(exc).__name__}: {text}", *secrets)


class RedisCache:
    """The response cache in one Redis database, shared by many processes and machines."""

    def __init__(
        self, url: str, mode: CacheMode = "rw", ttl: float | None = None, *, key_prefix: str = KEY_PREFIX
    ) -> None:
        if mode not in MODES:
            raise ConfigError(f"cache mode {mode!r} is not one of {', '.join(MODES)}")
        try:
            self.url = check_url(url)
        except ValueError as exc:
            raise ConfigError(f"response cache: {exc}") from None
        self.mode: CacheMode = mode
        self.ttl = check_ttl(ttl)
        self.location = redact_url(self.url)
        self.key_prefix = key_prefix
        self._secrets = (*url_secrets(self.url), os.environ.get(PASSWORD_ENV))
        self._lock = threading.Lock()
        self._warned: set[str] = set()
        self._lost = False
        self.hits = 0
        self.misses = 0
        self.writes = 0
        self.refused_writes = 0  # SET NX found the key already written (by another run or process)
        self._client: Any = None
        if mode != "off":
            self._client = self._open()

    # -- connection ----------------------------------------------------------------------------
    def _open(self) -> Any:
        client = connect(self.url)
        try:
            client.ping()
        except Exception as exc:  # noqa: BLE001 - any failure to reach it is the same one error
            try:
                client.close()
            except Exception:  # noqa: BLE001
                pass
            raise ConfigError(
                f"response cache {self.location} unreachable ({describe_error(exc, *self._secrets)}); start Redis "
                "there, correct --opro-cache-url, or run without it (--opro-cache=off)"
            ) from None
        return client

    key = staticmethod(cache_key)

    def _redis_key(self, key: str) -> str:
        return self.key_prefix + key

    def _warn(self, message: str) -> None:
        if message not in self._warned:
            self._warned.add(message)
            warnings.warn(message, RuntimeWarning, stacklevel=4)

    def _failed(self, exc: BaseException) -> None:
        """A command failed: a lost server switches the cache off for this process, with one warning."""
        if isinstance(exc, connection_errors()):
            self._lost = True
            self._warn(
                f"pytest-opro: response cache {self.location} lost ({describe_error(exc, *self._secrets)}); "
                "continuing without the cache: calls go to the provider and are not stored"
            )
        else:
            self._warn(
                f"pytest-opro: response cache {self.location} failed ({describe_error(exc, *self._secrets)}); "
                "continuing without it for this call"
            )

    @property
    def available(self) -> bool:
        """False when off or lost."""
        return self._client is not None and not self._lost

    # -- the interface -------------------------------------------------------------------------
    def get(self, key: str) -> dict | None:
        """The stored value, or None on a miss (or when the cache is off or lost)."""
        return self.get_many([key])[0]

    def get_many(self, keys: list[str]) -> list[dict | None]:
        """The stored values of `keys`, in order, in one round trip (``MGET``)."""
        if not keys:
            return []
        blobs: list[Any] = [None] * len(keys)
        if self.available:
            try:
                blobs = self._client.mget([self._redis_key(k) for k in keys])
            except Exception as exc:  # noqa: BLE001 - see _failed
                self._failed(exc)
                blobs = [None] * len(keys)
        out, hits = decode_values(blobs)
        with self._lock:
            self.hits += hits
            self.misses += len(out) - hits
        return out

    def put(self, key: str, value: dict) -> None:
        """Store `value` under `key` unless the key exists (first writer wins); only in mode "rw"."""
        if self.mode != "rw" or not self.available:
            return
        blob = encode_value(value)
        try:
            stored = self._client.set(
                self._redis_key(key), blob, nx=True, ex=max(1, int(round(self.ttl))) if self.ttl else None
            )
        except Exception as exc:  # noqa: BLE001 - see _failed
            self._failed(exc)
            return
        with self._lock:
            if stored:
                self.writes += 1
            else:
                self.refused_writes += 1

    def count_keys(self) -> int:
        """Keys of this cache in the database (a SCAN: O(keys in the database))."""
        if not self.available:
            return 0
        total = 0
        for _ in self._client.scan_iter(match=self.key_prefix + "*", count=1000):
            total += 1
        return total

    def stats(self) -> dict[str, Any]:
        entries = 0
        try:
            entries = self.count_keys()
        except Exception as exc:  # noqa: BLE001 - see _failed
            self._failed(exc)
        return {
            "path": self.location,
            "mode": self.mode,
            "entries": entries,
            "size_bytes": None,
            "hits": self.hits,
            "misses": self.misses,
            "writes": self.writes,
            "refused_writes": self.refused_writes,
            "lost": self._lost,
        }

    def close(self) -> None:
        client, self._client = self._client, None
        if client is not None:
            try:
                client.close()
            except Exception:  # noqa: BLE001 - closing a dead connection
                pass

    def __enter__(self) -> "RedisCache":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"RedisCache({self.location!r}, mode={self.mode!r})"
