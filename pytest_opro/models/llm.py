"""The one place that talks to providers: async calls, concurrency, retries, timeouts, cost, budget.

Calls go through litellm, except for OpenAI-compatible servers reached through an ``api_base``
(``openai/...`` or ``hosted_vllm/...``), which :mod:`pytest_opro.models.openai_http` calls directly at a
fraction of litellm's CPU per call (see ``ModelConfig.transport``). litellm is imported lazily at
its first call, so a run that never needs it never pays for it. Retries are ours alone (litellm is
called with ``num_retries=0``): bounded, exponential backoff with jitter, honouring Retry-After.
API keys are passed to the transport and nowhere else.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import io
import json
import logging
import os
import random
import re
import sys
import threading
import time
import weakref
from dataclasses import asdict, dataclass, field, fields
from typing import Any, Awaitable, Iterable, Mapping, TypeVar

from pytest_opro.models import openai_http
from pytest_opro.errors import BudgetExhausted, ConfigError, ProviderError

T = TypeVar("T")

__all__ = [
    "Budget", "Completion", "LLMClient", "Ledger", "ModelConfig", "ModelUsage",
    "estimate_cost", "extract_text", "register_provider", "run_sync", "supports_prefill",
]

RETRY_BASE = 0.5
RETRY_CAP = 20.0
DEFAULT_CONCURRENCY = 16
PREFILL_PREFIXES = ("local/", "anthropic/")

# Environment variable a provider needs, for error messages when litellm cannot tell us.
_KEY_VARS = {
    "openai": "OPENAI_API_KEY", "anthropic": "ANTHROPIC_API_KEY", "gemini": "GEMINI_API_KEY",
    "mistral": "MISTRAL_API_KEY", "groq": "GROQ_API_KEY", "cohere": "COHERE_API_KEY",
    "together_ai": "TOGETHERAI_API_KEY", "deepseek": "DEEPSEEK_API_KEY", "openrouter": "OPENROUTER_API_KEY",
    "xai": "XAI_API_KEY", "fireworks_ai": "FIREWORKS_AI_API_KEY", "azure": "AZURE_API_KEY",
    "hosted_vllm": "HOSTED_VLLM_API_KEY",
}

TRANSPORTS = ("auto", "litellm", "http")
#: Providers the direct HTTP transport serves when an api_base is set (transport="auto").
HTTP_PROVIDERS = ("openai", "hosted_vllm")
#: Parameters only litellm understands: a config using one stays on litellm under "auto".
LITELLM_ONLY_PARAMS = frozenset({
    "mock_response", "drop_params", "additional_drop_params", "allowed_openai_params", "custom_llm_provider",
    "api_version", "extra_headers", "headers", "metadata", "caching", "cache", "num_retries", "fallbacks",
    "base_model", "input_cost_per_token", "output_cost_per_token", "litellm_logging_obj", "organization",
})

# --------------------------------------------------------------------------------------------
# lazy litellm
# --------------------------------------------------------------------------------------------
_litellm: Any = None
_import_lock = threading.Lock()
_providers: dict[str, Any] = {}


def _get_litellm() -> Any:
    """Import and configure litellm once (quietly, without network)."""
    global _litellm
    if _litellm is not None:
        return _litellm
    with _import_lock:
        if _litellm is None:
            os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
            with contextlib.redirect_stdout(io.StringIO()):
                import litellm
            litellm.suppress_debug_info = True
            litellm.set_verbose = False
            if hasattr(litellm, "telemetry"):
                litellm.telemetry = False
            if not os.environ.get("LITELLM_LOG"):
                for name in ("LiteLLM", "LiteLLM Router", "LiteLLM Proxy"):
                    logging.getLogger(name).setLevel(logging.ERROR)
            _litellm = litellm
            for prefix, handler in list(_providers.items()):
                _apply_provider(litellm, prefix, handler)
    return _litellm


def _apply_provider(litellm: Any, prefix: str, handler: Any) -> None:
    entries = [item for item in litellm.custom_provider_map if item.get("provider") != prefix]
    entries.append({"provider": prefix, "custom_handler": handler})
    litellm.custom_provider_map[:] = entries
    try:
        from litellm.utils import custom_llm_setup

        custom_llm_setup()
    except Exception:  # older/newer litellm: completion() runs the same setup itself
        pass


def register_provider(prefix: str, handler: Any) -> None:
    """Route model strings ``"<prefix>/..."`` to ``handler`` (a ``litellm.CustomLLM`` instance).

    Safe to call before litellm is imported: the registration is applied at import.
    """
    prefix = prefix.strip().rstrip("/")
    if not prefix or "/" in prefix:
        raise ConfigError(f"provider prefix {prefix!r} must be a single word such as 'local'")
    _providers[prefix] = handler
    if _litellm is not None:
        _apply_provider(_litellm, prefix, handler)


LOCAL_PREFIX = "local/"


_local_ready: set[str] = set()


def _ensure_local(model: str) -> None:
    """Register the embedded provider on first use; a missing extra or file is one clear error.

    Checked once per model and process: the check reads package metadata, too slow for every call.
    """
    if model in _local_ready:
        return
    from pytest_opro.models import local

    local.check(model)
    local.register()
    _local_ready.add(model)


def _provider_of(model: str) -> str:
    return model.split("/", 1)[0] if "/" in model else ""


def supports_prefill(model: str) -> bool:
    """Whether the model continues a trailing assistant message (needed for A_begin position)."""
    if model.startswith(PREFILL_PREFIXES):
        return True
    handler = _providers.get(_provider_of(model))
    if handler is not None:
        return bool(getattr(handler, "supports_prefill", False))
    try:
        info = _get_litellm().get_model_info(model)
        return bool(info.get("supports_assistant_prefill"))
    except Exception:
        return False


def estimate_cost(model: str, prompt_tokens: int, completion_tokens: int, calls: int = 1) -> float | None:
    """Price in USD of `calls` calls using these token counts in total, or None when unknown."""
    if model.startswith(LOCAL_PREFIX):
        return 0.0
    handler = _providers.get(_provider_of(model))
    if handler is not None:
        cost = getattr(handler, "cost_per_call", None)
        return float(cost) * calls if isinstance(cost, (int, float)) else None
    if _litellm is None and "litellm" not in sys.modules:
        return _table_cost(model, prompt_tokens, completion_tokens)
    try:
        prompt_cost, completion_cost = _get_litellm().cost_per_token(
            model=model, prompt_tokens=int(prompt_tokens), completion_tokens=int(completion_tokens))
        return float(prompt_cost) + float(completion_cost)
    except Exception:
        return None


_price_table: dict[str, Any] | None = None
_token_prices: dict[str, tuple[float, float] | None] = {}


def _load_price_table() -> dict[str, Any]:
    """litellm's price table: its live dict when litellm is loaded, else its bundled JSON file read
    without importing litellm (~50 ms once, instead of seconds); {} when neither is available."""
    global _price_table
    if _litellm is not None and isinstance(getattr(_litellm, "model_cost", None), dict):
        return _litellm.model_cost
    if _price_table is None:
        _price_table = {}
        try:
            import importlib.util

            spec = importlib.util.find_spec("litellm")
            for folder in (spec.submodule_search_locations or []) if spec else []:
                path = os.path.join(folder, "model_prices_and_context_window_backup.json")
                if os.path.exists(path):
                    with open(path, encoding="utf-8") as fh:
                        _price_table = json.load(fh)
                    break
        except Exception:  # no litellm, unreadable table: prices unknown
            _price_table = {}
    return _price_table


def _table_cost(model: str, prompt_tokens: int, completion_tokens: int) -> float | None:
    """Plain per-token price of a call from the price table; None when the model is not listed."""
    if model not in _token_prices:
        table = _load_price_table()
        provider = _provider_of(model)
        entry = table.get(model)
        if entry is None and provider:
            entry = table.get(model.split("/", 1)[1])
            if isinstance(entry, Mapping) and entry.get("litellm_provider") != provider:
                entry = None
        try:
            _token_prices[model] = (float(entry["input_cost_per_token"]), float(entry["output_cost_per_token"]))
        except (KeyError, TypeError, ValueError):
            _token_prices[model] = None
    prices = _token_prices[model]
    if prices is None:
        return None
    return prices[0] * int(prompt_tokens) + prices[1] * int(completion_tokens)


def extract_text(response: Any) -> str | None:
    """The assistant's text from a chat response; "" when empty, None when the shape is wrong."""
    try:
        choices = response["choices"] if isinstance(response, Mapping) else response.choices
        if not choices:
            return None
        choice = choices[0]
        message = choice["message"] if isinstance(choice, Mapping) else choice.message
        content = message["content"] if isinstance(message, Mapping) else message.content
    except (AttributeError, KeyError, IndexError, TypeError):
        return None
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    if isinstance(content, list):  # content parts
        parts = []
        for part in content:
            if isinstance(part, Mapping) and part.get("type") == "text":
                parts.append(str(part.get("text") or ""))
            elif isinstance(part, str):
                parts.append(part)
        return "".join(parts)
    return None


