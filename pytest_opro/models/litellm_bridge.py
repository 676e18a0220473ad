"""litellm, imported lazily and quietly, plus the registry of custom providers (``local/`` among them).

Importing litellm costs seconds, so nothing here imports it until the first call needs it.
"""

from __future__ import annotations

import contextlib
import importlib
import io
import logging
import os
import threading
import warnings
from typing import Any, Iterator, Mapping

from pytest_opro.errors import ConfigError
from pytest_opro.models.config import provider_of

_litellm: Any = None
_import_lock = threading.Lock()
_providers: dict[str, Any] = {}

#: Providers that continue a trailing assistant message (needed for the A_begin position).
PREFILL_PREFIXES = ("local/", "anthropic/")


def loaded_litellm() -> Any:
    """litellm when it has been imported already, else None (never imports it)."""
    return _litellm


def handler_for(model: str) -> Any:
    """The custom provider handler registered for this model's prefix, if any."""
    return _providers.get(provider_of(model))


def get_litellm() -> Any:
    """Import and configure litellm once (quietly, without network)."""
    global _litellm
    if _litellm is not None:
        return _litellm
    with _import_lock:
        if _litellm is None:
            with contextlib.redirect_stdout(io.StringIO()), quiet_pydantic():
                import litellm

                _import_deferred(litellm)
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


#: Modules litellm imports only at its first call, whose pydantic models warn while they are built.
_DEFERRED_MODULES = ("litellm.types.router", "litellm.llms.github_copilot.per_user_auth")


@contextlib.contextmanager
def quiet_pydantic() -> Iterator[None]:
    """Silence the UserWarnings pydantic raises while it builds litellm's models (e.g. "Item 'index'
    on TypedDict class 'ChatCompletionThinkingBlock' is using the `ReadOnly` qualifier"); any other
    warning, and any warning after litellm is loaded, still shows."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", category=UserWarning, module=r"pydantic(\.|$)")
        yield


def _import_deferred(litellm: Any) -> None:
    """Import now what litellm would import at its first call (and build its response model), so
    that pydantic's warnings about litellm's own types arise here, inside :func:`quiet_pydantic`."""
    for name in _DEFERRED_MODULES:
        try:
            importlib.import_module(name)
        except Exception:  # noqa: BLE001 - another litellm version: nothing deferred to import here
            pass
    try:
        litellm.ModelResponse()
    except Exception:  # noqa: BLE001 - as above
        pass


def _apply_provider(litellm: Any, prefix: str, handler: Any) -> None:
    entries = [item for item in litellm.custom_provider_map if item.get("provider") != prefix]
    entries.append({"provider": prefix, "custom_handler": handler})
    litellm.custom_provider_map[:] = entries
    try:
        from litellm.utils import custom_llm_setup

        custom_llm_setup()  # type: ignore[no-untyped-call]
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


_local_ready: set[str] = set()
#: model_name -> provider models behind it, for names a litellm Router serves (see models/router.py).
_aliases: dict[str, tuple[str, ...]] = {}


def register_aliases(aliases: Mapping[str, Any]) -> None:
    """Tell capability look-ups which provider models a Router's model_name stands for."""
    for name, models in aliases.items():
        _aliases[str(name)] = tuple(str(m) for m in models)


def ensure_local(model: str) -> None:
    """Register the embedded provider on first use; a missing extra or file is one clear error.

    Checked once per model and process: the check reads package metadata, too slow for every call.
    """
    if model in _local_ready:
        return
    from pytest_opro.models.local import files, provider

    files.check(model)
    register_provider(files.PREFIX, provider.handler())
    _local_ready.add(model)


def supports_prefill(model: str) -> bool:
    """Whether the model continues a trailing assistant message (needed for A_begin position).

    A Router's model_name supports it when every deployment behind it does."""
    behind = _aliases.get(model)
    if behind and behind != (model,):
        return all(supports_prefill(m) for m in behind)
    if model.startswith(PREFILL_PREFIXES):
        return True
    handler = handler_for(model)
    if handler is not None:
        return bool(getattr(handler, "supports_prefill", False))
    try:
        info = get_litellm().get_model_info(model)
        return bool(info.get("supports_assistant_prefill"))
    except Exception:
        return False


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
