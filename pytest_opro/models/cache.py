"""The response cache: a small interface (:class:`Cache`) and its SQLite implementation.

A response is stored under a key that covers everything that changes the answer: the model string,
the messages, every sampling parameter and the sample index. A whole optimisation run can therefore
be replayed from the cache call for call. Secrets (API keys, headers) are never part of a key or a
value.

Two implementations share the semantics below, and the model client does not know which it has:

- :class:`ResponseCache` (alias :data:`SqliteCache`): one SQLite file in WAL mode, shared safely by
  the processes of one machine (pytest-xdist workers, parallel pytest runs);
- :class:`pytest_opro.models.redis_cache.RedisCache`: one Redis database shared by many machines
  (``--opro-cache-url redis://host:6379/0``).

Semantics: modes ``rw`` (read and write), ``ro`` (read only) and ``off`` (nothing); the first
writer of a key wins, so an answer never changes under a replayed run; an optional TTL after which
an entry is gone; a backend that fails mid-run warns once and the run goes on uncached.
"""

from __future__ import annotations

import os
import sqlite3
import threading
import time
import warnings
from pathlib import Path
from typing import Any, Sequence

from pytest_opro.errors import ConfigError
from pytest_opro.models.cache_format import (  # noqa: F401  (part of this module's interface)
    COMPRESS_OVER,
    KEY_VERSION,
    MODES,
    SECRET_PARAMS,
    Cache,
    CacheMode,
    _canonical,
    cache_key,
    check_ttl,
    clean_value,
    decode_value,
    decode_values,
    encode_value,
)

DB_NAME = "responses.sqlite3"
BUSY_TIMEOUT_MS = 30_000


_SCHEMA = """
CREATE TABLE IF NOT EXISTS responses (
    key TEXT PRIMARY KEY,
    value TEXT NOT NULL,
    created REAL NOT NULL
)
"""


def _is_corruption(exc: sqlite3.Error) -> bool:
    """True for 'file is not a database' and friends, False for lock contention."""
    if isinstance(exc, sqlite3.OperationalError):
        text = str(exc).lower()
        return "malformed" in text or "not a database" in text
    return isinstance(exc, sqlite3.DatabaseError)