# --------------------------------------------------------------------------------------------
# configuration and accounting
# --------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class ModelConfig:
    """A model and how to call it. ``params`` (temperature, max_tokens, seed, ...) change the answer
    and are part of the cache key; ``api_base``, ``api_key``, ``timeout``, ``max_retries`` and
    ``transport`` do not.

    ``transport`` chooses the client library: ``"auto"`` (default) calls OpenAI-compatible servers
    directly over HTTP when the model is ``openai/...`` or ``hosted_vllm/...`` and ``api_base`` is
    set, and uses litellm for everything else; ``"litellm"`` always uses litellm; ``"http"``
    always uses the direct client (``openai/...`` without ``api_base`` goes to api.openai.com).
    """

    model: str
    params: Mapping[str, Any] = field(default_factory=dict)
    api_base: str | None = None
    timeout: float = 60.0
    max_retries: int = 4
    api_key: str | None = field(default=None, repr=False, compare=False)
    transport: str = "auto"

    def __post_init__(self) -> None:
        if not isinstance(self.model, str) or not self.model.strip():
            raise ConfigError(f"model must be a litellm model string such as 'openai/gpt-4o-mini', got {self.model!r}")
        if "api_key" in self.params:
            raise ConfigError(f"model {self.model}: pass api_key as ModelConfig(api_key=...) or an environment "
                              "variable, not in params (params are recorded)")
        if self.timeout <= 0:
            raise ConfigError(f"model {self.model}: timeout must be > 0 seconds, got {self.timeout}")
        if self.max_retries < 0:
            raise ConfigError(f"model {self.model}: max_retries must be >= 0, got {self.max_retries}")
        if self.transport not in TRANSPORTS:
            raise ConfigError(f"model {self.model}: transport must be one of {', '.join(TRANSPORTS)}, "
                              f"got {self.transport!r}")
        if self.transport == "http" and not self.api_base and _provider_of(self.model) != "openai":
            raise ConfigError(f"model {self.model}: transport='http' needs api_base (the server's /v1 URL)")
        object.__setattr__(self, "params", dict(self.params))

    def __hash__(self) -> int:
        from pytest_opro.models.cache import _canonical

        return hash((self.model, _canonical(dict(self.params)), self.api_base, self.timeout, self.max_retries))

    @classmethod
    def coerce(cls, value: "ModelConfig | str", **defaults: Any) -> "ModelConfig":
        """A ModelConfig from itself or a model string (``defaults`` fill the other fields)."""
        if isinstance(value, ModelConfig):
            return value
        if isinstance(value, str):
            return cls(model=value, **defaults)
        raise ConfigError(f"expected a model string such as 'openai/gpt-4o-mini', got {type(value).__name__}")

    def with_params(self, **params: Any) -> "ModelConfig":
        merged = {**self.params, **params}
        return ModelConfig(self.model, merged, self.api_base, self.timeout, self.max_retries, self.api_key,
                           self.transport)

    def uses_http(self) -> bool:
        """Whether calls go to the direct OpenAI-compatible HTTP client instead of litellm."""
        if self.transport != "auto":
            return self.transport == "http"
        return (bool(self.api_base) and _provider_of(self.model) in HTTP_PROVIDERS
                and not LITELLM_ONLY_PARAMS.intersection(self.params))

    def public_dict(self) -> dict[str, Any]:
        """What artifacts record: the model and its sampling parameters, never keys or endpoints."""
        return {"model": self.model, "params": dict(sorted(self.params.items()))}


