"""A scripted prompt task for the action's own tests and for ci.yml's ``uses: ./`` job.

Sixty yes/no questions answered by the test suite's fake provider (``tests/support/fake_provider.py``): an
example is answered right when the prompt holds enough of five keywords, so the committed
instruction (``__opro__/yesno.yaml``, written by ``pytest --opro-optimize`` over the scripted
optimizer below) scores the same on every run, with no model and no network.
``OPRO_FAKE_KEYWORDS`` changes the keywords the fake scorer rewards ("|"-separated): the tests make
the gate fail by swapping one out, as a provider changing behind the same model name would.

Re-write the artifact after changing this file: ``pytest .github/action-selftest --opro-optimize``.
"""

import os
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # the repository, for tests.support.fake_provider

from pytest_opro import PromptTask  # noqa: E402
from pytest_opro.prompts.examples import examples_from_records  # noqa: E402
from tests.support.fake_provider import FakeBrain, install  # noqa: E402

KEYWORDS = "step by step|carefully|double-check|think|be precise"
SCRIPT = [
    "<INS>Answer the question.</INS>",
    "<INS>Answer carefully.</INS>",
    "<INS>Go step by step, carefully.</INS>",
    "<INS>Be precise.</INS>",
    "<INS>Think, then be precise.</INS>",
    "<INS>Think step by step, be precise.</INS>",
    "<INS>Reply in one word.</INS>",
    "<INS>Double-check and think.</INS>",
    "<INS>Think step by step, carefully, and double-check.</INS>",
    "<INS>Double-check.</INS>",
    "<INS>Be precise, double-check, think.</INS>",
    "<INS>Carefully double-check.</INS>",
    "<INS>Say yes or no.</INS>",
    "<INS>Carefully, step by step, be precise.</INS>",
    "<INS>Be precise, think, double-check, step by step.</INS>",
]
ROWS = [
    {
        "id": f"q{i:03d}",
        "input": f"Question q{i:03d}: is {i * 7 + 3} odd?",
        "target": "yes" if (i * 7 + 3) % 2 else "no",
        "choices": ["yes", "no"],
    }
    for i in range(60)
]


@pytest.fixture
def yesno_task():
    examples = examples_from_records(ROWS, source="yesno")
    brain = FakeBrain(keywords=os.environ.get("OPRO_FAKE_KEYWORDS", KEYWORDS).split("|"), optimizer=SCRIPT)
    install(brain).learn(examples)
    return PromptTask(
        name="yesno",
        examples=examples,
        metric="choice",
        scorer="fake/scorer",
        optimizer="fake/optimizer",
        settings={"max_steps": 8, "candidates": 3, "patience": 2},
    )
