"""The one place that makes model calls: cache, concurrency limit, bounded retries, budget, accounting.

Calls go through litellm, except for OpenAI-compatible servers reached through an ``api_base``
(``openai/...`` or ``hosted_vllm/...``), which :mod:`pytest_opro.models.openai_http` calls directly at a
fraction of litellm's CPU per call (see ``ModelConfig.transport``). Retries are ours alone (litellm is
called with ``num_retries=0``): bounded, exponential backoff with jitter, honouring Retry-After.
API keys are passed to the transport and nowhere else.
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
    ) -> None:
        if concurrency < 1:
            raise ConfigError(f"concurrency must be >= 1, got {concurrency}")
        self.cache = cache
        self.concurrency = int(concurrency)
        self.budget = budget or Budget()
        self.ledger = ledger if ledger is not None else Ledger()
        self.retry_base = float(retry_base)
        self.retry_cap = float(retry_cap)
        self._rng = rng or random.Random()
        self._semaphores: "weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, asyncio.Semaphore]" = (
            weakref.WeakKeyDictionary())
        self._http = openai_http.HTTPTransport(pool_size=self.concurrency)

    # -- the Completer protocol of pytest_opro.opro ----------------------------------------------
    def usage_totals(self) -> ModelUsage:
        """Calls, cache hits, tokens and cost so far, over every model."""
        return self.ledger.total()

    def usage_state(self) -> dict[str, Any]:
        """Usage per model as plain data, for checkpoints."""
        return self.ledger.to_dict()

    def restore_usage(self, state: Mapping[str, Any]) -> None:
        """Count usage saved by :meth:`usage_state` (a resumed run counts what it paid before)."""
        self.ledger.merge(Ledger.from_dict(state))

    def _semaphore(self) -> asyncio.Semaphore:
        loop = asyncio.get_running_loop()
        sem = self._semaphores.get(loop)
        if sem is None:
            sem = self._semaphores[loop] = asyncio.Semaphore(self.concurrency)
        return sem

    def _delay(self, attempt: int, retry_after: float | None) -> float:
        if retry_after is not None:
            return min(self.retry_cap, retry_after)
        ceiling = min(self.retry_cap, self.retry_base * (2 ** attempt))
        return ceiling * (0.5 + 0.5 * self._rng.random())

    async def complete(self, config: ModelConfig, messages: list[dict], *, sample_index: int = 0) -> Completion:
        """One chat completion: from the cache when possible, else from the provider.

        Raises ProviderError when the call fails for good and BudgetExhausted when a budget
        limit is reached before the call (cache hits are never blocked).
        """
        usage = self.ledger.usage(config.model)
        key = None
        cache = self.cache
        if cache is not None and getattr(cache, "mode", "rw") != "off":
            key = cache.key(config.model, messages, config.params, sample_index)
            hit = cache.get(key)
            if hit is not None and isinstance(hit.get("text"), str):
                usage.cache_hits += 1
                return Completion(text=hit["text"], prompt_tokens=int(hit.get("prompt_tokens") or 0),
                                  completion_tokens=int(hit.get("completion_tokens") or 0),
                                  cost_usd=hit.get("cost_usd"), cached=True)

        use_http = config.uses_http()
        if config.model.startswith(LOCAL_PREFIX):
            ensure_local(config.model)
            if float(config.params.get("temperature", 0) or 0) > 0 and "seed" not in config.params:
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
                    else:
                        response = await self._call(litellm, config, messages)
                        text = extract_text(response)
                    if text is None:
                        raise Retryable("malformed response (no choices/message)")
                    if not text.strip() and not config.model.startswith(LOCAL_PREFIX):
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
                    elif is_retryable(exc):
                        cause = redact(first_line(str(exc) or type(exc).__name__), config.api_key)
                        retry_after = retry_after_seconds(exc)
                    else:
                        usage.failures += 1
                        raise provider_error(litellm, config, exc) from None
                    if attempt >= config.max_retries:
                        usage.failures += 1
                        raise ProviderError(f"model {config.model}: {cause} "
                                            f"(gave up after {attempt + 1} attempts)") from None
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
            cache.put(key, {"text": text, "prompt_tokens": prompt_tokens,
                            "completion_tokens": completion_tokens, "cost_usd": cost})
        return Completion(text=text, prompt_tokens=prompt_tokens, completion_tokens=completion_tokens,
                          cost_usd=cost, cached=False, retries=retries)

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

    async def _http_call(self, config: ModelConfig, messages: list[dict]) -> openai_http.ChatResult:
        return await self._http.chat(model=config.model, messages=messages, params=config.params,
                                     api_base=config.api_base, api_key=config.api_key, timeout=config.timeout)

    async def complete_many(
        self, config: ModelConfig, requests: Sequence[tuple[list[dict[str, Any]], int]]
    ) -> list[Completion | ProviderError]:
        """Run many calls concurrently; a call that failed for good comes back as its ProviderError.

        BudgetExhausted propagates once the calls already under way have finished (they are paid
        for, so their answers are cached rather than thrown away). Errors every call would repeat
        (authentication, unknown model) propagate at once and cancel the remaining calls.
        """

        async def one(messages: list[dict], sample_index: int) -> Completion | ProviderError | BudgetExhausted:
            try:
                return await self.complete(config, messages, sample_index=sample_index)
            except BudgetExhausted as exc:
                return exc
            except ProviderError as exc:
                if getattr(exc, "fatal", False):
                    raise
                return exc

        tasks = [asyncio.ensure_future(one(messages, index)) for messages, index in requests]
        try:
            results = list(await asyncio.gather(*tasks))
        except BaseException:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
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
