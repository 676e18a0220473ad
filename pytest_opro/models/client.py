"""The one place that makes model calls: cache, concurrency limit, bounded retries, budget, accounting.

How a call reaches its model is a :class:`~pytest_opro.models.transport.Transport`, chosen once per
model configuration: litellm, the direct OpenAI-compatible HTTP client for servers reached through an
``api_base`` (``openai/...`` or ``hosted_vllm/...``, at a fraction of litellm's CPU per call; see
``ModelConfig.transport``), or a ``litellm.Router`` for every call when there is a router
(:mod:`pytest_opro.models.router`, ``--opro-router``). Retries are ours alone (litellm and the Router
are called with ``num_retries=0``): bounded, exponential backoff with jitter, honouring Retry-After.
API keys are passed to the transport and nowhere else.

The cache is anything with the :class:`pytest_opro.models.cache_format.Cache` interface (SQLite or
Redis); this module never asks which.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import random
import time
import weakref
from dataclasses import dataclass
from typing import Any, Awaitable, Callable, Mapping, Sequence, TypeVar

from pytest_opro.errors import BudgetExhausted, ConfigError, FatalProviderError, ProviderError
from pytest_opro.models.cache_format import SCOPE_FIELD, Cache
from pytest_opro.models.config import Budget, ModelConfig
from pytest_opro.models.retry import Retryable
from pytest_opro.models.router import RouterBridge
from pytest_opro.models.transport import (
    DirectHTTPTransport,
    LiteLLMTransport,
    RouterTransport,
    Sent,
    Transport,
    choose_transport,
)
from pytest_opro.models.usage import Completion, Ledger, ModelUsage

T = TypeVar("T")

RETRY_BASE = 0.5
RETRY_CAP = 20.0
DEFAULT_CONCURRENCY = 16


@dataclass(frozen=True)
class BatchProgress:
    """How far one :meth:`LLMClient.complete_many` batch is: calls answered (cache hits included) of
    all its calls, and the seconds since it started."""

    role: str | None
    done: int
    total: int
    elapsed: float


ProgressCallback = Callable[[BatchProgress], None]


class LLMClient:
    """Makes chat calls through a transport per model configuration, with caching, a concurrency
    limit, retries, a budget and a ledger of what they cost."""

    def __init__(
        self,
        *,
        cache: Cache | None = None,
        concurrency: int = DEFAULT_CONCURRENCY,
        budget: Budget | None = None,
        ledger: Ledger | None = None,
        retry_base: float = RETRY_BASE,
        retry_cap: float = RETRY_CAP,
        rng: random.Random | None = None,
        router: RouterBridge | None = None,
        on_progress: ProgressCallback | None = None,
    ) -> None:
        if concurrency < 1:
            raise ConfigError(f"concurrency must be >= 1, got {concurrency}")
        self.cache = cache
        self.router = router
        self.concurrency = int(concurrency)
        self.budget = budget or Budget()
        self.ledger = ledger if ledger is not None else Ledger()
        self.retry_base = float(retry_base)
        self.retry_cap = float(retry_cap)
        #: Told how far each batch is, when it starts and as each of its calls is answered.
        self.on_progress = on_progress
        self._rng = rng or random.Random()
        self._semaphores: "weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, asyncio.Semaphore]" = (
            weakref.WeakKeyDictionary()
        )
        self._litellm = LiteLLMTransport()
        self._http = DirectHTTPTransport(pool_size=self.concurrency)
        self._router = RouterTransport(router) if router is not None else None
        self._transports: dict[tuple[str, str, str | None], Transport] = {}

    # -- the Completer protocol of pytest_opro.opro ----------------------------------------------
    def usage_totals(self) -> ModelUsage:
        """Calls, cache hits, tokens and cost so far, over every model."""
        return self.ledger.total()

    def usage_state(self) -> dict[str, Any]:
        """Usage per model and per role as plain data, for checkpoints."""
        return self.ledger.state()

    def restore_usage(self, state: Mapping[str, Any]) -> None:
        """Count usage saved by :meth:`usage_state` (a resumed run counts what it paid before)."""
        self.ledger.merge(Ledger.from_state(state))

    # -- the common path ----------------------------------------------------------------------------
    def transport(self, config: ModelConfig) -> Transport:
        """How `config` is reached, chosen once per model, transport choice and endpoint."""
        key = (config.model, config.transport, config.api_base)
        found = self._transports.get(key)
        if found is None:
            found = self._transports[key] = choose_transport(
                config, router=self._router, http=self._http, litellm=self._litellm
            )
        return found

    def _semaphore(self) -> asyncio.Semaphore:
        loop = asyncio.get_running_loop()
        sem = self._semaphores.get(loop)
        if sem is None:
            sem = self._semaphores[loop] = asyncio.Semaphore(self.concurrency)
        return sem

    def _delay(self, attempt: int, retry_after: float | None) -> float:
        if retry_after is not None:
            return min(self.retry_cap, retry_after)
        ceiling = min(self.retry_cap, self.retry_base * (2.0**attempt))
        return ceiling * (0.5 + 0.5 * self._rng.random())

    def _cache_key(self, config: ModelConfig, messages: list[dict[str, Any]], sample_index: int) -> str | None:
        if self.cache is None or self.cache.mode == "off":
            return None
        return self.cache.key(config.model, messages, config.params, sample_index)

    @staticmethod
    def _from_cache(hit: dict[str, Any] | None) -> Completion | None:
        if hit is None or not isinstance(hit.get("text"), str):
            return None
        return Completion(
            text=hit["text"],
            prompt_tokens=int(hit.get("prompt_tokens") or 0),
            completion_tokens=int(hit.get("completion_tokens") or 0),
            cost_usd=hit.get("cost_usd"),
            cached=True,
            cache_scope=hit.get(SCOPE_FIELD),
        )

    async def complete(
        self,
        config: ModelConfig,
        messages: list[dict[str, Any]],
        *,
        sample_index: int = 0,
        role: str | None = None,
    ) -> Completion:
        """One chat completion: from the cache when possible, else from the provider.

        `role` ("scorer", "optimizer", "judge") is what the call is for: the ledger counts usage per
        model and per role. Raises ProviderError when the call fails for good and BudgetExhausted
        when a budget limit is reached before the call (cache hits are never blocked).
        """
        key = self._cache_key(config, messages, sample_index)
        if key is not None and self.cache is not None:
            cached = self._from_cache(self.cache.get(key))
            if cached is not None:
                self.ledger.add(config.model, role, cache_hits=1)
                self.ledger.scope_hit(cached.cache_scope)
                return cached
        return await self._provider_call(config, messages, sample_index, key, role)

    async def _provider_call(
        self,
        config: ModelConfig,
        messages: list[dict[str, Any]],
        sample_index: int,
        key: str | None,
        role: str | None = None,
    ) -> Completion:
        """The call after a cache miss; the answer is stored under `key` (None: not cached)."""
        model = config.model
        transport = self.transport(config)
        try:
            local = transport.prepare(config)
        except FatalProviderError:
            self.ledger.add(model, role, failures=1)
            raise
        if local and float(config.params.get("temperature", 0) or 0) > 0 and "seed" not in config.params:
            # The embedded model samples reproducibly from a seed: the sample index (already in
            # the cache key) makes a run repeatable without the cache, each call its own draw.
            config = config.with_params(seed=sample_index)
        sent, retries = await self._send(transport, config, messages, local, role)
        text = sent.text or ""
        self.ledger.add(
            model,
            role,
            prompt_tokens=sent.prompt_tokens,
            completion_tokens=sent.completion_tokens,
            cost_usd=sent.cost_usd or 0.0,
            cost_unknown_calls=int(sent.cost_usd is None),
        )
        if key is not None and self.cache is not None:
            value = {"text": text, "prompt_tokens": sent.prompt_tokens, "completion_tokens": sent.completion_tokens}
            self.cache.put(key, {**value, "cost_usd": sent.cost_usd})
        return Completion(
            text, sent.prompt_tokens, sent.completion_tokens, sent.cost_usd, cached=False, retries=retries
        )

    async def _send(
        self, transport: Transport, config: ModelConfig, messages: list[dict[str, Any]], local: bool, role: str | None
    ) -> tuple[Sent, int]:
        """Send with bounded retries under the concurrency limit; the answer and the retries it took.

        The budget is checked and the call counted once, before the first attempt."""
        model, attempt, started = config.model, 0, False
        while True:
            async with self._semaphore():
                if not started:
                    reason = self.budget.check(self.ledger)
                    if reason:
                        raise BudgetExhausted(f"budget reached: {reason}; stopping before calling {model}")
                    self.ledger.add(model, role, calls=1)
                    started = True
                t0 = time.monotonic()
                try:
                    sent = await transport.send(config, messages)
                    if sent.text is None:
                        raise Retryable("malformed response (no choices/message)")
                    if not sent.text.strip() and not local:
                        # A remote empty reply is a glitch worth retrying; the embedded model is
                        # deterministic, so its empty answer is an answer (scored, not retried).
                        raise Retryable("empty content")
                except asyncio.CancelledError:
                    self.ledger.add(model, role, seconds=time.monotonic() - t0)
                    raise
                except Exception as exc:  # noqa: BLE001 - the transport says what it means
                    self.ledger.add(model, role, seconds=time.monotonic() - t0)
                    failure = transport.failure(config, exc)
                    if isinstance(failure, ProviderError):
                        self.ledger.add(model, role, failures=1)
                        raise failure from None
                    if attempt >= config.max_retries:
                        self.ledger.add(model, role, failures=1)
                        raise ProviderError(
                            f"model {model}: {failure.cause} (gave up after {attempt + 1} attempts)"
                        ) from None
                    delay = self._delay(attempt, failure.retry_after)
                    attempt += 1
                    self.ledger.add(model, role, retries=1)
                else:
                    self.ledger.add(model, role, seconds=time.monotonic() - t0)
                    return sent, attempt
            await asyncio.sleep(delay)  # outside the semaphore: others may proceed

    async def complete_many(
        self, config: ModelConfig, requests: Sequence[tuple[list[dict[str, Any]], int]], *, role: str | None = None
    ) -> list[Completion | ProviderError]:
        """Run many calls concurrently; a call that failed for good comes back as its ProviderError.

        BudgetExhausted propagates once the calls already under way have finished (they are paid
        for, so their answers are cached rather than thrown away). Errors every call would repeat
        (authentication, unknown model) propagate at once and cancel the remaining calls.
        """

        started = time.monotonic()
        # One cache round trip for the whole batch (a Redis MGET, an SQLite IN query): a warm gate
        # costs one lookup per batch, not one per call.
        keys = [self._cache_key(config, messages, index) for messages, index in requests]
        found: list[Completion | None] = [None] * len(requests)
        wanted = [i for i, key in enumerate(keys) if key is not None]
        if wanted and self.cache is not None:
            hits = self.cache.get_many([key for key in (keys[i] for i in wanted) if key is not None])
            for i, hit in zip(wanted, hits):
                completion = found[i] = self._from_cache(hit)
                if completion is not None:
                    self.ledger.scope_hit(completion.cache_scope)
            if any(found):
                self.ledger.add(config.model, role, cache_hits=sum(hit is not None for hit in found))

        answered = sum(hit is not None for hit in found)

        def report() -> None:
            if self.on_progress is not None:
                self.on_progress(BatchProgress(role, answered, len(requests), time.monotonic() - started))

        async def one(
            i: int, messages: list[dict[str, Any]], sample_index: int
        ) -> Completion | ProviderError | BudgetExhausted:
            nonlocal answered
            try:
                answer: Completion | ProviderError | BudgetExhausted = await self._provider_call(
                    config, messages, sample_index, keys[i], role
                )
            except BudgetExhausted as exc:
                answer = exc
            except FatalProviderError:
                raise
            except ProviderError as exc:
                answer = exc
            answered += 1
            report()
            return answer

        report()

        tasks = {
            i: asyncio.ensure_future(one(i, messages, index))
            for i, (messages, index) in enumerate(requests)
            if found[i] is None
        }
        try:
            done = dict(zip(tasks, await asyncio.gather(*tasks.values()))) if tasks else {}
            results = [found[i] if found[i] is not None else done[i] for i in range(len(requests))]
        except BaseException:
            for task in tasks.values():
                task.cancel()
            await asyncio.gather(*tasks.values(), return_exceptions=True)
            raise
        for result in results:
            if isinstance(result, BudgetExhausted):
                raise result
        return results  # type: ignore[return-value]


def run_sync(coro: Awaitable[T]) -> T:
    """Run a coroutine from synchronous code, even when an event loop is already running."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(coro)  # type: ignore[arg-type]
    with concurrent.futures.ThreadPoolExecutor(max_workers=1, thread_name_prefix="pytest-opro") as pool:
        return pool.submit(asyncio.run, coro).result()  # type: ignore[arg-type]
