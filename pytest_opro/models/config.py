"""Model settings: :class:`ModelConfig` (which model, its sampling parameters, how to reach it)
and :class:`Budget` (limits on calls, tokens and dollars).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Mapping, Union

from pytest_opro.errors import ConfigError
from pytest_opro.hashing import canonical_json

if TYPE_CHECKING:
    from pytest_opro.models.usage import Ledger

#: The embedded offline model, the default scorer and optimizer.
DEFAULT_MODEL = "local/smollm2"
#: Model strings served by the embedded model in this process.
LOCAL_PREFIX = "local/"


def provider_of(model: str) -> str:
    """The provider part of a model string: ``"openai"`` for ``"openai/gpt-4o-mini"``, else ``""``."""
    return model.split("/", 1)[0] if "/" in model else ""


#: The environment variable holding each provider's API key (litellm's names).
KEY_ENV_VARS = {
    "openai": "OPENAI_API_KEY",
    "anthropic": "ANTHROPIC_API_KEY",
    "gemini": "GEMINI_API_KEY",
    "mistral": "MISTRAL_API_KEY",
    "groq": "GROQ_API_KEY",
    "cohere": "COHERE_API_KEY",
    "together_ai": "TOGETHERAI_API_KEY",
    "deepseek": "DEEPSEEK_API_KEY",
    "openrouter": "OPENROUTER_API_KEY",
    "xai": "XAI_API_KEY",
    "fireworks_ai": "FIREWORKS_AI_API_KEY",
    "azure": "AZURE_API_KEY",
    "hosted_vllm": "HOSTED_VLLM_API_KEY",
}


def key_env_var(model: str) -> str:
    """The environment variable `model`'s API key is read from (``<PROVIDER>_API_KEY`` for a provider
    not in :data:`KEY_ENV_VARS`, ``OPENAI_API_KEY`` for a model string without one)."""
    provider = provider_of(model)
    return KEY_ENV_VARS.get(provider) or f"{provider.upper() or 'OPENAI'}_API_KEY"


TRANSPORTS = ("auto", "litellm", "http")
#: Providers the direct HTTP transport serves when an api_base is set (transport="auto").
HTTP_PROVIDERS = ("openai", "hosted_vllm")
#: Parameters only litellm understands: a config using one stays on litellm under "auto".
LITELLM_ONLY_PARAMS = frozenset(
    {
        "mock_response",
        "drop_params",
        "additional_drop_params",
        "allowed_openai_params",
        "custom_llm_provider",
        "api_version",
        "extra_headers",
        "headers",
        "metadata",
        "caching",
        "cache",
        "num_retries",
        "fallbacks",
        "base_model",
        "input_cost_per_token",
        "output_cost_per_token",
        "litellm_logging_obj",
        "organization",
    }
)


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
            raise ConfigError(
                f"model {self.model}: pass api_key as ModelConfig(api_key=...) or an environment "
                "variable, not in params (params are recorded)"
            )
        if self.timeout <= 0:
            raise ConfigError(f"model {self.model}: timeout must be > 0 seconds, got {self.timeout}")
        if self.max_retries < 0:
            raise ConfigError(f"model {self.model}: max_retries must be >= 0, got {self.max_retries}")
        if self.transport not in TRANSPORTS:
            raise ConfigError(
                f"model {self.model}: transport must be one of {', '.join(TRANSPORTS)}, got {self.transport!r}"
            )
        if self.transport == "http" and not self.api_base and provider_of(self.model) != "openai":
            raise ConfigError(f"model {self.model}: transport='http' needs api_base (the server's /v1 URL)")
        object.__setattr__(self, "params", dict(self.params))

    def __hash__(self) -> int:
        params = canonical_json(dict(self.params), default=repr)
        return hash((self.model, params, self.api_base, self.timeout, self.max_retries))

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
        return ModelConfig(
            self.model, merged, self.api_base, self.timeout, self.max_retries, self.api_key, self.transport
        )

    def uses_http(self) -> bool:
        """Whether calls go to the direct OpenAI-compatible HTTP client instead of litellm."""
        if self.transport != "auto":
            return self.transport == "http"
        return (
            bool(self.api_base)
            and provider_of(self.model) in HTTP_PROVIDERS
            and not LITELLM_ONLY_PARAMS.intersection(self.params)
        )

    def public_dict(self) -> dict[str, Any]:
        """What artifacts record: the model and its sampling parameters, never keys or endpoints."""
        return {"model": self.model, "params": dict(sorted(self.params.items()))}


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


#: A model given as a string, a ModelConfig, or None for the default.
ModelSpec = Union[str, ModelConfig, None]


def parse_model(text: str) -> tuple[str, dict[str, Any]]:
    """A model string with optional sampling parameters after it: ``"local/smollm2 temperature=0.7"``.

    Values are read as YAML scalars (numbers, booleans, strings). Raises ConfigError on a part that
    is not ``key=value``."""
    import yaml

    parts = text.split()
    if not parts:
        raise ConfigError("model string is empty: use e.g. 'openai/gpt-4o-mini' or 'local/smollm2 temperature=0.7'")
    params: dict[str, Any] = {}
    for part in parts[1:]:
        key, sep, value = part.partition("=")
        if not sep or not key:
            raise ConfigError(f"model {text!r}: {part!r} is not key=value (e.g. temperature=0.7)")
        if key == "api_key":
            raise ConfigError(f"model {text!r}: pass the key in the provider's environment variable, not here")
        params[key] = yaml.safe_load(value)
    return parts[0], params


def model_config(spec: ModelSpec, defaults: Mapping[str, Any], fallback: str = DEFAULT_MODEL) -> ModelConfig:
    """Turn a model string or ModelConfig into a ModelConfig with `defaults` under its own params."""
    if spec is None:
        return ModelConfig(model=fallback, params=dict(defaults))
    if isinstance(spec, str):
        if not spec.strip():
            raise ConfigError("model string is empty: use e.g. 'local/smollm2' or 'openai/gpt-4o-mini'")
        return ModelConfig(model=spec.strip(), params=dict(defaults))
    if isinstance(spec, ModelConfig):
        merged = {**defaults, **dict(spec.params)}
        return ModelConfig(
            model=spec.model,
            params=merged,
            api_base=spec.api_base,
            api_key=spec.api_key,
            timeout=spec.timeout,
            max_retries=spec.max_retries,
            transport=spec.transport,
        )
    raise ConfigError(f"model must be a litellm model string or ModelConfig, got {type(spec).__name__}")