@dataclass
class Completion:
    text: str
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cost_usd: float | None = 0.0
    cached: bool = False
    retries: int = 0


@dataclass
class ModelUsage:
    calls: int = 0               # logical provider calls started (cache hits excluded)
    cache_hits: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cost_usd: float = 0.0
    cost_unknown_calls: int = 0
    retries: int = 0
    failures: int = 0
    seconds: float = 0.0

    def add(self, other: "ModelUsage") -> None:
        for f in fields(self):
            setattr(self, f.name, getattr(self, f.name) + getattr(other, f.name))


@dataclass
class Ledger:
    by_model: dict[str, ModelUsage] = field(default_factory=dict)

    def usage(self, model: str) -> ModelUsage:
        if model not in self.by_model:
            self.by_model[model] = ModelUsage()
        return self.by_model[model]

    def total(self) -> ModelUsage:
        total = ModelUsage()
        for usage in self.by_model.values():
            total.add(usage)
        return total

    def merge(self, other: "Ledger") -> None:
        for model, usage in other.by_model.items():
            self.usage(model).add(usage)

    def to_dict(self) -> dict[str, Any]:
        return {model: asdict(usage) for model, usage in sorted(self.by_model.items())}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "Ledger":
        known = {f.name for f in fields(ModelUsage)}
        return cls({model: ModelUsage(**{k: v for k, v in dict(u).items() if k in known})
                    for model, u in dict(data or {}).items()})


