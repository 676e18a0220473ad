"""The start of a pytester conftest for a two-label task ("Is 7 a lucky number?": odd is "yes"),
100 examples, scored by the fake provider. A test appends its own scorer and fixture and formats
the whole with ``repo=`` (braces meant for the conftest are doubled)."""

CONFTEST_HEAD = """
import json
import os
import sys

sys.path.insert(0, {repo!r})

import pytest
from pytest_opro import PromptTask
from pytest_opro.prompts.examples import examples_from_records
from tests.support.fake_provider import FakeBrain, install

ROWS = [{{"id": f"q{{i:03d}}", "input": f"Is {{i}} a lucky number?", "target": "yes" if i % 2 else "no",
         "choices": ["yes", "no"]}} for i in range(100)]
TARGETS = {{r["input"]: r["target"] for r in ROWS}}
"""
