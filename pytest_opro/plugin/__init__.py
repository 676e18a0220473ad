"""The pytest side of pytest-opro: hooks (the ``pytest11`` entry point ``opro``), options, the
per-run session, the ``opro`` fixture, hookspecs, progress lines, error display and the fixtures
of the paper's problems.

May import every other part of the package; nothing in the package imports it.
"""

from pytest_opro.plugin.hooks import *  # noqa: F401,F403  (pytest registers this module's hooks)
