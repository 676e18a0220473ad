"""One object per way to reach a model: litellm, a direct OpenAI-compatible HTTP call, a litellm Router.

A :class:`Transport` sends one request and returns its text, tokens and cost (:class:`Sent`). It
readies a model before its first call, scrubs its own secrets out of error text and turns its own
errors into either a :class:`~pytest_opro.models.retry.Retryable` (the client waits and tries again)
or a :class:`~pytest_opro.errors.ProviderError` (the call failed for good). What every way shares
(the cache, budget, retries, ledger and concurrency limit) stays in
:class:`pytest_opro.models.client.LLMClient`, which chooses a transport once per model configuration
(:func:`choose_transport`). The embedded model (``local/...``) is a litellm custom provider, so
:class:`LiteLLMTransport` reaches it too.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any, Protocol

from pytest_opro.errors import FatalProviderError, ProviderError
from pytest_opro.models.config import LOCAL_PREFIX, ModelConfig
from pytest_opro.models.litellm_bridge import ensure_local, extract_text, get_litellm
from pytest_opro.models.openai_http import OpenAIHTTPClient
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
from pytest_opro.models.router import RouterBridge

Message = dict[str, Any]


@dataclass(frozen=True)
class Sent:
    """What one request brought back. ``text`` is None when the response had no message (malformed);
    ``cost_usd`` is None when the price is unknown."""

    text: str | None
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cost_usd: float | None = None


class Transport(Protocol):
    """One way to reach a model (see the module docstring)."""

    def prepare(self, config: ModelConfig) -> bool:
        """Ready the model before a call and say whether the embedded model answers it (its empty
        answers are answers, and it samples from a seed). Raises FatalProviderError when this
        transport cannot reach the model at all."""
        ...

    async def send(self, config: ModelConfig, messages: list[Message]) -> Sent:
        """One request; raises Retryable (timeouts) or the library's own exception on failure."""
        ...

    def failure(self, config: ModelConfig, exc: BaseException) -> Retryable | ProviderError:
        """What a failed :meth:`send` means: try again (Retryable), or this ProviderError."""
        ...


def timeout_guard(config: ModelConfig, extra: float = 0.0) -> float:
    """Seconds after which a call is abandoned although the library's own timeout did not fire
    (custom handlers and hung sockets ignore it); `extra` covers waits a transport adds."""
    return config.timeout * 1.5 + 1.0 + extra


class _Errors:
    """Error handling every transport shares: the retryable kinds, secrets scrubbed from the text."""

    def scrub(self, config: ModelConfig, text: str) -> str:
        """`text` without this transport's secrets (the config's API key)."""
        return redact(text, config.api_key)

    def failure(self, config: ModelConfig, exc: BaseException) -> Retryable | ProviderError:
        if isinstance(exc, Retryable):
            return exc
        if isinstance(exc, LocalRateLimitError):
            return Retryable(self.scrub(config, first_line(str(exc))), exc.retry_after)
        if is_retryable(exc):
            return Retryable(self.scrub(config, first_line(str(exc) or type(exc).__name__)), retry_after_seconds(exc))
        return self.error(config, exc)

    def error(self, config: ModelConfig, exc: BaseException) -> ProviderError:
        """The one-line error for a call that failed for good."""
        return provider_error(get_litellm(), config, exc, scrub=lambda text: self.scrub(config, text))


class LiteLLMTransport(_Errors):
    """``litellm.acompletion``: every provider litellm knows, and the embedded model."""

    def prepare(self, config: ModelConfig) -> bool:
        local = config.model.startswith(LOCAL_PREFIX)
        if local:
            ensure_local(config.model)
        get_litellm()  # imported here, before the call is counted
        return local

    async def send(self, config: ModelConfig, messages: list[Message]) -> Sent:
        litellm = get_litellm()
        kwargs: dict[str, Any] = dict(config.params)
        kwargs.update(model=config.model, messages=messages, timeout=config.timeout, num_retries=0)
        if config.api_base:
            kwargs["api_base"] = config.api_base
        if config.api_key:
            kwargs["api_key"] = config.api_key
        try:
            response = await asyncio.wait_for(litellm.acompletion(**kwargs), timeout=timeout_guard(config))
        except asyncio.TimeoutError:
            raise Retryable(f"timed out after {config.timeout:g}s") from None
        return _litellm_sent(litellm, response, config.model)


