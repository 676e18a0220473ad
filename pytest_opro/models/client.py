"""The one place that makes model calls: cache, concurrency limit, bounded retries, budget, accounting.

Calls go through litellm, except for OpenAI-compatible servers reached through an ``api_base``
(``openai/...`` or ``hosted_vllm/...``), which :mod:`pytest_opro.models.openai_http` calls directly at a
fraction of litellm's CPU per call (see ``ModelConfig.transport``). With a router
(:mod:`pytest_opro.models.router`, ``--opro-router``) every call goes through a ``litellm.Router``
instead. Retries are ours alone (litellm and the Router are called with ``num_retries=0``): bounded,
exponential backoff with jitter, honouring Retry-After. API keys are passed to the transport and
nowhere else.

The cache is anything with the :class:`pytest_opro.models.cache.Cache` interface (SQLite or Redis);
this module never asks which.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import random
import time
import weakref
from typing import Any, Awaitable, Mapping, Sequence, TypeVar

from pytest_opro.errors import BudgetExhausted, ConfigError, ProviderError
from pytest_opro.models import openai_http
from pytest_opro.models.config import LOCAL_PREFIX, Budget, ModelConfig
from pytest_opro.models.litellm_bridge import ensure_local, extract_text, get_litellm
from pytest_opro.models.pricing import response_cost, table_cost, usage_tokens
from pytest_opro.models.rate_limit import LocalRateLimitError
from pytest_opro.models.retry import (
    Retryable,
    first_line,
    is_retryable,
    provider_error,
    redact,
    retry_after_seconds,
)
from pytest_opro.models.usage import Completion, Ledger, ModelUsage

T = TypeVar("T")

RETRY_BASE = 0.5
RETRY_CAP = 20.0
DEFAULT_CONCURRENCY = 16


class _Counters:
    """Adds to several ModelUsage records at once (a call's model and its role): ``c.calls += 1``."""

    __slots__ = ("_targets",)

    def __init__(self, targets: tuple[ModelUsage, ...]) -> None:
        object.__setattr__(self, "_targets", targets)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._targets[0], name)

    def __setattr__(self, name: str, value: Any) -> None:
        delta = value - getattr(self._targets[0], name)
        for target in self._targets:
            setattr(target, name, getattr(target, name) + delta)


