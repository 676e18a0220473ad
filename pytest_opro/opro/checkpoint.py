"""Per-step checkpoints so an interrupted optimisation resumes where it stopped.

A checkpoint is a JSON file keyed by a fingerprint of everything that shapes the run (task,
models, settings). A checkpoint with another key is ignored, never mixed in.
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path
from typing import Any

from pytest_opro.opro.atomic import write_text_atomic

CHECKPOINT_VERSION = 1


class Checkpoint:
    """Saves and loads loop state at `path` for the run identified by `key`."""

    def __init__(self, path: str | Path, key: str) -> None:
        self.path = Path(path)
        self.key = key

    def save(self, state: dict[str, Any]) -> None:
        payload = {"version": CHECKPOINT_VERSION, "key": self.key, "state": state}
        write_text_atomic(self.path, json.dumps(payload, ensure_ascii=False))

    def load(self) -> dict[str, Any] | None:
        """The saved state, or None when there is none for this run (a corrupt file is ignored)."""
        try:
            payload = json.loads(self.path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return None
        except (OSError, ValueError):
            warnings.warn(f"pytest-opro: ignoring unreadable checkpoint {self.path}; starting afresh", stacklevel=2)
            return None
        if payload.get("version") != CHECKPOINT_VERSION or payload.get("key") != self.key:
            return None
        state = payload.get("state")
        return state if isinstance(state, dict) else None

    def clear(self) -> None:
        """Remove the checkpoint once its run has finished and its result is stored."""
        try:
            self.path.unlink()
        except FileNotFoundError:
            pass
