"""Model calls through litellm's Router (``--opro-router router.yaml``): deployments, fallbacks, limits.

The file is litellm's own configuration, plus one optional section of ours::

    model_list:                      # litellm's format: several deployments may share a model_name
      - model_name: gpt-4o-mini      # the name tasks and --opro-model use (and the cache key holds)
        litellm_params:
          model: openai/gpt-4o-mini
          api_key: os.environ/OPENAI_API_KEY
          rpm: 500                   # this deployment's requests per minute
    router_settings:                 # keyword arguments of litellm.Router
      routing_strategy: simple-shuffle
      fallbacks: [{gpt-4o-mini: [gpt-4o]}]
      redis_url: os.environ/ROUTER_REDIS_URL   # litellm's usage counters, and our pacing, in Redis
    pacing:                          # pytest-opro: hold each deployment's rpm as an even rate
      enabled: true                  # (default: on for every deployment with an rpm)
      burst: 1                       # requests that may go back to back after an idle spell
      max_wait: 60                   # a slot further away than this is refused and retried like a 429
      redis_url: null                # default: router_settings' Redis; none: this process only

Strings ``os.environ/NAME`` are read from the environment when the Router is built (litellm's
convention). Retries stay ours (the Router runs with ``num_retries=0``), and so do accounting and
the response cache (its key holds the ``model_name``, never a deployment). Deployment names, endpoints,
keys and ids are secrets here: error messages and log records are scrubbed of them, and artifacts and
reports only ever see the ``model_name``.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

from pytest_opro.errors import ConfigError, ProviderError

ENV_PREFIX = "os.environ/"
#: Router settings pytest-opro sets itself.
FORCED_SETTINGS = {"num_retries": 0}
#: Router settings that would change what pytest-opro guarantees.
REFUSED_SETTINGS = {
    "cache_responses": "litellm's response cache would answer before pytest-opro's (use --opro-cache / "
    "--opro-cache-url)",
}
#: Top-level keys accepted as router settings too (litellm's proxy config puts them under router_settings).
TOP_LEVEL_SETTINGS = (
    "routing_strategy",
    "fallbacks",
    "redis_url",
    "redis_host",
    "redis_port",
    "redis_password",
    "routing_strategy_args",
    "cooldown_time",
    "allowed_fails",
    "timeout",
)
PACING_KEYS = ("enabled", "burst", "max_wait", "redis_url")
_REDIS_DB_DEFAULT = 0


# ----------------------------------------------------------------------------------------------
# the file
# ----------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Pacing:
    enabled: bool | None = None  # None: on when a deployment has an rpm
    burst: int = 1
    max_wait: float = 60.0
    redis_url: str | None = None  # may be "os.environ/NAME"


@dataclass
class RouterConfig:
    """A validated router file. Nothing is read from the environment until :meth:`resolved`."""

    path: str
    model_list: list[dict[str, Any]]
    settings: dict[str, Any] = field(default_factory=dict)
    pacing: Pacing = field(default_factory=Pacing)

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> "RouterConfig":
        """Read and check the YAML file; ConfigError naming the file and the field otherwise."""
        import yaml

        where = str(path)
        try:
            text = Path(path).read_text(encoding="utf-8")
        except OSError as exc:
            raise ConfigError(f"router file {where}: cannot read it ({exc.strerror or exc})") from None
        try:
            data = yaml.safe_load(text)
        except yaml.YAMLError as exc:
            mark = getattr(exc, "problem_mark", None)
            line = f" line {mark.line + 1}" if mark is not None else ""
            raise ConfigError(f"router file {where}:{line} is not valid YAML") from None
        return cls.from_dict(data, where)

    @classmethod
    def from_dict(cls, data: Any, where: str = "router config") -> "RouterConfig":
        if not isinstance(data, Mapping):
            raise ConfigError(f"router file {where}: expected a mapping with model_list, got {type(data).__name__}")
        known = {"model_list", "router_settings", "pacing", *TOP_LEVEL_SETTINGS}
        unknown = sorted(set(map(str, data)) - known)
        if unknown:
            raise ConfigError(
                f"router file {where}: unknown key(s) {', '.join(unknown)}; "
                "expected model_list, router_settings, pacing"
            )
        models = data.get("model_list")
        if not isinstance(models, list) or not models:
            raise ConfigError(f"router file {where}: model_list must be a non-empty list of deployments")
        model_list: list[dict[str, Any]] = []
        for i, entry in enumerate(models, 1):
            label = f"router file {where}: model_list entry {i}"
            if not isinstance(entry, Mapping):
                raise ConfigError(f"{label} must be a mapping with model_name and litellm_params")
            name = entry.get("model_name")
            if not isinstance(name, str) or not name.strip():
                raise ConfigError(f"{label}: model_name must be a non-empty string")
            params = entry.get("litellm_params")
            if not isinstance(params, Mapping) or not isinstance(params.get("model"), str) or not params["model"]:
                raise ConfigError(
                    f"{label} ({name}): litellm_params.model must name the provider's model, e.g. openai/gpt-4o-mini"
                )
            for limit in ("rpm", "tpm"):
                value = params.get(limit, entry.get(limit))
                if value is not None and (isinstance(value, bool) or not isinstance(value, (int, float)) or value <= 0):
                    raise ConfigError(f"{label} ({name}): {limit} must be a positive number, got {value!r}")
            info = entry.get("model_info")
            if info is not None and not isinstance(info, Mapping):
                raise ConfigError(f"{label} ({name}): model_info must be a mapping")
            model_list.append(json.loads(json.dumps(dict(entry))))
        settings = data.get("router_settings") or {}
        if not isinstance(settings, Mapping):
            raise ConfigError(f"router file {where}: router_settings must be a mapping")
        settings = dict(settings)
        for key in TOP_LEVEL_SETTINGS:
            if key in data:
                settings.setdefault(key, data[key])
        for key, why in REFUSED_SETTINGS.items():
            if settings.get(key):
                raise ConfigError(f"router file {where}: router_settings.{key} is not supported: {why}")
        for key in FORCED_SETTINGS:
            settings.pop(key, None)
        strategy = settings.get("routing_strategy")
        if strategy is not None and not isinstance(strategy, str):
            raise ConfigError(f"router file {where}: routing_strategy must be a string such as simple-shuffle")
        fallbacks = settings.get("fallbacks")
        if fallbacks is not None and not isinstance(fallbacks, list):
            raise ConfigError(f"router file {where}: fallbacks must be a list such as [{{gpt-4o-mini: [gpt-4o]}}]")
        pacing = data.get("pacing") or {}
        if not isinstance(pacing, Mapping):
            raise ConfigError(f"router file {where}: pacing must be a mapping ({', '.join(PACING_KEYS)})")
        bad = sorted(set(map(str, pacing)) - set(PACING_KEYS))
        if bad:
            raise ConfigError(
                f"router file {where}: unknown pacing key(s) {', '.join(bad)}; known: {', '.join(PACING_KEYS)}"
            )
        try:
            enabled = pacing.get("enabled")
            if enabled is not None and not isinstance(enabled, bool):
                raise ValueError("pacing.enabled must be true or false")
            burst = int(pacing.get("burst", 1))
            max_wait = float(pacing.get("max_wait", 60.0))
            if burst < 1 or not max_wait > 0:
                raise ValueError("pacing.burst must be >= 1 and pacing.max_wait > 0")
        except (TypeError, ValueError) as exc:
            text = str(exc) if "pacing" in str(exc) else "pacing.burst and pacing.max_wait must be numbers"
            raise ConfigError(f"router file {where}: {text}") from None
        redis_url = pacing.get("redis_url")
        if redis_url is not None and not isinstance(redis_url, str):
            raise ConfigError(f"router file {where}: pacing.redis_url must be a redis:// URL")
        return cls(where, model_list, settings, Pacing(enabled, burst, max_wait, redis_url))

    # -- reading it ----------------------------------------------------------------------------
    def model_names(self) -> list[str]:
        return list(dict.fromkeys(str(d["model_name"]) for d in self.model_list))

    def deployment_models(self) -> dict[str, list[str]]:
        """The provider models behind each model_name (for capability look-ups such as prefill)."""
        out: dict[str, list[str]] = {}
        for d in self.model_list:
            model = d["litellm_params"]["model"]
            if not model.startswith(ENV_PREFIX):
                out.setdefault(d["model_name"], []).append(model)
        return out

    def resolved(self) -> "ResolvedRouter":
        """The configuration with ``os.environ/NAME`` values read, ids assigned and secrets collected."""
        secrets: set[str] = set()
        names = set(self.model_names())

        def resolve(value: Any, field_name: str) -> Any:
            if isinstance(value, str) and value.startswith(ENV_PREFIX):
                var = value[len(ENV_PREFIX) :]
                got = os.environ.get(var)
                if got is None:
                    raise ConfigError(
                        f"router file {self.path}: {field_name} reads the environment variable {var}, which is not set"
                    )
                return got
            if isinstance(value, list):
                return [resolve(v, field_name) for v in value]
            if isinstance(value, Mapping):
                return {k: resolve(v, f"{field_name}.{k}") for k, v in value.items()}
            return value

        def collect(value: Any) -> None:
            if isinstance(value, str):
                if len(value) >= 4 and value not in names:
                    secrets.add(value)
            elif isinstance(value, list):
                for v in value:
                    collect(v)
            elif isinstance(value, Mapping):
                for v in value.values():
                    collect(v)

        deployments: list[dict[str, Any]] = []
        paced: dict[str, tuple[str, float]] = {}
        seen_ids: set[str] = set()
        for i, entry in enumerate(self.model_list, 1):
            name = entry["model_name"]
            params = resolve(entry["litellm_params"], f"model_list entry {i} ({name}) litellm_params")
            info = resolve(dict(entry.get("model_info") or {}), f"model_list entry {i} ({name}) model_info")
            ident = str(info.get("id") or _deployment_id(params))
            while ident in seen_ids:
                ident = hashlib.sha256(ident.encode()).hexdigest()[:24]
            seen_ids.add(ident)
            info["id"] = ident
            collect(params)
            collect(ident)
            deployment = {k: v for k, v in entry.items() if k not in ("litellm_params", "model_info")}
            deployment.update(model_name=name, litellm_params=params, model_info=info)
            deployments.append(deployment)
            rpm = params.get("rpm", entry.get("rpm", info.get("rpm")))
            if rpm:
                paced[ident] = (name, float(rpm) / 60.0)
        settings = resolve(dict(self.settings), "router_settings")
        for key in ("redis_url", "redis_host", "redis_password"):
            collect(settings.get(key))
        pacing_url = resolve(self.pacing.redis_url, "pacing.redis_url") if self.pacing.redis_url else None
        if pacing_url is None:
            pacing_url = _settings_redis_url(settings)
        collect(pacing_url)
        enabled = self.pacing.enabled if self.pacing.enabled is not None else bool(paced)
        return ResolvedRouter(
            model_list=deployments,
            settings={**settings, **FORCED_SETTINGS},
            paced=paced if enabled else {},
            pacing=self.pacing,
            pacing_url=pacing_url,
            secrets=tuple(sorted(secrets, key=len, reverse=True)),
        )


def _deployment_id(params: Mapping[str, Any]) -> str:
    """A stable id: the same provider model, endpoint and key on every runner share one rate limit."""
    ident = json.dumps([params.get("model"), params.get("api_base"), params.get("api_key")], default=str)
    return "d" + hashlib.sha256(ident.encode("utf-8")).hexdigest()[:23]


def _settings_redis_url(settings: Mapping[str, Any]) -> str | None:
    if settings.get("redis_url"):
        return str(settings["redis_url"])
    host = settings.get("redis_host")
    if not host:
        return None
    from urllib.parse import quote

    password = settings.get("redis_password")
    auth = f":{quote(str(password), safe='')}@" if password else ""
    return f"redis://{auth}{host}:{int(settings.get('redis_port') or 6379)}/{_REDIS_DB_DEFAULT}"


@dataclass(frozen=True)
class ResolvedRouter:
    model_list: list[dict[str, Any]]
    settings: dict[str, Any]
    paced: dict[str, tuple[str, float]]  # deployment id -> (model_name, requests per second)
    pacing: Pacing
    pacing_url: str | None
    secrets: tuple[str, ...]


# ----------------------------------------------------------------------------------------------
# redaction of deployments in messages and logs
# ----------------------------------------------------------------------------------------------
_REDACT_LOCK = threading.Lock()
_SECRETS: set[str] = set()
_factory_installed = False


def scrub(text: str, secrets: tuple[str, ...] | None = None) -> str:
    """`text` without any deployment name, endpoint, key or id of a router built in this process."""
    for secret in secrets if secrets is not None else sorted(_SECRETS, key=len, reverse=True):
        if secret in text:
            text = text.replace(secret, "***")
    return text


def _install_log_scrubber(secrets: tuple[str, ...]) -> None:
    """Scrub every log record created in this process (any logger: litellm, httpx, openai, ...)."""
    global _factory_installed
    with _REDACT_LOCK:
        _SECRETS.update(secrets)
        if _factory_installed:
            return
        previous = logging.getLogRecordFactory()

        def factory(*args: Any, **kwargs: Any) -> logging.LogRecord:
            record = previous(*args, **kwargs)
            try:
                message = record.getMessage()
            except Exception:  # noqa: BLE001 - a broken record is logging's business
                return record
            clean = scrub(message)
            if clean != message:
                record.msg, record.args = clean, ()
            if record.exc_info and record.exc_info[1] is not None:
                exc = record.exc_info[1]
                text = str(exc)
                if scrub(text) != text:
                    record.exc_info = None
                    record.exc_text = f"{type(exc).__name__}: {scrub(text)}"
            return record

        logging.setLogRecordFactory(factory)
        _factory_installed = True


# ----------------------------------------------------------------------------------------------
# the pacing hook (one per process, for every router built here)
# ----------------------------------------------------------------------------------------------
_PACED: dict[str, tuple[Any, str, float]] = {}  # deployment id -> (pacer, model_name, per second)
_hook: Any = None


def _ensure_hook(litellm: Any) -> None:
    global _hook
    with _REDACT_LOCK:
        if _hook is None:
            from litellm.integrations.custom_logger import CustomLogger

            class _PacingHook(CustomLogger):
                """Waits for the picked deployment's next slot before the Router sends the call."""

                async def async_pre_call_check(
                    self, deployment: dict[str, Any], parent_otel_span: Any = None
                ) -> dict[str, Any] | None:
                    ident = (deployment.get("model_info") or {}).get("id")
                    entry = _PACED.get(ident) if ident is not None else None
                    if entry is not None:
                        pacer, name, per_second = entry
                        await pacer.acquire(ident, per_second, label=f"a deployment of {name}")
                    return None

            _hook = _PacingHook()
        if _hook not in litellm.callbacks:
            litellm.callbacks.append(_hook)


