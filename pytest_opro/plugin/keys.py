"""Where the plugin keeps its state: ``config.stash`` keys and the xdist worker-output key."""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from pytest_opro.plugin.session import OproSession

#: The run's OproSession.
SESSION_KEY: pytest.StashKey[OproSession] = pytest.StashKey()
#: How many tests ``-k``/``-m`` deselected (obsolete-artifact notes need a full run).
DESELECTED_KEY: pytest.StashKey[int] = pytest.StashKey()
#: Notes for the terminal summary, made at session finish.
NOTES_KEY: pytest.StashKey[list[str]] = pytest.StashKey()
#: ``config.workeroutput`` key under which xdist workers send their task records.
WORKER_RECORDS = "opro_records"