class DirectHTTPTransport(_Errors):
    """``POST {api_base}/chat/completions`` without litellm (:mod:`pytest_opro.models.openai_http`),
    for OpenAI-compatible servers; priced from litellm's price table."""

    def __init__(self, pool_size: int) -> None:
        self.http = OpenAIHTTPClient(pool_size=pool_size)

    def prepare(self, config: ModelConfig) -> bool:
        return False

    async def send(self, config: ModelConfig, messages: list[Message]) -> Sent:
        result = await self.http.chat(
            model=config.model,
            messages=messages,
            params=config.params,
            api_base=config.api_base,
            api_key=config.api_key,
            timeout=config.timeout,
        )
        if result.text is None:
            return Sent(None)
        cost = table_cost(config.model, result.prompt_tokens, result.completion_tokens)
        return Sent(result.text, result.prompt_tokens, result.completion_tokens, cost)

    def error(self, config: ModelConfig, exc: BaseException) -> ProviderError:
        # litellm is not imported on this path: the key hint comes from the provider's key variable
        return provider_error(None, config, exc, scrub=lambda text: self.scrub(config, text))


class RouterTransport(_Errors):
    """A ``litellm.Router`` (``--opro-router``): the model is a model_name of the router file."""

    def __init__(self, bridge: RouterBridge) -> None:
        self.bridge = bridge

    def prepare(self, config: ModelConfig) -> bool:
        if not self.bridge.knows(config.model):
            raise FatalProviderError(self.bridge.unknown_model(config.model))
        behind = self.bridge.deployments_of(config.model)
        get_litellm()
        return bool(behind) and all(m.startswith(LOCAL_PREFIX) for m in behind)

    async def send(self, config: ModelConfig, messages: list[Message]) -> Sent:
        # The guard also covers the wait for a paced deployment's slot (at most its max_wait).
        try:
            response = await asyncio.wait_for(
                self.bridge.acompletion(config.model, messages, config.params, config.timeout),
                timeout=timeout_guard(config, self.bridge.max_wait),
            )
        except asyncio.TimeoutError:
            raise Retryable(f"timed out after {config.timeout:g}s") from None
        return _litellm_sent(get_litellm(), response, config.model)

    def scrub(self, config: ModelConfig, text: str) -> str:
        return self.bridge.scrub(text)

    def error(self, config: ModelConfig, exc: BaseException) -> ProviderError:
        return self.bridge.provider_error(get_litellm(), config, exc)


def _litellm_sent(litellm: Any, response: Any, model: str) -> Sent:
    """Text, tokens and cost of a litellm response."""
    text = extract_text(response)
    if text is None:
        return Sent(None)
    prompt_tokens, completion_tokens = usage_tokens(response)
    return Sent(text, prompt_tokens, completion_tokens, response_cost(litellm, response, model))


def choose_transport(
    config: ModelConfig, *, router: RouterTransport | None, http: DirectHTTPTransport, litellm: LiteLLMTransport
) -> Transport:
    """The way `config` is reached: every model through the router when there is one, else direct
    HTTP when the config asks for it (``ModelConfig.uses_http``), else litellm."""
    if router is not None:
        return router
    return http if config.uses_http() else litellm


__all__ = [
    "DirectHTTPTransport",
    "LiteLLMTransport",
    "RouterTransport",
    "Sent",
    "Transport",
    "choose_transport",
    "timeout_guard",
]
