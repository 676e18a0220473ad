"""Response cache: one SQLite file shared safely by several processes (pytest-xdist workers).

A response is stored under a key that covers everything that changes the answer: the model string,
the messages, every sampling parameter and the sample index. A whole optimisation run can therefore
be replayed from the cache call for call. Secrets (API keys, headers) are never part of a key or a
value.
"""

from __future__ import annotations

import json
import os
import sqlite3
import threading
import time
import warnings
from pathlib import Path
from typing import Any, Literal, Mapping

from pytest_opro.errors import ConfigError
from pytest_opro.hashing import canonical_json, sha256_hex

CacheMode = Literal["rw", "ro", "off"]
MODES = ("rw", "ro", "off")
DB_NAME = "responses.sqlite3"
KEY_VERSION = 1
BUSY_TIMEOUT_MS = 30_000

# Parameters that never reach the cache key: they are secrets or transport details.
SECRET_PARAMS = frozenset({"api_key", "headers", "extra_headers", "api_base", "base_url", "timeout",
                           "num_retries", "max_retries", "metadata"})

_SCHEMA = """
CREATE TABLE IF NOT EXISTS responses (
    key TEXT PRIMARY KEY,
    value TEXT NOT NULL,
    created REAL NOT NULL
)
"""


def _canonical(obj: Any) -> str:
    return canonical_json(obj, default=repr)


def _is_corruption(exc: sqlite3.Error) -> bool:
    """True for 'file is not a database' and friends, False for lock contention."""
    if isinstance(exc, sqlite3.OperationalError):
        text = str(exc).lower()
        return "malformed" in text or "not a database" in text
    return isinstance(exc, sqlite3.DatabaseError)


class ResponseCache:
    """A persistent map from request key to response dict.

    ``mode`` is ``"rw"`` (read and write), ``"ro"`` (read only, never creates or changes the file)
    or ``"off"`` (every lookup misses, nothing is written).
    """

    def __init__(self, directory: str | os.PathLike[str] = ".opro_cache", mode: CacheMode = "rw") -> None:
        if mode not in MODES:
            raise ConfigError(f"cache mode {mode!r} is not one of {', '.join(MODES)}")
        self.directory = Path(directory)
        self.mode: CacheMode = mode
        self.path = self.directory / DB_NAME
        self._lock = threading.RLock()
        self._conn: sqlite3.Connection | None = None
        self._bypass = mode == "off"
        self._warned: set[str] = set()
        self.hits = 0
        self.misses = 0
        self.writes = 0

    # -- keys ----------------------------------------------------------------------------------
    @staticmethod
    def key(model: str, messages: list[dict], params: Mapping[str, Any], sample_index: int) -> str:
        """sha256 hex of the canonical JSON of everything that changes the answer."""
        clean = {k: v for k, v in dict(params or {}).items() if k not in SECRET_PARAMS}
        payload = {"v": KEY_VERSION, "model": model, "messages": messages, "params": clean,
                   "sample_index": int(sample_index)}
        return sha256_hex(_canonical(payload))

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
            conn = sqlite3.connect(uri, uri=True, timeout=BUSY_TIMEOUT_MS / 1000,
                                   check_same_thread=False, isolation_level=None)
            conn.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")
            conn.execute("SELECT count(*) FROM responses").fetchone()
            return conn
        self.directory.mkdir(parents=True, exist_ok=True)
        conn = sqlite3.connect(str(self.path), timeout=BUSY_TIMEOUT_MS / 1000,
                               check_same_thread=False, isolation_level=None)
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
    def get(self, key: str) -> dict | None:
        """The stored value, or None on a miss (or when the cache is off or unusable)."""
        with self._lock:
            conn = self._open()
            if conn is None:
                self.misses += 1
                return None
            try:
                row = conn.execute("SELECT value FROM responses WHERE key = ?", (key,)).fetchone()
            except sqlite3.Error as exc:
                if _is_corruption(exc):
                    self._recover(exc)
                self.misses += 1
                return None
        if row is None:
            self.misses += 1
            return None
        try:
            value = json.loads(row[0])
        except ValueError:
            self.misses += 1
            return None
        if not isinstance(value, dict):
            self.misses += 1
            return None
        self.hits += 1
        return value

    def put(self, key: str, value: dict) -> None:
        """Store ``value`` under ``key`` (no-op unless mode is "rw")."""
        if self.mode != "rw":
            return
        clean = {k: v for k, v in value.items() if k not in SECRET_PARAMS}
        data = _canonical(clean)
        with self._lock:
            conn = self._open()
            if conn is None:
                return
            for attempt in range(2):
                try:
                    conn.execute("INSERT OR REPLACE INTO responses (key, value, created) VALUES (?, ?, ?)",
                                 (key, data, time.time()))
                    self.writes += 1
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
        return {"path": str(self.path), "mode": self.mode, "entries": entries, "size_bytes": size,
                "hits": self.hits, "misses": self.misses, "writes": self.writes}

    def close(self) -> None:
        with self._lock:
            self._drop_connection()

    def __enter__(self) -> "ResponseCache":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"ResponseCache({str(self.directory)!r}, mode={self.mode!r})"


def open_cache(cache: ResponseCache | str | Path | None, mode: str = "rw") -> ResponseCache | None:
    """A ResponseCache from a directory, an existing cache, or None / mode "off" for no cache."""
    if isinstance(cache, ResponseCache):
        return cache
    if cache is None or mode == "off":
        return None
    if mode == "rw":
        return ResponseCache(cache, mode="rw")
    if mode == "ro":
        return ResponseCache(cache, mode="ro")
    raise ConfigError(f"cache mode must be rw, ro or off, got {mode!r}")
