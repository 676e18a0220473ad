"""End to end on the real embedded model (SmolLM2-135M through llama-cpp-python), no fakes.

A small task is optimised with ``pytest --opro-optimize`` (a dozen training examples, two steps,
four candidates), the artifact is written, the gate passes on it with the cache off (so the model
really answers again), and a corrupted instruction in the artifact is caught by the gate.

llama.cpp's numerics differ between CPUs, builds and thread counts, so nothing here depends on
which answers the model gives, only on what holds for any of them: whether the optimizer finds a
gain is not asserted. The task is one the model does nearly always right (echo a word, placed
last in the prompt), and the corruption makes it answer something else within its 8 tokens, so
the gate sees a large, significant drop on 20 paired test examples.
"""

from __future__ import annotations

import json

import pytest
import yaml

pytest.importorskip("llama_cpp", reason='the embedded model needs: pip install "pytest-opro[local]"')

WORDS = (
    "apple river garden window yellow mountain pencil silver rabbit orange guitar castle dragon planet "
    "forest bottle candle jacket kitten ladder marble needle pillow rocket saddle tiger violin wallet "
    "zebra anchor basket button cherry dolphin engine feather hammer island lemon magnet"
).split()

CONFTEST = """
import pytest
from pytest_opro import ModelConfig, PromptTask
from pytest_opro.prompts.examples import examples_from_records

WORDS = {words!r}


@pytest.fixture
def echo_task():
    examples = examples_from_records([{{"id": w, "input": w, "target": w}} for w in WORDS])
    return PromptTask(
        name="echo",
        template="{{{{ instruction }}}}\\n\\n{{{{ input }}}}",
        examples=examples,
        metric="contains",
        initial_instruction={initial!r},
        counts=(12, 8, 20),
        scorer=ModelConfig("local/smollm2", params={{"max_tokens": 8}}),
        optimizer=ModelConfig("local/smollm2", params={{"max_tokens": 40}}),
        # a candidate must beat the baseline by 2 of the 8 validation examples to win
        settings={{"max_steps": 2, "candidates": 4, "patience": 0, "validate_top": 1, "min_delta": 0.2}},
    )
"""

INITIAL = "Repeat the word."
# Asked for a number, the model replies with a sentence of 8 tokens without the word (0 of the 40
# words on the machine this was written on, with 1 or 2 threads, batched or not).
CORRUPTED = "Reply only with the number 7."


def opro_report(path) -> dict:
    """The one task entry of an --opro-report JSON file."""
    (entry,) = json.loads(path.read_text(encoding="utf-8"))["tasks"]
    return entry


def test_optimise_gate_and_catch_a_corrupted_instruction(pytester: pytest.Pytester) -> None:
    pytester.makeconftest(CONFTEST.format(words=WORDS, initial=INITIAL))
    pytester.makepyfile(test_echo="def test_echo(opro, echo_task):\n    opro.check(echo_task)\n")
    quiet = ["-p", "no:cacheprovider", "-p", "no:hypothesispytest", "-p", "no:benchmark"]
    report = pytester.path / "opro-report.json"

    # With --opro-allow-no-gain the run passes and writes an artifact whether or not a candidate
    # beat the baseline; which of the two happens depends on the CPU and is not asserted.
    optimised = pytester.runpytest_subprocess(
        "--opro-optimize", "--opro-allow-no-gain", f"--opro-report={report}", *quiet
    )
    optimised.assert_outcomes(passed=1)
    optimised.stdout.fnmatch_lines(["*opro echo: step 2/2*"])
    artifact = pytester.path / "__opro__" / "echo.yaml"
    data = yaml.safe_load(artifact.read_text(encoding="utf-8"))
    assert data["scorer"]["model"] == "local/smollm2"
    assert data["run"]["steps_run"] == 2
    assert data["baseline"]["instruction"] == INITIAL
    for scores in (data["scores"], data["baseline"]["scores"]):
        assert {split: block["n"] for split, block in scores.items()} == {"train": 12, "validation": 8, "test": 20}
        assert all(0.0 <= block["score"] <= 1.0 for block in scores.values())
    outcomes = data["test_outcomes"]
    assert len(outcomes) == 20 and set(outcomes.values()) <= {0.0, 1.0}
    assert data["scores"]["test"]["score"] == pytest.approx(sum(outcomes.values()) / 20, abs=1e-4)
    # The optimizer really proposed candidates: 2 steps x 4 calls, each accepted or rejected for a reason.
    # (raced-out candidates have no full train score and so are not among the top candidates)
    assert sum(data["run"]["proposals"].values()) == 2 * 4
    entry = opro_report(report)
    assert entry["ok"] is True
    # "written": a candidate won and is the artifact's instruction; "no gain": the baseline is
    assert entry["status"] == ("no gain" if data["instruction"] == INITIAL else "written"), (
        entry["status"],
        data["instruction"],
    )
    assert entry["instruction"] == data["instruction"]

    # Cache off: the model answers all 20 test examples again, and the gate passes on the unchanged
    # task. Another thread count (it follows the load) may flip an answer or two, never enough for
    # a significant drop.
    gated = pytester.runpytest_subprocess("--opro-cache=off", f"--opro-report={report}", *quiet)
    gated.assert_outcomes(passed=1)
    entry = opro_report(report)
    assert (entry["mode"], entry["status"]) == ("gate", "passed"), entry["message"]
    assert entry["gate"]["verdict"] in ("pass", "improved") and entry["gate"]["n"] == 20
    assert entry["usage"]["cache_hits"] == 0 and entry["usage"]["calls"] == 20, entry["usage"]

    data["instruction"] = CORRUPTED
    artifact.write_text(yaml.safe_dump(data, sort_keys=False), encoding="utf-8")
    caught = pytester.runpytest_subprocess(f"--opro-report={report}", *quiet)
    caught.assert_outcomes(failed=1)
    caught.stdout.fnmatch_lines(["*opro gate FAILED for task 'echo': accuracy dropped*", "*right->wrong*"])
    gate = opro_report(report)["gate"]
    assert gate["verdict"] == "regression" and gate["now"] < gate["recorded"], gate