class ResponseCache:
    """The SQLite cache: a persistent map from request key to response dict.

    ``mode`` is ``"rw"`` (read and write), ``"ro"`` (read only, never creates or changes the file)
    or ``"off"`` (every lookup misses, nothing is written). ``ttl`` (seconds, optional): an entry
    older than that is a miss and may be written anew.
    """

    def __init__(
        self, directory: str | os.PathLike[str] = ".opro_cache", mode: CacheMode = "rw", ttl: float | None = None
    ) -> None:
        if mode not in MODES:
            raise ConfigError(f"cache mode {mode!r} is not one of {', '.join(MODES)}")
        self.directory = Path(directory)
        self.mode: CacheMode = mode
        self.ttl = check_ttl(ttl)
        self.path = self.directory / DB_NAME
        self.location = str(self.path)
        self._lock = threading.RLock()
        self._conn: sqlite3.Connection | None = None
        self._bypass = mode == "off"
        self._warned: set[str] = set()
        self.hits = 0
        self.misses = 0
        self.writes = 0

    # -- keys ----------------------------------------------------------------------------------
    key = staticmethod(cache_key)

    # -- connection ----------------------------------------------------------------------------
    def _warn(self, message: str) -> None:
        if message not in self._warned:
            self._warned.add(message)
            warnings.warn(message, RuntimeWarning, stacklevel=3)

    def _open(self) -> sqlite3.Connection | None:
        if self._bypass:
            return None
        if self._conn is not None:
            return self._conn
        try:
            self._conn = self._connect()
        except sqlite3.Error as exc:
            self._conn = None
            if _is_corruption(exc):
                self._recover(exc)
            else:
                self._warn(f"pytest-opro: response cache {self.path} unusable ({exc}); running without it")
                self._bypass = True
        return self._conn

    def _connect(self) -> sqlite3.Connection | None:
        if self.mode == "ro":
            if not self.path.exists():
                self._bypass = True
                return None
            uri = f"{self.path.resolve().as_uri()}?mode=ro"
            conn = sqlite3.connect(
                uri, uri=True, timeout=BUSY_TIMEOUT_MS / 1000, check_same_thread=False, isolation_level=None
            )
            conn.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")
            conn.execute("SELECT count(*) FROM responses").fetchone()
            return conn
        self.directory.mkdir(parents=True, exist_ok=True)
        conn = sqlite3.connect(
            str(self.path), timeout=BUSY_TIMEOUT_MS / 1000, check_same_thread=False, isolation_level=None
        )
        try:
            conn.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")
            conn.execute("PRAGMA journal_mode=WAL").fetchone()
            conn.execute("PRAGMA synchronous=NORMAL")
            conn.execute(_SCHEMA)
            conn.execute("SELECT count(*) FROM responses").fetchone()
        except BaseException:
            conn.close()
            raise
        return conn

    def _drop_connection(self) -> None:
        """Close the connection if one is open (a corrupt file may fail even at close)."""
        if self._conn is not None:
            try:
                self._conn.close()
            except sqlite3.Error:
                pass
            self._conn = None

    def _recover(self, exc: sqlite3.Error) -> None:
        """Corrupt file: move it aside and start afresh (rw), or run without cache (ro)."""
        self._drop_connection()
        if self.mode != "rw":
            self._warn(f"pytest-opro: response cache {self.path} is corrupt ({exc}); running without it")
            self._bypass = True
            return
        aside = self.path.with_name(self.path.name + ".corrupt")
        self._warn(f"pytest-opro: response cache {self.path} is corrupt ({exc}); moved to {aside.name}, starting empty")
        try:
            os.replace(self.path, aside)
        except FileNotFoundError:
            pass  # another process already moved it
        except OSError:
            pass
        for suffix in ("-wal", "-shm"):
            try:
                os.remove(str(self.path) + suffix)
            except OSError:
                pass
        try:
            self._conn = self._connect()
        except sqlite3.Error as again:
            self._warn(f"pytest-opro: response cache {self.path} cannot be rebuilt ({again}); running without it")
            self._conn = None
            self._bypass = True

    # -- public API ----------------------------------------------------------------------------
    def _fresh_after(self) -> float:
        """Rows created before this time have expired (0: nothing expires)."""
        return time.time() - self.ttl if self.ttl is not None else 0.0

    def _select(self, keys: list[str]) -> dict[str, Any] | None:
        """{key: stored text} for the keys found; None when the cache is off or unusable."""
        with self._lock:
            conn = self._open()
            if conn is None:
                return None
            found: dict[str, Any] = {}
            try:
                for start in range(0, len(keys), 500):
                    chunk = keys[start : start + 500]
                    marks = ",".join("?" * len(chunk))
                    rows = conn.execute(
                        f"SELECT key, value FROM responses WHERE key IN ({marks}) AND created >= ?",
                        (*chunk, self._fresh_after()),
                    ).fetchall()
                    found.update(rows)
            except sqlite3.Error as exc:
                if _is_corruption(exc):
                    self._recover(exc)
                return None
        return found

    def get(self, key: str) -> dict[str, Any] | None:
        """The stored value, or None on a miss (or when the cache is off or unusable)."""
        return self.get_many([key])[0]

    def get_many(self, keys: list[str]) -> list[dict[str, Any] | None]:
        """The stored values of `keys`, in order (None for each miss), in one query."""
        found = self._select(list(dict.fromkeys(keys))) if keys else {}
        out, hits = decode_values((found or {}).get(key) for key in keys)
        self.hits += hits
        self.misses += len(keys) - hits
        return out

    def put(self, key: str, value: dict[str, Any]) -> None:
        """Store ``value`` under ``key`` unless the key holds a live entry already (the first writer
        wins); a no-op unless mode is "rw"."""
        if self.mode != "rw":
            return
        data = _canonical(clean_value(value))
        args: tuple[Any, ...]
        if self.ttl is None:
            sql, args = (
                "INSERT OR IGNORE INTO responses (key, value, created) VALUES (?, ?, ?)",
                (key, data, time.time()),
            )
        else:  # an expired row may be replaced
            sql = (
                "INSERT INTO responses (key, value, created) VALUES (?, ?, ?) ON CONFLICT(key) DO UPDATE "
                "SET value = excluded.value, created = excluded.created WHERE responses.created < ?"
            )
            args = (key, data, time.time(), self._fresh_after())
        with self._lock:
            conn = self._open()
            if conn is None:
                return
            for attempt in range(2):
                try:
                    cursor = conn.execute(sql, args)
                    self.writes += max(0, cursor.rowcount)
                    return
                except sqlite3.Error as exc:
                    if _is_corruption(exc) and attempt == 0:
                        self._recover(exc)
                        conn = self._conn
                        if conn is None:
                            return
                        continue
                    self._warn(f"pytest-opro: response cache write failed ({exc}); continuing without storing")
                    return

    def stats(self) -> dict[str, Any]:
        """Entries and on-disk size (bytes, including the WAL file)."""
        entries = 0
        with self._lock:
            conn = self._open()
            if conn is not None:
                try:
                    entries = int(conn.execute("SELECT count(*) FROM responses").fetchone()[0])
                except sqlite3.Error:
                    entries = 0
        size = 0
        for suffix in ("", "-wal"):
            try:
                size += os.path.getsize(str(self.path) + suffix)
            except OSError:
                pass
        return {
            "path": str(self.path),
            "mode": self.mode,
            "entries": entries,
            "size_bytes": size,
            "hits": self.hits,
            "misses": self.misses,
            "writes": self.writes,
        }

    def close(self) -> None:
        with self._lock:
            self._drop_connection()

    def __enter__(self) -> "ResponseCache":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"ResponseCache({str(self.directory)!r}, mode={self.mode!r})"


