"""The travelling-salesman example: the OPRO paper's second experiment, run by the same loop as prompts."""

from __future__ import annotations

from typing import Any

import pytest


@pytest.fixture
def tsp_instance() -> dict[str, Any]:
    """A small instance (6 random points, seed 0) so that the embedded model finishes quickly."""
    return {"n": 6, "seed": 0}