def usage_totals(usage: Mapping[str, Mapping[str, Any]], keys: Iterable[str]) -> dict[str, Any]:
    """Totals over models of a ``Ledger.to_dict()`` mapping, for the fields in `keys`."""
    total = asdict(Ledger.from_dict(usage).total())
    return {key: total[key] for key in keys}


@dataclass(frozen=True)
class Budget:
    max_calls: int | None = None
    max_tokens: int | None = None
    max_cost_usd: float | None = None

    def check(self, ledger: Ledger) -> str | None:
        """A reason string once a limit is reached, else None."""
        total = ledger.total()
        if self.max_calls is not None and total.calls >= self.max_calls:
            return f"max_calls={self.max_calls} reached"
        if self.max_tokens is not None and total.prompt_tokens + total.completion_tokens >= self.max_tokens:
            return f"max_tokens={self.max_tokens} reached ({total.prompt_tokens + total.completion_tokens} used)"
        if self.max_cost_usd is not None and total.cost_usd >= self.max_cost_usd:
            return f"max_cost_usd={self.max_cost_usd:g} reached (${total.cost_usd:.4f} spent)"
        return None


# --------------------------------------------------------------------------------------------
# error classification
# --------------------------------------------------------------------------------------------
class _Retryable(Exception):
    def __init__(self, cause: str, retry_after: float | None = None) -> None:
        super().__init__(cause)
        self.cause = cause
        self.retry_after = retry_after


_RETRYABLE_NAMES = {"RateLimitError", "InternalServerError", "ServiceUnavailableError", "BadGatewayError",
                    "APIConnectionError", "Timeout", "APITimeoutError", "TimeoutError", "MalformedResponseError"}
_RETRYABLE_STATUS = {408, 409, 425, 429, 500, 502, 503, 504, 529}


_MISSING_KEY = re.compile(r"missing credentials|api[_ ]?key (is )?(not set|missing|required)|no api[_ ]?key"
                          r"|set the `?\w+_API_KEY`? environment variable", re.IGNORECASE)
_REPEATED = re.compile(r"\b(\w+): (\1: )+")


def _first_line(text: str, limit: int = 300) -> str:
    text = str(text).split("Traceback (most recent call last)")[0]
    text = " ".join(text.split()) or "unknown error"
    if text.startswith("litellm."):
        text = text[len("litellm."):]
    text = _REPEATED.sub(r"\1: ", text)
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _redact(text: str, secret: str | None) -> str:
    if secret and len(secret) >= 4:
        text = text.replace(secret, "***")
    return text


def _retry_after(exc: BaseException) -> float | None:
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


def _is_retryable(exc: BaseException) -> bool:
    if _MISSING_KEY.search(str(exc)):
        return False
    if isinstance(exc, (asyncio.TimeoutError, TimeoutError, ConnectionError)):
        return True
    names = {cls.__name__ for cls in type(exc).__mro__}
    if names & {"AuthenticationError", "PermissionDeniedError", "NotFoundError", "BadRequestError",
                "ContextWindowExceededError", "ContentPolicyViolationError", "UnprocessableEntityError",
                "PaymentRequiredError"}:
        return False
    if names & _RETRYABLE_NAMES:
        return True
    status = getattr(exc, "status_code", None)
    return isinstance(status, int) and (status in _RETRYABLE_STATUS or status >= 500)


def _env_var_hint(litellm: Any, model: str) -> str:
    missing: list[str] = []
    if litellm is not None:
        try:
            with contextlib.redirect_stdout(io.StringIO()):
                missing = list(litellm.validate_environment(model).get("missing_keys") or [])
        except Exception:
            missing = []
    if not missing:
        var = _KEY_VARS.get(_provider_of(model))
        missing = [var] if var else []
    if missing:
        return f"set {' and '.join(missing)} in the environment (or pass api_key to the model config)"
    return "check the API key for this provider (environment variable or api_key in the model config)"


def _fatal(message: str) -> ProviderError:
    """A ProviderError every further call would repeat (bad key, unknown model): stops a batch at once."""
    error = ProviderError(message)
    error.fatal = True  # type: ignore[attr-defined]
    return error


