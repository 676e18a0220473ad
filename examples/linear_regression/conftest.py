"""The linear-regression example: the OPRO paper's first experiment, run by the same loop as prompts."""

from __future__ import annotations

from typing import Any

import pytest


@pytest.fixture
def regression_instance() -> dict[str, Any]:
    """The line to recover: the paper's (w_true, b_true) = (15, 14), noise sd 1, seed 0."""
    return {"w_true": 15, "b_true": 14, "noise": 1.0, "seed": 0}
