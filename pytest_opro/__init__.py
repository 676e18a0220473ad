"""pytest-opro: optimise LLM prompts with OPRO and gate them in CI like code.

Public API::

    from pytest_opro import PromptTask, load_examples, metrics, optimize, compare_models

Importing this package is cheap: litellm is imported only when the first model call is made.
"""

from __future__ import annotations

import os
from typing import Any

# litellm otherwise downloads its price list at import time; a user's own setting wins. This is the
# one place that sets it: every module that imports litellm is inside this package.
os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")

__version__ = "0.1.0"

#: public name -> (module, attribute); attribute None exports the module itself
_EXPORTS: dict[str, tuple[str, str | None]] = {
    "PromptTask": ("prompts.task", "PromptTask"),
    "Example": ("prompts.examples", "Example"),
    "load_examples": ("prompts.examples", "load_examples"),
    "split_examples": ("prompts.splits", "split_examples"),
    "metrics": ("prompts.metrics", None),
    "optimize": ("prompts.optimization", "optimize"),
    "optimize_async": ("prompts.optimization", "optimize_async"),
    "compare_models": ("prompts.compare", "compare_models"),
    "ModelComparison": ("prompts.compare", "ModelComparison"),
    "score_instruction": ("prompts.optimization", "score_instruction"),
    "Result": ("prompts.result", "Result"),
    "OptimizerSettings": ("opro.settings", "OptimizerSettings"),
    "ModelConfig": ("models.config", "ModelConfig"),
    "Budget": ("models.config", "Budget"),
    "load_instruction": ("prompts.artifact", "load_instruction"),
    "OproError": ("errors", "OproError"),
}

__all__ = sorted(_EXPORTS) + ["__version__"]


def __getattr__(name: str) -> Any:
    """Import public names on first use so `import pytest_opro` stays fast."""
    if name not in _EXPORTS:
        raise AttributeError(f"module 'pytest_opro' has no attribute {name!r}")
    from importlib import import_module

    module, attr = _EXPORTS[name]
    imported = import_module(f"{__name__}.{module}")
    value = imported if attr is None else getattr(imported, attr)
    globals()[name] = value
    return value