# --------------------------------------------------------------------------------------------
class LLMClient:
    """Makes chat calls (litellm, or direct HTTP for OpenAI-compatible servers) with caching, a
    concurrency limit, retries and a budget."""

    def __init__(
        self,
        *,
        cache: Any = None,
        concurrency: int = DEFAULT_CONCURRENCY,
        budget: Budget | None = None,
        ledger: Ledger | None = None,
        retry_base: float = RETRY_BASE,
        retry_cap: float = RETRY_CAP,
        rng: random.Random | None = None,
        router: Any = None,
    ) -> None:
        if concurrency < 1:
            raise ConfigError(f"concurrency must be >= 1, got {concurrency}")
        self.cache = cache
        self.router = router  # a pytest_opro.models.router.RouterBridge, or None
        self.concurrency = int(concurrency)
        self.budget = budget or Budget()
        self.ledger = ledger if ledger is not None else Ledger()
        self.retry_base = float(retry_base)
        self.retry_cap = float(retry_cap)
        self._rng = rng or random.Random()
        self._semaphores: "weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, asyncio.Semaphore]" = (
            weakref.WeakKeyDictionary()
        )
        self._http = openai_http.HTTPTransport(pool_size=self.concurrency)

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

    def _semaphore(self) -> asyncio.Semaphore:
        loop = asyncio.get_running_loop()
        sem = self._semaphores.get(loop)
        if sem is None:
            sem = self._semaphores[loop] = asyncio.Semaphore(self.concurrency)
        return sem

    def _delay(self, attempt: int, retry_after: float | None) -> float:
        if retry_after is not None:
            return min(self.retry_cap, retry_after)
        ceiling = min(self.retry_cap, self.retry_base * (2**attempt))
        return ceiling * (0.5 + 0.5 * self._rng.random())

    def _cache_key(self, config: ModelConfig, messages: list[dict], sample_index: int) -> str | None:
        cache = self.cache
        if cache is None or getattr(cache, "mode", "rw") == "off":
            return None
        return cache.key(config.model, messages, config.params, sample_index)

    @staticmethod
    def _from_cache(hit: dict | None) -> Completion | None:
        if hit is None or not isinstance(hit.get("text"), str):
            return None
        return Completion(
            text=hit["text"],
            prompt_tokens=int(hit.get("prompt_tokens") or 0),
            completion_tokens=int(hit.get("completion_tokens") or 0),
            cost_usd=hit.get("cost_usd"),
            cached=True,
        )

    async def complete(
        self, config: ModelConfig, messages: list[dict], *, sample_index: int = 0, role: str | None = None
    ) -> Completion:
        """One chat completion: from the cache when possible, else from the provider.

        `role` ("scorer", "optimizer", "judge") is what the call is for: the ledger counts usage per
        model and per role. Raises ProviderError when the call fails for good and BudgetExhausted
        when a budget limit is reached before the call (cache hits are never blocked).
        """
        key = self._cache_key(config, messages, sample_index)
        if key is not None:
            cached = self._from_cache(self.cache.get(key))
            if cached is not None:
                _Counters(self.ledger.usages(config.model, role)).cache_hits += 1
                return cached
        return await self._provider_call(config, messages, sample_index, key, role)

    async def _provider_call(
        self, config: ModelConfig, messages: list[dict], sample_index: int, key: str | None, role: str | None = None
    ) -> Completion:
        """The call after a cache miss; the answer is stored under `key` (None: not cached)."""
        usage = _Counters(self.ledger.usages(config.model, role))
        cache = self.cache
        router = self.router
        if router is not None and not router.knows(config.model):
            usage.failures += 1
            error = ProviderError(router.unknown_model(config.model))
            error.fatal = True  # type: ignore[attr-defined]
            raise error
        scrub = router.scrub if router is not None else (lambda text: redact(text, config.api_key))

        use_http = router is None and config.uses_http()
        if router is None:
            local = config.model.startswith(LOCAL_PREFIX)
            if local:
                ensure_local(config.model)
        else:  # a model_name whose deployments are all embedded models
            behind = router.deployments_of(config.model)
            local = bool(behind) and all(m.startswith(LOCAL_PREFIX) for m in behind)
        if local and float(config.params.get("temperature", 0) or 0) > 0 and "seed" not in config.params:
            # The embedded model samples reproducibly from a seed: the sample index (already in
            # the cache key) makes a run repeatable without the cache, each call its own draw.
            config = config.with_params(seed=sample_index)
        litellm = None if use_http else get_litellm()
        retries = 0
        attempt = 0
        started_call = False
        while True:
            sem = self._semaphore()
            async with sem:
                if not started_call:
                    reason = self.budget.check(self.ledger)
                    if reason:
                        raise BudgetExhausted(f"budget reached: {reason}; stopping before calling {config.model}")
                    usage.calls += 1
                    started_call = True
                t0 = time.monotonic()
                try:
                    if use_http:
                        response = await self._http_call(config, messages)
                        text = response.text
                    elif router is not None:
                        response = await self._router_call(router, config, messages)
                        text = extract_text(response)
                    else:
                        response = await self._call(litellm, config, messages)
                        text = extract_text(response)
                    if text is None:
                        raise Retryable("malformed response (no choices/message)")
                    if not text.strip() and not local:
                        # A remote empty reply is a glitch worth retrying; the embedded model is
                        # deterministic, so its empty answer is an answer (scored, not retried).
                        raise Retryable("empty content")
                except asyncio.CancelledError:
                    usage.seconds += time.monotonic() - t0
                    raise
                except Exception as exc:  # noqa: BLE001 - classified below
                    usage.seconds += time.monotonic() - t0
                    if isinstance(exc, Retryable):
                        cause, retry_after = exc.cause, exc.retry_after
                    elif isinstance(exc, LocalRateLimitError):
                        cause, retry_after = scrub(first_line(str(exc))), exc.retry_after
                    elif is_retryable(exc):
                        cause = scrub(first_line(str(exc) or type(exc).__name__))
                        retry_after = retry_after_seconds(exc)
                    else:
                        usage.failures += 1
                        if router is not None:
                            raise router.provider_error(litellm, config, exc) from None
                        raise provider_error(litellm, config, exc, scrub=scrub) from None
                    if attempt >= config.max_retries:
                        usage.failures += 1
                        raise ProviderError(
                            f"model {config.model}: {cause} (gave up after {attempt + 1} attempts)"
                        ) from None
                    delay = self._delay(attempt, retry_after)
                    attempt += 1
                    retries += 1
                    usage.retries += 1
                else:
                    usage.seconds += time.monotonic() - t0
                    break
            await asyncio.sleep(delay)  # outside the semaphore: others may proceed

        if use_http:
            prompt_tokens, completion_tokens = response.prompt_tokens, response.completion_tokens
            cost = table_cost(config.model, prompt_tokens, completion_tokens)
        else:
            prompt_tokens, completion_tokens = usage_tokens(response)
            cost = response_cost(litellm, response, config.model)
        usage.prompt_tokens += prompt_tokens
        usage.completion_tokens += completion_tokens
        if cost is None:
            usage.cost_unknown_calls += 1
        else:
            usage.cost_usd += cost
        if key is not None:
            cache.put(
                key,
                {
                    "text": text,
                    "prompt_tokens": prompt_tokens,
                    "completion_tokens": completion_tokens,
                    "cost_usd": cost,
                },
            )
        return Completion(
            text=text,
            prompt_tokens=prompt_tokens,
            completion_tokens=completion_tokens,
            cost_usd=cost,
            cached=False,
            retries=retries,
        )

    async def _call(self, litellm: Any, config: ModelConfig, messages: list[dict]) -> Any:
        kwargs: dict[str, Any] = dict(config.params)
        kwargs.update(model=config.model, messages=messages, timeout=config.timeout, num_retries=0)
        if config.api_base:
            kwargs["api_base"] = config.api_base
        if config.api_key:
            kwargs["api_key"] = config.api_key
        # Guard against providers that ignore the timeout (custom handlers, hung sockets).
        try:
            return await asyncio.wait_for(litellm.acompletion(**kwargs), timeout=config.timeout * 1.5 + 1.0)
        except asyncio.TimeoutError:
            raise Retryable(f"timed out after {config.timeout:g}s") from None

    async def _router_call(self, router: Any, config: ModelConfig, messages: list[dict]) -> Any:
        # The guard also covers the wait for a paced deployment's slot (at most its max_wait).
        guard = config.timeout * 1.5 + 1.0 + router.max_wait
        try:
            return await asyncio.wait_for(
                router.acompletion(config.model, messages, config.params, config.timeout), timeout=guard
            )
        except asyncio.TimeoutError:
            raise Retryable(f"timed out after {config.timeout:g}s") from None

    async def _http_call(self, config: ModelConfig, messages: list[dict]) -> openai_http.ChatResult:
        return await self._http.chat(
            model=config.model,
            messages=messages,
            params=config.params,
            api_base=config.api_base,
            api_key=config.api_key,
            timeout=config.timeout,
        )

    async def complete_many(
        self, config: ModelConfig, requests: Sequence[tuple[list[dict[str, Any]], int]], *, role: str | None = None
    ) -> list[Completion | ProviderError]:
        """Run many calls concurrently; a call that failed for good comes back as its ProviderError.

        BudgetExhausted propagates once the calls already under way have finished (they are paid
        for, so their answers are cached rather than thrown away). Errors every call would repeat
        (authentication, unknown model) propagate at once and cancel the remaining calls.
        """

        # One cache round trip for the whole batch (a Redis MGET, an SQLite IN query): a warm gate
        # costs one lookup per batch, not one per call.
        keys = [self._cache_key(config, messages, index) for messages, index in requests]
        found: list[Completion | None] = [None] * len(requests)
        wanted = [i for i, key in enumerate(keys) if key is not None]
        if wanted:
            hits = (
                self.cache.get_many([keys[i] for i in wanted])
                if hasattr(self.cache, "get_many")
                else [self.cache.get(keys[i]) for i in wanted]
            )
            usage = _Counters(self.ledger.usages(config.model, role))
            for i, hit in zip(wanted, hits):
                found[i] = self._from_cache(hit)
                if found[i] is not None:
                    usage.cache_hits += 1

        async def one(i: int, messages: list[dict], sample_index: int) -> Completion | ProviderError | BudgetExhausted:
            try:
                return await self._provider_call(config, messages, sample_index, keys[i], role)
            except BudgetExhausted as exc:
                return exc
            except ProviderError as exc:
                if getattr(exc, "fatal", False):
                    raise
                return exc

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
