"""The Redis response cache: one cache shared by every CI runner (``--opro-cache-url redis://host:6379/0``).

It has the SQLite cache's semantics exactly (see :mod:`pytest_opro.models.cache`): the same key,
modes ``rw``/``ro``/``off``, the first writer of a key wins (``SET NX``: a replayed run never sees an
answer change under it), an optional TTL (``SET ... EX``) and values zlib-compressed when large.

- The URL may be ``redis://`` or ``rediss://`` (TLS). The password comes from the URL
  (``redis://:PASSWORD@host:6379/0``) or, when the URL has none, from the environment variable
  :data:`PASSWORD_ENV` (``OPRO_REDIS_PASSWORD``). It is never written anywhere: every message
  names the URL through :func:`redact_url`.
- A user name (Redis 6+ ACL users) comes from the URL (``redis://USER:PASSWORD@host``) or from
  :data:`USERNAME_ENV` (``OPRO_REDIS_USERNAME``); it is hidden like the password.
- Unreachable when opened: one :class:`~pytest_opro.errors.ConfigError` naming the URL.
- Lost mid-run: one warning, then every lookup misses and nothing is written for the rest of the
  process; calls go to the provider, so the run's result does not change. Entries written before
  survive as far as the server persists them (run Redis with ``--appendonly yes``).

Trust scopes (``--opro-cache-scope``, ``--opro-cache-trust``) keep the default branch's answers
apart from everyone else's, so that a job which can reach Redis cannot plant answers the default
branch's gate will replay. The key layout (the sha256 is :func:`~pytest_opro.models.cache_format.cache_key`,
the same in every layout)::

    opro:resp:v1:<sha256>                       no scope (the layout of every earlier version)
    opro:resp:v1:trusted:<scope>:<sha256>       a trusted scope (the default branch's)
    opro:resp:v1:untrusted:<scope>:<sha256>     any other scope (a branch, a pull request)

A scoped run writes only under its own scope and reads its own scope first, then the scopes it
trusts; a run whose own scope is trusted reads only its own. Redis enforces the split with two ACL
users (:data:`ACL_SETUP`): only the trusted user may write ``trusted:`` keys. A write Redis refuses
(``NOPERM``) warns once and leaves that answer unstored; it never goes to another scope.

Needs the ``redis`` package: ``pip install "pytest-opro[redis]"``.
"""

from __future__ import annotations

import os
import re
import threading
import warnings
from typing import Any, Iterable, Sequence
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from pytest_opro.errors import ConfigError
from pytest_opro.models.cache_format import (
    MODES,
    SCOPE_FIELD,
    CacheMode,
    cache_key,
    check_ttl,
    decode_values,
    encode_value,
)

#: Environment variable holding the Redis password when the URL has none.
PASSWORD_ENV = "OPRO_REDIS_PASSWORD"
#: Environment variable holding the Redis user name (an ACL user) when the URL has none.
USERNAME_ENV = "OPRO_REDIS_USERNAME"
#: Every key this cache writes starts with this (the rest is the sha256 of :func:`cache_key`).
KEY_PREFIX = "opro:resp:v1:"
#: Where the keys of trusted scopes and of all other scopes live, after :data:`KEY_PREFIX`.
TRUSTED, UNTRUSTED = "trusted", "untrusted"
#: The scope a run trusts when not told otherwise: the usual name of the default branch.
DEFAULT_TRUST = ("main",)
#: A scope name: letters, digits, ``.``, ``_`` and ``-``, starting with a letter or digit.
SCOPE_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")
SCOPE_MAX = 64
#: What a scope name may hold, for error messages.
SCOPE_RULE = (
    f"1-{SCOPE_MAX} letters, digits, '.', '_' or '-', starting with a letter or digit "
    "(a branch such as feature/x can be scoped as feature-x)"
)
#: The Redis 7 ACL rules that make the scopes hold (README "Scaling out"); the passwords are placeholders.
#: ``trusted`` reads and writes only trusted scopes; ``untrusted`` reads every entry and writes only
#: untrusted scopes; neither may run anything but the commands the cache sends.
ACL_SETUP = (
    "ACL SETUSER trusted on >TRUSTED_PASSWORD resetkeys -@all "
    "+ping +select +mget +set +scan %RW~opro:resp:v1:trusted:*",
    "ACL SETUSER untrusted on >UNTRUSTED_PASSWORD resetkeys -@all "
    "+ping +select +mget +set +scan %R~opro:resp:v1:* %RW~opro:resp:v1:untrusted:*",
    "ACL SETUSER default off",
    "ACL SAVE",
)
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
        # the user name is hidden too (an ACL user says which trust a job has); a lone userinfo may
        # be a token pasted there
        if ":" in userinfo:
            netloc = f"{'***' if userinfo.split(':', 1)[0] else ''}:***@{host}"
        else:
            netloc = f"***@{host}"
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
    """Everything in `url` (or the environment) that must not be printed: the password, the user
    name, and a lone userinfo."""
    found = [url_password(url) or "", os.environ.get(PASSWORD_ENV, ""), os.environ.get(USERNAME_ENV, "")]
    try:
        netloc = urlsplit(url).netloc
    except ValueError:
        return ()
    if "@" in netloc:
        userinfo = netloc.rsplit("@", 1)[0]
        found.append(userinfo.split(":", 1)[0])
    return tuple(s for s in found if len(s) >= 3)