#: The SQLite implementation under the name the interface's other implementation mirrors.
SqliteCache = ResponseCache
#: URL schemes that select the Redis implementation.
REDIS_SCHEMES = ("redis://", "rediss://", "unix://")


def is_cache_url(value: object) -> bool:
    return isinstance(value, str) and value.startswith(REDIS_SCHEMES)


def open_cache(
    cache: Cache | str | Path | None,
    mode: str = "rw",
    *,
    url: str | None = None,
    ttl: float | None = None,
    scope: str | None = None,
    trust: Sequence[str] | None = None,
) -> Cache | None:
    """A response cache: an existing one as is; Redis for a ``redis://``/``rediss://`` URL (`url`
    or `cache`); SQLite for a directory; None for no cache (``cache=None`` or mode "off").

    Redis is reached at once: an unreachable server is a ConfigError naming the URL (without its
    password). `scope` and `trust` are Redis's trust scopes (see :mod:`pytest_opro.models.redis_cache`);
    the SQLite cache, one machine's own, has none.
    """
    if cache is not None and not isinstance(cache, (str, os.PathLike)) and isinstance(cache, Cache):
        return cache
    if mode == "off":
        return None
    if mode not in ("rw", "ro"):
        raise ConfigError(f"cache mode must be rw, ro or off, got {mode!r}")
    if url is None and is_cache_url(cache):
        url = str(cache)
    if url is not None:
        from pytest_opro.models.redis_cache import DEFAULT_TRUST, RedisCache

        trusted = DEFAULT_TRUST if trust is None else trust
        return RedisCache(url, mode=mode, ttl=ttl, scope=scope, trust=trusted)  # type: ignore[arg-type]
    if cache is None:
        return None
    return ResponseCache(cache, mode=mode, ttl=ttl)  # type: ignore[arg-type]


__all__ = [
    "BUSY_TIMEOUT_MS",
    "COMPRESS_OVER",
    "DB_NAME",
    "KEY_VERSION",
    "MODES",
    "REDIS_SCHEMES",
    "SECRET_PARAMS",
    "Cache",
    "CacheMode",
    "ResponseCache",
    "cache_key",
    "check_ttl",
    "clean_value",
    "decode_value",
    "decode_values",
    "encode_value",
    "is_cache_url",
    "open_cache",
]
