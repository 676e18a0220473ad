"""The litellm provider that serves ``local/...`` model strings in this process (cost 0)."""

from __future__ import annotations

import concurrent.futures
import threading
from typing import Any, Mapping

from pytest_opro.errors import ProviderError
from pytest_opro.models.local.files import full_name
from pytest_opro.models.local.sampling import GenerationResult
from pytest_opro.models.local.worker import submit

_PARAM_NAMES = ("temperature", "max_tokens", "max_completion_tokens", "seed", "stop", "top_p", "top_k")
_handler: Any = None
_handler_lock = threading.Lock()


def _params(kwargs: Mapping[str, Any]) -> dict[str, Any]:
    params: dict[str, Any] = {}
    for source in (kwargs.get("litellm_params") or {}, kwargs, kwargs.get("optional_params") or {}):
        if isinstance(source, Mapping):
            params.update({k: source[k] for k in _PARAM_NAMES if source.get(k) is not None})
    return params


def _make_handler() -> Any:
    import litellm
    from litellm.llms.custom_llm import CustomLLM, CustomLLMError

    def fail(exc: ProviderError) -> Exception:
        # status 400: litellm maps it to BadRequestError, which callers do not retry
        error = CustomLLMError(status_code=400, message=str(exc))
        error.__cause__ = exc
        return error

    def response(model: str, result: GenerationResult) -> Any:
        out = litellm.ModelResponse(
            model=full_name(model),
            choices=[
                {
                    "index": 0,
                    "finish_reason": result.finish_reason,
                    "message": {"role": "assistant", "content": result.text},
                }
            ],
            usage=litellm.Usage(
                prompt_tokens=result.prompt_tokens,
                completion_tokens=result.completion_tokens,
                total_tokens=result.prompt_tokens + result.completion_tokens,
            ),
        )
        hidden = getattr(out, "_hidden_params", None)
        if isinstance(hidden, dict):
            hidden["response_cost"] = 0.0
        return out

    class LocalLLM(CustomLLM):
        """litellm provider for ``local/...`` models (runs in this process, costs nothing)."""

        supports_prefill = True
        cost_per_call = 0.0

        def _future(self, model: str, messages: list, kwargs: Mapping[str, Any]) -> concurrent.futures.Future:
            try:
                return submit(model, messages, _params(kwargs))
            except ProviderError as exc:
                raise fail(exc) from exc

        def completion(self, model: str, messages: list, *args: Any, **kwargs: Any) -> Any:
            future = self._future(model, messages, kwargs)
            try:
                return response(model, future.result())
            except ProviderError as exc:
                raise fail(exc) from exc

        async def acompletion(self, model: str, messages: list, *args: Any, **kwargs: Any) -> Any:
            import asyncio

            future = self._future(model, messages, kwargs)
            try:
                return response(model, await asyncio.wrap_future(future))
            except ProviderError as exc:
                raise fail(exc) from exc

    return LocalLLM


def handler() -> Any:
    """The process-wide litellm ``CustomLLM`` instance serving ``local/...`` models."""
    global _handler
    if _handler is None:
        with _handler_lock:
            if _handler is None:
                _handler = _make_handler()()
    return _handler
