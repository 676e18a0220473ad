"""Which provider errors are worth retrying, how long to wait (Retry-After), and the one-line
error messages users see (with secrets redacted).
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import re
from typing import Any, Callable

from pytest_opro.errors import FatalProviderError, ProviderError
from pytest_opro.models.config import KEY_ENV_VARS, ModelConfig, provider_of


class Retryable(Exception):
    """A failed attempt worth repeating: `cause` is the one-line reason, `retry_after` the server's wait."""

    def __init__(self, cause: str, retry_after: float | None = None) -> None:
        super().__init__(cause)
        self.cause = cause
        self.retry_after = retry_after


_RETRYABLE_NAMES = {
    "RateLimitError",
    "InternalServerError",
    "ServiceUnavailableError",
    "BadGatewayError",
    "APIConnectionError",
    "Timeout",
    "APITimeoutError",
    "TimeoutError",
    "MalformedResponseError",
}
_RETRYABLE_STATUS = {408, 409, 425, 429, 500, 502, 503, 504, 529}


_MISSING_KEY = re.compile(
    r"missing credentials|api[_ ]?key (is )?(not set|missing|required)|no api[_ ]?key"
    r"|set the `?\w+_API_KEY`? environment variable",
    re.IGNORECASE,
)
_REPEATED = re.compile(r"\b(\w+): (\1: )+")


def first_line(text: str, limit: int = 300) -> str:
    text = str(text).split("Traceback (most recent call last)")[0]
    text = " ".join(text.split()) or "unknown error"
    if text.startswith("litellm."):
        text = text[len("litellm.") :]
    text = _REPEATED.sub(r"\1: ", text)
    return text if len(text) <= limit else text[: limit - 1] + "…"


def redact(text: str, secret: str | None) -> str:
    if secret and len(secret) >= 4:
        text = text.replace(secret, "***")
    return text


def retry_after_seconds(exc: BaseException) -> float | None:
    """Seconds from a Retry-After / retry-after-ms header litellm kept on the exception, if any."""
    candidates: list[Any] = []
    seen = 0
    node: BaseException | None = exc
    while node is not None and seen < 6:
        candidates.append(getattr(node, "litellm_response_headers", None))
        candidates.append(getattr(node, "headers", None))
        candidates.append(getattr(getattr(node, "response", None), "headers", None))
        node = node.__cause__ or node.__context__
        seen += 1
    for headers in candidates:
        if not headers:
            continue
        try:
            value_ms = headers.get("retry-after-ms") or headers.get("Retry-After-Ms")
            if value_ms is not None:
                return max(0.0, float(value_ms) / 1000.0)
            value = headers.get("retry-after") or headers.get("Retry-After")
            if value is not None:
                return max(0.0, float(value))
        except (TypeError, ValueError, AttributeError):
            continue
    return None


def is_retryable(exc: BaseException) -> bool:
    if _MISSING_KEY.search(str(exc)):
        return False
    if isinstance(exc, (asyncio.TimeoutError, TimeoutError, ConnectionError)):
        return True
    names = {cls.__name__ for cls in type(exc).__mro__}
    if names & {
        "AuthenticationError",
        "PermissionDeniedError",
        "NotFoundError",
        "BadRequestError",
        "ContextWindowExceededError",
        "ContentPolicyViolationError",
        "UnprocessableEntityError",
        "PaymentRequiredError",
    }:
        return False
    if names & _RETRYABLE_NAMES:
        return True
    status = getattr(exc, "status_code", None)
    return isinstance(status, int) and (status in _RETRYABLE_STATUS or status >= 500)


def env_var_hint(litellm: Any, model: str) -> str:
    missing: list[str] = []
    if litellm is not None:
        try:
            with contextlib.redirect_stdout(io.StringIO()):
                missing = list(litellm.validate_environment(model).get("missing_keys") or [])
        except Exception:
            missing = []
    if not missing:
        var = KEY_ENV_VARS.get(provider_of(model))
        missing = [var] if var else []
    if missing:
        return f"set {' and '.join(missing)} in the environment (or pass api_key to the model config)"
    return "check the API key for this provider (environment variable or api_key in the model config)"


def provider_error(
    litellm: Any, config: ModelConfig, exc: BaseException, scrub: Callable[[str], str] | None = None
) -> ProviderError:
    """The one-line error for a call that failed for good. `scrub` removes secrets from the provider's
    text (default: the config's API key; a router also removes its deployments)."""
    names = {cls.__name__ for cls in type(exc).__mro__}
    text = (scrub or (lambda t: redact(t, config.api_key)))(first_line(str(exc) or type(exc).__name__))
    if "AuthenticationError" in names or _MISSING_KEY.search(str(exc)):
        return FatalProviderError(f"model {config.model}: authentication failed; {env_var_hint(litellm, config.model)}")
    if "PermissionDeniedError" in names:
        return FatalProviderError(
            f"model {config.model}: permission denied (HTTP 403); {env_var_hint(litellm, config.model)}"
        )
    if "LLM Provider NOT provided" in str(exc) or "LiteLLMUnknownProvider" in names:
        return FatalProviderError(
            f"model {config.model}: unknown provider or model string; write it as "
            "'<provider>/<model>', e.g. 'openai/gpt-4o-mini' or 'local/smollm2'"
        )
    if "NotFoundError" in names:
        return FatalProviderError(f"model {config.model}: not found at the provider ({text})")
    return ProviderError(f"model {config.model}: {text}")
