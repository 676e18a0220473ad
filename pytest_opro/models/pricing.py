"""Prices of calls in USD: litellm's price table, read without importing litellm when possible."""

from __future__ import annotations

import json
import os
import sys
from typing import Any, Mapping

from pytest_opro.models.config import LOCAL_PREFIX, provider_of
from pytest_opro.models.litellm_bridge import get_litellm, handler_for, loaded_litellm


def handler_cost(model: str) -> tuple[bool, float | None]:
    """Whether a custom provider handler serves `model`, and the price per call it declares
    (``cost_per_call``, e.g. 0.0 for the embedded model; None when it declares none)."""
    handler = handler_for(model)
    if handler is None:
        return False, None
    cost = getattr(handler, "cost_per_call", None)
    return True, float(cost) if isinstance(cost, (int, float)) else None


def estimate_cost(model: str, prompt_tokens: int, completion_tokens: int, calls: int = 1) -> float | None:
    """Price in USD of `calls` calls using these token counts in total, or None when unknown."""
    if model.startswith(LOCAL_PREFIX):
        return 0.0
    custom, per_call = handler_cost(model)
    if custom:
        return per_call * calls if per_call is not None else None
    if loaded_litellm() is None and "litellm" not in sys.modules:
        return table_cost(model, prompt_tokens, completion_tokens)
    try:
        prompt_cost, completion_cost = get_litellm().cost_per_token(
            model=model, prompt_tokens=int(prompt_tokens), completion_tokens=int(completion_tokens)
        )
        return float(prompt_cost) + float(completion_cost)
    except Exception:
        return None


_price_table: dict[str, Any] | None = None
_token_prices: dict[str, tuple[float, float] | None] = {}


def _load_price_table() -> dict[str, Any]:
    """litellm's price table: its live dict when litellm is loaded, else its bundled JSON file read
    without importing litellm (~50 ms once, instead of seconds); {} when neither is available."""
    global _price_table
    litellm = loaded_litellm()
    if litellm is not None and isinstance(getattr(litellm, "model_cost", None), dict):
        table: dict[str, Any] = litellm.model_cost
        return table
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


def table_cost(model: str, prompt_tokens: int, completion_tokens: int) -> float | None:
    """Plain per-token price of a call from the price table; None when the model is not listed."""
    if model not in _token_prices:
        table = _load_price_table()
        provider = provider_of(model)
        entry = table.get(model)
        if entry is None and provider:
            entry = table.get(model.split("/", 1)[1])
            if isinstance(entry, Mapping) and entry.get("litellm_provider") != provider:
                entry = None
        try:
            if not isinstance(entry, Mapping):
                raise TypeError(model)
            _token_prices[model] = (float(entry["input_cost_per_token"]), float(entry["output_cost_per_token"]))
        except (KeyError, TypeError, ValueError):
            _token_prices[model] = None
    prices = _token_prices[model]
    if prices is None:
        return None
    return prices[0] * int(prompt_tokens) + prices[1] * int(completion_tokens)


def usage_tokens(response: Any) -> tuple[int, int]:
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


def response_cost(litellm: Any, response: Any, model: str) -> float | None:
    """The price of one litellm response: the custom handler's, else litellm's (None when unknown)."""
    custom, per_call = handler_cost(model)
    if custom:
        return per_call
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