def _provider_error(litellm: Any, config: ModelConfig, exc: BaseException) -> ProviderError:
    names = {cls.__name__ for cls in type(exc).__mro__}
    text = _redact(_first_line(str(exc) or type(exc).__name__), config.api_key)
    if "AuthenticationError" in names or _MISSING_KEY.search(str(exc)):
        return _fatal(f"model {config.model}: authentication failed; {_env_var_hint(litellm, config.model)}")
    if "PermissionDeniedError" in names:
        return _fatal(f"model {config.model}: permission denied (HTTP 403); "
                      f"{_env_var_hint(litellm, config.model)}")
    if "LLM Provider NOT provided" in str(exc) or "LiteLLMUnknownProvider" in names:
        return _fatal(f"model {config.model}: unknown provider or model string; write it as "
                      "'<provider>/<model>', e.g. 'openai/gpt-4o-mini' or 'local/smollm2'")
    if "NotFoundError" in names:
        return _fatal(f"model {config.model}: not found at the provider ({text})")
    return ProviderError(f"model {config.model}: {text}")


# --------------------------------------------------------------------------------------------
# the client
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
            _ensure_local(config.model)
            if float(config.params.get("temperature", 0) or 0) > 0 and "seed" not in config.params:
                # The embedded model samples reproducibly from a seed: the sample index (already in
                # the cache key) makes a run repeatable without the cache, each call its own draw.
                config = config.with_params(seed=sample_index)
        litellm = None if use_http else _get_litellm()
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
                        raise _Retryable("malformed response (no choices/message)")
                    if not text.strip() and not config.model.startswith(LOCAL_PREFIX):
                        # A remote empty reply is a glitch worth retrying; the embedded model is
                        # deterministic, so its empty answer is an answer (scored, not retried).
                        raise _Retryable("empty content")
                except asyncio.CancelledError:
                    usage.seconds += time.monotonic() - t0
                    raise
                except Exception as exc:  # noqa: BLE001 - classified below
                    usage.seconds += time.monotonic() - t0
                    if isinstance(exc, _Retryable):
                        cause, retry_after = exc.cause, exc.retry_after
                    elif _is_retryable(exc):
                        cause = _redact(_first_line(str(exc) or type(exc).__name__), config.api_key)
                        retry_after = _retry_after(exc)
                    else:
                        usage.failures += 1
                        raise _provider_error(litellm, config, exc) from None
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
            cost = _table_cost(config.model, prompt_tokens, completion_tokens)
        else:
            prompt_tokens, completion_tokens = _usage_tokens(response)
            cost = _response_cost(litellm, response, config.model)
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
            raise _Retryable(f"timed out after {config.timeout:g}s") from None

    async def _http_call(self, config: ModelConfig, messages: list[dict]) -> openai_http.ChatResult:
        return await self._http.chat(model=config.model, messages=messages, params=config.params,
                                     api_base=config.api_base, api_key=config.api_key, timeout=config.timeout)

    async def complete_many(
        self, config: ModelConfig, requests: list[tuple[list[dict], int]]
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


def _usage_tokens(response: Any) -> tuple[int, int]:
    usage = getattr(response, "usage", None)
    if usage is None and isinstance(response, Mapping):
        usage = response.get("usage")
    if usage is None:
        return 0, 0

    def get(name: str) -> int:
        value = usage.get(name) if isinstance(usage, Mapping) else getattr(usage, name, None)
        try:
            return int(value or 0)
        except (TypeError, ValueError):
            return 0

    return get("prompt_tokens"), get("completion_tokens")


def _response_cost(litellm: Any, response: Any, model: str) -> float | None:
    handler = _providers.get(_provider_of(model))
    if handler is not None:
        cost = getattr(handler, "cost_per_call", None)  # e.g. 0.0 for the embedded model
        return float(cost) if isinstance(cost, (int, float)) else None
    # litellm has already priced the response (or failed to: None) while building it; pricing it a
    # second time costs ~0.3 ms of CPU per call, a tenth of litellm's whole per-call overhead.
    hidden = getattr(response, "_hidden_params", None)
    if isinstance(hidden, Mapping) and "response_cost" in hidden:
        cost = hidden["response_cost"]
        try:
            return None if cost is None else float(cost)
        except (TypeError, ValueError):
            return None
    try:
        cost = litellm.completion_cost(completion_response=response)
    except Exception:
        return None
    if cost is None:
        return None
    try:
        return float(cost)
    except (TypeError, ValueError):
        return None


def run_sync(coro: Awaitable[T]) -> T:
    """Run a coroutine from synchronous code, even when an event loop is already running."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(coro)  # type: ignore[arg-type]
    with concurrent.futures.ThreadPoolExecutor(max_workers=1, thread_name_prefix="pytest-opro") as pool:
        return pool.submit(asyncio.run, coro).result()  # type: ignore[arg-type]