class RouterBridge:
    """One litellm.Router for this process, built on the first call that needs it."""

    def __init__(self, config: RouterConfig) -> None:
        self.config = config
        self.names = set(config.model_names())
        self._router: Any = None
        self._resolved: ResolvedRouter | None = None
        self._pacer: Any = None
        self._lock = threading.Lock()
        from pytest_opro.models import litellm_bridge

        litellm_bridge.register_aliases(config.deployment_models())

    @property
    def max_wait(self) -> float:
        return self.config.pacing.max_wait

    def knows(self, model: str) -> bool:
        return model in self.names

    def deployments_of(self, model: str) -> list[str]:
        """The provider models behind a model_name (as written in the file)."""
        return self.config.deployment_models().get(model, [])

    def scrub(self, text: str) -> str:
        return scrub(text, self._resolved.secrets) if self._resolved is not None else scrub(text)

    def provider_error(self, litellm: Any, config: Any, exc: BaseException) -> ProviderError:
        """The one-line error for a call that failed for good, scrubbed; a rejected key points at this file."""
        from pytest_opro.models.retry import provider_error

        error = provider_error(litellm, config, exc, scrub=self.scrub)
        text = str(error)
        for problem in ("authentication failed", "permission denied"):
            if text.startswith(f"model {config.model}: {problem}"):
                error.args = (
                    f"model {config.model}: {problem} at a deployment; check the api_key of the "
                    f"deployments of {config.model} in the router file {self.config.path}",
                )
        return error

    def unknown_model(self, model: str) -> str:
        names = ", ".join(sorted(self.names))
        return (
            f"model {model} is not a model_name of the router file {self.config.path} "
            f"(model names: {names}); add deployments for it there or choose one of those"
        )

    def router(self) -> Any:
        if self._router is None:
            with self._lock:
                if self._router is None:
                    self._router = self._build()
        return self._router

    def _build(self) -> Any:
        from pytest_opro.models.litellm_bridge import ensure_local, get_litellm, quiet_pydantic
        from pytest_opro.models.rate_limit import Pacer

        resolved = self.config.resolved()
        _install_log_scrubber(resolved.secrets)
        self._resolved = resolved
        for deployment in resolved.model_list:
            model = deployment["litellm_params"]["model"]
            if model.startswith("local/"):
                ensure_local(model)
        litellm = get_litellm()
        if resolved.paced:
            self._pacer = Pacer(resolved.pacing_url, burst=resolved.pacing.burst, max_wait=resolved.pacing.max_wait)
            for ident, (name, per_second) in resolved.paced.items():
                _PACED[ident] = (self._pacer, name, per_second)
            _ensure_hook(litellm)
        try:
            with quiet_pydantic():  # litellm builds its router types' models on first use
                return litellm.Router(model_list=resolved.model_list, **resolved.settings)
        except Exception as exc:  # noqa: BLE001 - litellm's own validation, scrubbed
            text = scrub(" ".join(str(exc).split()), resolved.secrets)
            raise ConfigError(f"router file {self.config.path}: litellm.Router refused it: {text}") from None

    async def acompletion(
        self, model: str, messages: list[dict[str, Any]], params: Mapping[str, Any], timeout: float
    ) -> Any:
        router = self.router()
        kwargs = dict(params)
        kwargs.update(model=model, messages=messages, timeout=timeout, num_retries=0)
        return await router.acompletion(**kwargs)

    def close(self) -> None:
        if self._pacer is not None:
            self._pacer.close()


def open_router(path: str | os.PathLike[str] | None) -> RouterBridge | None:
    """A RouterBridge for the file, or None without one."""
    if path is None:
        return None
    return RouterBridge(RouterConfig.load(path))