def check_scope(name: str) -> str:
    """`name` when it is a valid cache scope; ValueError saying what a scope may hold otherwise.

    A scope becomes part of Redis keys and of ACL key patterns, so nothing that could leave its
    prefix is accepted: no ``/``, ``:``, glob characters (``*?[]``), hash tags (``{}``), whitespace
    or control characters, and at most 64 characters.
    """
    if not isinstance(name, str) or not SCOPE_PATTERN.fullmatch(name):
        name = str(name)
        shown = repr(name[:40]) + f"... ({len(name)} characters)" if len(name) > 40 else repr(name)
        raise ValueError(f"cache scope {shown} is not a valid scope name: it must be {SCOPE_RULE}")
    return name


def parse_scopes(value: str | Iterable[str]) -> tuple[str, ...]:
    """Scope names from a comma- or space-separated string (or a list), each checked; ``none``: no scope."""
    items = value.replace(",", " ").split() if isinstance(value, str) else [str(v).strip() for v in value]
    if [item.lower() for item in items] == ["none"]:
        return ()
    return tuple(dict.fromkeys(check_scope(item) for item in items))


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
    if not _url_username(url) and os.environ.get(USERNAME_ENV):
        kwargs["username"] = os.environ[USERNAME_ENV]
    return redis.Redis.from_url(url, **kwargs)


def _url_username(url: str) -> str | None:
    try:
        return urlsplit(url).username or None
    except ValueError:
        return None


def refused(exc: BaseException) -> bool:
    """True when Redis refused a command for lack of ACL permission (``NOPERM``)."""
    import redis

    return isinstance(exc, redis.exceptions.NoPermissionError) or str(exc).startswith("NOPERM")


def connection_errors() -> tuple[type[BaseException], ...]:
    """The exceptions that mean the server is gone (connection refused, reset or timed out)."""
    import redis

    return (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError, OSError)


def describe_error(exc: BaseException, *secrets: str | None) -> str:
    text = " ".join(str(exc).split()) or type(exc).__name__
    return scrub(f"{type(exc).__name__}: {text}", *secrets)


