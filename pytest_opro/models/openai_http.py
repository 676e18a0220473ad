"""A lean client for OpenAI-compatible chat-completions endpoints (vLLM, llama.cpp server, proxies).

pytest-opro uses it instead of litellm for ``openai/...`` and ``hosted_vllm/...`` models that have
an ``api_base``: one ``POST {api_base}/chat/completions`` per call over a keep-alive connection
pool (one per event loop), and nothing else. litellm is not imported on this path; it costs
several milliseconds of CPU per call, which caps throughput at high concurrency. Choose
``ModelConfig(transport="litellm")`` to go through litellm anyway.

Errors are raised as the exception classes below. Their names match the OpenAI SDK's, so
:mod:`pytest_opro.models.client` retries and reports them exactly as it does litellm's. The API key is sent
in the ``Authorization`` header only. It never appears in a log line or an error message.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import weakref
from dataclasses import dataclass
from typing import Any, Mapping

from pytest_opro.models.config import key_env_var, provider_of
from pytest_opro.models.retry import redact

__all__ = [
    "APIConnectionError",
    "APIError",
    "APIStatusError",
    "APITimeoutError",
    "AuthenticationError",
    "BadRequestError",
    "ChatResult",
    "OpenAIHTTPClient",
    "InternalServerError",
    "MalformedResponseError",
    "NotFoundError",
    "PermissionDeniedError",
    "RateLimitError",
    "UnprocessableEntityError",
    "key_env_var",
    "resolve_api_key",
]

logger = logging.getLogger(__name__)

#: Providers that refuse to call without a key (as litellm does); vLLM usually runs without one.
KEY_REQUIRED = {"openai"}
OPENAI_API_BASE = "https://api.openai.com/v1"
#: Idle connections are closed after this many seconds, before servers such as uvicorn (5 s) do.
KEEPALIVE_SECONDS = 4.0
USER_AGENT = "pytest-opro"


# ----------------------------------------------------------------------------------------------
# errors
# ----------------------------------------------------------------------------------------------
class APIError(Exception):
    """A failed chat call. ``status_code`` is the HTTP status (None without a response) and
    ``headers`` the response headers with lower-case names (``retry-after`` is read from there)."""

    def __init__(self, message: str, status_code: int | None = None, headers: Mapping[str, str] | None = None) -> None:
        super().__init__(message)
        self.status_code = status_code
        self.headers = dict(headers or {})


class APIConnectionError(APIError):
    """The server could not be reached or dropped the connection (retried)."""


class APITimeoutError(APIConnectionError):
    """No complete answer within the timeout (retried)."""


class MalformedResponseError(APIError):
    """A 2xx answer whose body is not the JSON of a chat completion (retried)."""


class APIStatusError(APIError):
    """An HTTP error status; the subclasses name the common ones."""


class BadRequestError(APIStatusError):
    """400: this request is invalid (not retried)."""


class AuthenticationError(APIStatusError):
    """401 or a missing key: no call can succeed (stops the run)."""


class PermissionDeniedError(APIStatusError):
    """403: the key may not use this model or endpoint (stops the run)."""


class NotFoundError(APIStatusError):
    """404: unknown model or wrong ``api_base`` (stops the run)."""


class UnprocessableEntityError(APIStatusError):
    """422: the server rejected the request body (not retried)."""


class RateLimitError(APIStatusError):
    """429 (retried, after Retry-After when the server sends one)."""


class InternalServerError(APIStatusError):
    """5xx (retried)."""


_STATUS_ERRORS: dict[int, type[APIStatusError]] = {
    400: BadRequestError,
    401: AuthenticationError,
    403: PermissionDeniedError,
    404: NotFoundError,
    422: UnprocessableEntityError,
    429: RateLimitError,
}


def _status_error(status: int, body: bytes, headers: Mapping[str, str], secret: str | None) -> APIStatusError:
    detail = ""
    try:
        payload = json.loads(body)
        error = payload.get("error", payload) if isinstance(payload, dict) else payload
        if isinstance(error, dict):
            detail = str(error.get("message") or error.get("detail") or "")
        elif isinstance(error, str):
            detail = error
        if not detail and isinstance(payload, dict) and "detail" in payload:  # FastAPI style
            detail = str(payload["detail"])
    except ValueError:
        detail = body[:300].decode("utf-8", "replace")
    detail = redact(" ".join(detail.split()), secret)
    cls = _STATUS_ERRORS.get(status) or (InternalServerError if status >= 500 else APIStatusError)
    return cls(f"HTTP {status}" + (f": {detail}" if detail else ""), status, headers)


# ----------------------------------------------------------------------------------------------
# keys and request shape
# ----------------------------------------------------------------------------------------------
def resolve_api_key(model: str, api_key: str | None) -> str | None:
    """The explicit key, else the provider's environment variable; AuthenticationError when a
    provider that needs one has none (before any request is sent)."""
    if api_key:
        return api_key
    var = key_env_var(model)
    key = os.environ.get(var) or None
    if key is None and provider_of(model) in KEY_REQUIRED:
        raise AuthenticationError(f"no API key: set {var} in the environment or pass api_key to the model config")
    return key


@dataclass(frozen=True)
class ChatResult:
    """The parsed answer. ``text`` is None when the body has no ``choices[0].message``."""

    text: str | None
    prompt_tokens: int = 0
    completion_tokens: int = 0


def parse_response(payload: Any) -> ChatResult:
    """(text, prompt_tokens, completion_tokens) from a chat-completion JSON object."""
    text: str | None = None
    try:
        content = payload["choices"][0]["message"]["content"]
    except (KeyError, IndexError, TypeError):
        content = None
        try:
            payload["choices"][0]["message"]  # present with no content: an empty answer
            text = ""
        except (KeyError, IndexError, TypeError):
            pass
    else:
        if content is None:
            text = ""
        elif isinstance(content, str):
            text = content
        elif isinstance(content, list):  # content parts
            text = "".join(
                str(p.get("text") or "")
                if isinstance(p, Mapping) and p.get("type") == "text"
                else p
                if isinstance(p, str)
                else ""
                for p in content
            )
    usage = payload.get("usage") if isinstance(payload, Mapping) else None

    def count(name: str) -> int:
        try:
            return int((usage or {}).get(name) or 0)
        except (TypeError, ValueError, AttributeError):
            return 0

    return ChatResult(text, count("prompt_tokens"), count("completion_tokens"))


# ----------------------------------------------------------------------------------------------
# the HTTP client
# ----------------------------------------------------------------------------------------------
class _Pool:
    """An aiohttp session bound to one event loop, closed when that loop shuts down."""

    def __init__(self, size: int) -> None:
        import aiohttp

        self.session = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=size, limit_per_host=0, keepalive_timeout=KEEPALIVE_SECONDS),
            auto_decompress=True,
        )
        self.closer: Any = None
        self._proxies: dict[str, tuple[Any, Any]] = {}

    def proxy_for(self, url: str) -> tuple[Any, Any]:
        """(proxy, proxy_auth) from HTTP(S)_PROXY / NO_PROXY, as litellm honours them; looked up
        once per URL (aiohttp's ``trust_env`` repeats the lookup on every request, ~0.4 ms of CPU)."""
        found = self._proxies.get(url)
        if found is None:
            from aiohttp.helpers import get_env_proxy_for_url
            from yarl import URL

            try:
                found = get_env_proxy_for_url(URL(url))
            except LookupError:
                found = (None, None)
            self._proxies[url] = found
        return found

    async def close(self) -> None:
        if not self.session.closed:
            await self.session.close()


async def _close_at_loop_shutdown(pool: _Pool, on_close: Any) -> Any:
    """An async generator parked at ``yield``: ``asyncio.run`` finalises it (``shutdown_asyncgens``)
    before closing the loop, which closes the pool's connections without an unclosed-session warning."""
    try:
        yield
    finally:
        on_close()
        await pool.close()


class OpenAIHTTPClient:
    """Calls ``POST {api_base}/chat/completions``; one connection pool per event loop.

    ``pool_size`` should be the concurrency limit: more connections are never used at once.
    """

    def __init__(self, pool_size: int = 16) -> None:
        self.pool_size = max(1, int(pool_size))
        self._pools: "weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, _Pool]" = weakref.WeakKeyDictionary()

    async def _pool(self) -> _Pool:
        loop = asyncio.get_running_loop()
        pool = self._pools.get(loop)
        if pool is None or pool.session.closed:
            pool = self._pools[loop] = _Pool(self.pool_size)
            forget = lambda: self._pools.pop(loop, None) if self._pools.get(loop) is pool else None  # noqa: E731
            pool.closer = _close_at_loop_shutdown(pool, forget)
            await pool.closer.__anext__()
        return pool

    async def chat(
        self,
        *,
        model: str,
        messages: list[dict[str, Any]],
        params: Mapping[str, Any],
        api_base: str | None,
        api_key: str | None,
        timeout: float,
    ) -> ChatResult:
        """One chat completion. ``model`` is the full model string (``openai/<name>``); the provider
        prefix is removed for the request. Raises an :class:`APIError` subclass on failure."""
        import aiohttp

        key = resolve_api_key(model, api_key)
        url = (api_base or OPENAI_API_BASE).rstrip("/") + "/chat/completions"
        body: dict[str, Any] = {k: v for k, v in params.items() if k != "extra_body"}
        body.update(params.get("extra_body") or {})
        body["model"] = model.split("/", 1)[1] if "/" in model else model
        body["messages"] = messages
        data = json.dumps(body, ensure_ascii=False).encode("utf-8")
        headers = {"Content-Type": "application/json", "Accept": "application/json", "User-Agent": USER_AGENT}
        if key:
            headers["Authorization"] = f"Bearer {key}"
        if logger.isEnabledFor(logging.DEBUG):
            logger.debug("POST %s %s", url, data.decode("utf-8"))
        pool = await self._pool()
        proxy, proxy_auth = pool.proxy_for(url)
        try:
            async with pool.session.post(
                url,
                data=data,
                headers=headers,
                proxy=proxy,
                proxy_auth=proxy_auth,
                timeout=aiohttp.ClientTimeout(total=timeout),
            ) as response:
                raw = await response.read()
                status = response.status
                response_headers = {k.lower(): v for k, v in response.headers.items()} if status >= 300 else {}
        except asyncio.TimeoutError:
            raise APITimeoutError(f"timed out after {timeout:g}s") from None
        except aiohttp.ClientError as exc:
            raise APIConnectionError(redact(f"connection error: {type(exc).__name__}: {exc}", key)) from None
        except OSError as exc:
            raise APIConnectionError(f"connection error: {type(exc).__name__}: {exc.strerror or exc}") from None
        if status >= 300:
            raise _status_error(status, raw, response_headers, key)
        try:
            payload = json.loads(raw)
        except ValueError:
            raise MalformedResponseError(f"malformed response: body is not JSON ({len(raw)} bytes)", status) from None
        if logger.isEnabledFor(logging.DEBUG):
            logger.debug("HTTP %d %s", status, raw.decode("utf-8", "replace"))
        return parse_response(payload)
