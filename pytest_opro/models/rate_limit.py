"""Pacing: hold a deployment's request rate as an even flow, shared by every process through Redis.

litellm's Router counts each deployment's ``rpm`` in calendar-minute windows (and, with Redis, syncs
the counters every 0.1 s): it lets the whole minute's allowance go out in the first second, so a
provider that also limits per second answers with 429s. ``bench/RESULTS.md`` ("Scaling out") has the
figures. This module is the smallest limiter that holds such a limit across processes: GCRA (the
"generic cell rate algorithm", a leaky bucket kept as one timestamp per deployment), where each
request reserves the next free slot at ``rpm / 60`` requests per second. With Redis the timestamp
lives in Redis and one Lua script reserves the slot atomically, on Redis's clock (runners' clocks may
differ); without Redis it lives in this process.

A request whose slot is more than ``max_wait`` seconds away is not reserved: :class:`LocalRateLimitError`
tells the model client to wait and retry it, like a 429.
"""

from __future__ import annotations

import asyncio
import threading
import time
import warnings
from typing import Any

SCRIPT = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local interval = tonumber(ARGV[1])
local tolerance = tonumber(ARGV[2])
local max_wait = tonumber(ARGV[3])
local tat = tonumber(redis.call('GET', KEYS[1]) or '0')
if tat < now then tat = now end
local wait = tat - tolerance - now
if wait < 0 then wait = 0 end
if wait > max_wait then return {0, math.floor(wait)} end
local new_tat = math.floor(tat + interval)
redis.call('SET', KEYS[1], string.format('%d', new_tat), 'PX', math.floor((new_tat - now) / 1000) + 1000)
return {1, math.floor(wait)}
"""
KEY_PREFIX = "opro:pace:"


class LocalRateLimitError(Exception):
    """The deployment's next free slot is too far away: wait ``retry_after`` seconds and try again.

    Raised before any request is sent; the model client retries it like a 429.
    """

    def __init__(self, message: str, retry_after: float) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class _LocalBucket:
    """GCRA in this process (the fallback without Redis)."""

    def __init__(self) -> None:
        self._tat: dict[str, float] = {}
        self._lock = threading.Lock()

    def reserve(self, key: str, interval: float, tolerance: float, max_wait: float) -> tuple[bool, float]:
        with self._lock:
            now = time.monotonic()
            tat = max(self._tat.get(key, now), now)
            wait = max(0.0, tat - tolerance - now)
            if wait > max_wait:
                return False, wait
            self._tat[key] = tat + interval
            return True, wait


class Pacer:
    """Reserves request slots per deployment key; shared through Redis when `redis_url` is given.

    ``burst``: requests that may go out back to back after an idle spell (1: strictly even).
    """

    def __init__(
        self, redis_url: str | None = None, *, burst: int = 1, max_wait: float = 60.0, key_prefix: str = KEY_PREFIX
    ) -> None:
        self.redis_url = redis_url
        self.burst = max(1, int(burst))
        self.max_wait = float(max_wait)
        self.key_prefix = key_prefix
        self._local = _LocalBucket()
        self._client: Any = None
        self._script: Any = None
        self._lost = False
        self._lock = threading.Lock()
        self.waited = 0.0
        self.reserved = 0
        self.refused = 0

    @property
    def shared(self) -> bool:
        return self.redis_url is not None and not self._lost

    def _redis(self) -> Any:
        if self._client is None:
            with self._lock:
                if self._client is None:
                    from pytest_opro.models.redis_cache import connect

                    client = connect(self.redis_url or "")
                    self._script = client.register_script(SCRIPT)
                    self._client = client
        return self._client

    def _lose(self, exc: BaseException) -> None:
        from pytest_opro.models.redis_cache import describe_error, redact_url, url_secrets

        self._lost = True
        location = redact_url(self.redis_url or "")
        warnings.warn(
            f"pytest-opro: rate limiter's Redis {location} unreachable "
            f"({describe_error(exc, *url_secrets(self.redis_url or ''))}); pacing each process on its own "
            "from now on",
            RuntimeWarning,
            stacklevel=3,
        )

    def reserve(self, key: str, per_second: float) -> tuple[bool, float]:
        """(reserved, seconds to wait) for one request on `key` at `per_second` requests per second."""
        interval = 1.0 / per_second
        tolerance = (self.burst - 1) * interval
        if self.shared:
            try:
                self._redis()
                ok, wait_us = self._script(
                    keys=[self.key_prefix + key],
                    args=[int(interval * 1e6), int(tolerance * 1e6), int(self.max_wait * 1e6)],
                )
                return bool(ok), int(wait_us) / 1e6
            except Exception as exc:  # noqa: BLE001 - any Redis failure: pace locally instead
                self._lose(exc)
        return self._local.reserve(key, interval, tolerance, self.max_wait)

    async def acquire(self, key: str, per_second: float, label: str = "deployment") -> float:
        """Wait for the next slot of `key`; LocalRateLimitError when it is beyond ``max_wait``."""
        ok, wait = self.reserve(key, per_second)
        if not ok:
            self.refused += 1
            raise LocalRateLimitError(
                f"{label} at its request rate ({per_second * 60:g} rpm): next slot in {wait:.1f}s",
                retry_after=max(0.05, wait - self.max_wait / 2),
            )
        self.reserved += 1
        if wait > 0:
            self.waited += wait
            await asyncio.sleep(wait)
        return wait

    def close(self) -> None:
        client, self._client = self._client, None
        if client is not None:
            try:
                client.close()
            except Exception:  # noqa: BLE001
                pass