class RedisCache:
    """The response cache in one Redis database, shared by many processes and machines.

    ``scope``: the trust scope this run writes (None: no scope, the layout of earlier versions);
    ``trust``: the scopes it reads after its own (ignored without a scope, and when its own scope
    is one of them: a trusted run reads only what its own scope holds).
    """

    def __init__(
        self,
        url: str,
        mode: CacheMode = "rw",
        ttl: float | None = None,
        *,
        key_prefix: str = KEY_PREFIX,
        scope: str | None = None,
        trust: Sequence[str] = DEFAULT_TRUST,
    ) -> None:
        if mode not in MODES:
            raise ConfigError(f"cache mode {mode!r} is not one of {', '.join(MODES)}")
        try:
            self.url = check_url(url)
            self.scope = None if scope is None else check_scope(scope)
            self.trust = parse_scopes(trust)
        except ValueError as exc:
            raise ConfigError(f"response cache: {exc}") from None
        self.mode: CacheMode = mode
        self.ttl = check_ttl(ttl)
        self.location = redact_url(self.url)
        self.key_prefix = key_prefix
        #: The scopes read, in order, each with the prefix of its keys; the first is the one written.
        self.reads: tuple[tuple[str | None, str], ...] = self._layout()
        self._secrets = url_secrets(self.url)
        self._lock = threading.Lock()
        self._warned: set[str] = set()
        self._lost = False
        self.hits = 0
        self.misses = 0
        self.writes = 0
        self.refused_writes = 0  # SET NX found the key already written (by another run or process)
        self.denied_writes = 0  # Redis refused the write (NOPERM: this user may not write the scope)
        self.hits_by_scope: dict[str, int] = {}
        self._client: Any = None
        if mode != "off":
            self._client = self._open()

    def _layout(self) -> tuple[tuple[str | None, str], ...]:
        if self.scope is None:
            return ((None, self.key_prefix),)
        order = [self.scope] if self.scope in self.trust else [self.scope, *self.trust]
        return tuple((name, self.scope_prefix(name)) for name in order)

    def scope_prefix(self, scope: str) -> str:
        """The prefix of `scope`'s keys: ``opro:resp:v1:trusted:main:`` for a trusted scope."""
        return f"{self.key_prefix}{TRUSTED if scope in self.trust else UNTRUSTED}:{check_scope(scope)}:"

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
        """Where this run writes `key` (its own scope)."""
        return self.reads[0][1] + key

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
    def get(self, key: str) -> dict[str, Any] | None:
        """The stored value, or None on a miss (or when the cache is off or lost)."""
        return self.get_many([key])[0]

    def get_many(self, keys: list[str]) -> list[dict[str, Any] | None]:
        """The stored values of `keys`, in order, in one round trip (``MGET``).

        With trusted scopes, one ``MGET`` asks for every key in every scope read, and each key's
        value comes from the first scope that has it; a scoped hit names its scope in
        :data:`~pytest_opro.models.cache_format.SCOPE_FIELD`.
        """
        if not keys:
            return []
        reads = self.reads
        blobs: list[Any] = [None] * (len(keys) * len(reads))
        if self.available:
            try:
                blobs = self._client.mget([prefix + k for _, prefix in reads for k in keys])
            except Exception as exc:  # noqa: BLE001 - see _failed
                self._failed(exc)
                blobs = [None] * (len(keys) * len(reads))
        found, _ = decode_values(blobs)
        out: list[dict[str, Any] | None] = []
        per_scope: dict[str, int] = {}
        for i in range(len(keys)):
            value: dict[str, Any] | None = None
            for r, (scope, _) in enumerate(reads):
                value = found[r * len(keys) + i]
                if value is not None:
                    value.pop(SCOPE_FIELD, None)  # only this cache says where a hit came from
                    if scope is not None:
                        value[SCOPE_FIELD] = scope
                        per_scope[scope] = per_scope.get(scope, 0) + 1
                    break
            out.append(value)
        hits = sum(value is not None for value in out)
        with self._lock:
            self.hits += hits
            self.misses += len(out) - hits
            for scope, count in per_scope.items():
                self.hits_by_scope[scope] = self.hits_by_scope.get(scope, 0) + count
        return out

    def put(self, key: str, value: dict[str, Any]) -> None:
        """Store `value` under `key` in this run's own scope unless the key exists (first writer
        wins); only in mode "rw". A write Redis refuses (``NOPERM``) warns once and stores nothing."""
        if self.mode != "rw" or not self.available:
            return
        blob = encode_value(value)
        try:
            stored = self._client.set(
                self._redis_key(key), blob, nx=True, ex=max(1, int(round(self.ttl))) if self.ttl else None
            )
        except Exception as exc:  # noqa: BLE001 - see _failed
            if refused(exc):
                self._denied()
            else:
                self._failed(exc)
            return
        with self._lock:
            if stored:
                self.writes += 1
            else:
                self.refused_writes += 1

    def _denied(self) -> None:
        with self._lock:
            self.denied_writes += 1
        scope = self.reads[0][0]
        where = "without a scope" if scope is None else f"in cache scope {scope!r}"
        whose = (
            "only the trusted Redis user (the default branch's jobs) may write a trusted scope"
            if scope is not None and scope in self.trust
            else "check which Redis user this job has and which scope it writes (--opro-cache-scope)"
        )
        self._warn(
            f"pytest-opro: response cache {self.location} refused to store answers {where} (NOPERM: this Redis "
            f"user may not write there; {whose}); going on without storing them"
        )

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
            "denied_writes": self.denied_writes,
            "hits_by_scope": dict(self.hits_by_scope),
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
        scope = "" if self.scope is None else f", scope={self.scope!r}"
        return f"RedisCache({self.location!r}, mode={self.mode!r}{scope})"
