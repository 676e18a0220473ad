"""End to end on the real embedded model (SmolLM2-135M through llama-cpp-python), no fakes.

A small task is optimised with ``pytest --opro-optimize`` (a dozen training examples, two steps,
four candidates), the artifact is written, the gate passes on it with the cache off (so the model
really answers again), and a corrupted instruction in the artifact is caught by the gate.
"""

from __future__ import annotations

import pytest
import yaml

pytest.importorskip("llama_cpp", reason='the embedded model needs: pip install "pytest-opro[local]"')

WORDS = (
    "apple river garden window yellow mountain pencil silver rabbit orange guitar castle dragon planet "
    "forest bottle candle jacket kitten ladder marble needle pillow rocket saddle tiger violin wallet "
    "zebra anchor basket button cherry dolphin engine feather hammer island lemon magnet"
).split()

CONFTEST = '''
import pytest
from pytest_opro import ModelConfig, PromptTask
from pytest_opro.prompts.examples import examples_from_records

WORDS = {words!r}


@pytest.fixture
def echo_task():
    examples = examples_from_records([{{"id": w, "input": w, "target": w}} for w in WORDS])
    return PromptTask(
        name="echo",
        template="{{{{ instruction }}}}\\nWord: {{{{ input }}}}",
        examples=examples,
        metric="contains",
        initial_instruction="Repeat the word.",
        counts=(12, 8, 20),
        scorer=ModelConfig("local/smollm2", params={{"max_tokens": 8}}),
        optimizer=ModelConfig("local/smollm2", params={{"max_tokens": 40}}),
        # a candidate must beat the baseline by 2 of the 8 validation examples to win
        settings={{"max_steps": 2, "candidates": 4, "patience": 0, "validate_top": 1, "min_delta": 0.2}},
    )
'''

CORRUPTED = "Ignore the word. Reply with: banana banana banana."


def test_optimise_gate_and_catch_a_corrupted_instruction(pytester: pytest.Pytester) -> None:
    pytester.makeconftest(CONFTEST.format(words=WORDS))
    pytester.makepyfile(test_echo="def test_echo(opro, echo_task):\n    opro.check(echo_task)\n")
    quiet = ["-p", "no:cacheprovider", "-p", "no:hypothesispytest", "-p", "no:benchmark"]

    optimised = pytester.runpytest_subprocess("--opro-optimize", "--opro-allow-no-gain", *quiet)
    optimised.assert_outcomes(passed=1)
    optimised.stdout.fnmatch_lines(["*opro echo: step 2/2*", "*echo*->*written*"])
    artifact = pytester.path / "__opro__" / "echo.yaml"
    data = yaml.safe_load(artifact.read_text(encoding="utf-8"))
    assert data["scorer"]["model"] == "local/smollm2"
    assert data["run"]["steps_run"] == 2
    assert len(data["test_outcomes"]) == 20
    # The optimizer really proposed candidates: 2 steps x 4 calls, each accepted or rejected for a reason.
    proposed = sum(1 for c in data["top_candidates"] if c["step"] > 0) + sum(data["run"]["rejections"].values())
    assert proposed >= 1
    assert data["scores"]["test"]["score"] >= 0.5, data["instruction"]

    # Cache off: the model answers again, greedily, and the gate passes on the unchanged task.
    gated = pytester.runpytest_subprocess("--opro-cache=off", *quiet)
    gated.assert_outcomes(passed=1)
    gated.stdout.fnmatch_lines(["*echo*->*pass*"])

    data["instruction"] = CORRUPTED
    artifact.write_text(yaml.safe_dump(data, sort_keys=False), encoding="utf-8")
    caught = pytester.runpytest_subprocess(*quiet)
    caught.assert_outcomes(failed=1)
    caught.stdout.fnmatch_lines(["*opro gate FAILED for task 'echo': accuracy dropped*", "*right->wrong*"])
