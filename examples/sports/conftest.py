"""Sports understanding (BIG-bench): is a sentence about sport plausible? Instruction before the question."""

from pathlib import Path

import pytest

from pytest_opro import ModelConfig, PromptTask, load_examples, metrics

HERE = Path(__file__).parent


@pytest.fixture(scope="session")
def sports_examples():
    """80 BIG-bench sports_understanding examples (plausible / implausible)."""
    return load_examples(HERE / "sports.jsonl")


@pytest.fixture(scope="session")
def sports_task(sports_examples):
    """The prompt under test: the instruction goes before the question (Q_begin)."""
    return PromptTask(
        name="sports",
        template='Sentence: "{{ input }}"\nIs this sentence plausible or implausible?',
        position="Q_begin",
        examples=sports_examples,
        metric=metrics.choice,
        initial_instruction="",
        counts=(10, 30, 40),
        scorer=ModelConfig("local/smollm2", params={"max_tokens": 6}),
        optimizer=ModelConfig("local/smollm2", params={"max_tokens": 48}),
        # A winner must be significantly better on the 30 validation examples (select_alpha 0.05,
        # most of it on the candidate best on train), so no fixed min_delta margin is needed.
        settings={"max_steps": 3, "candidates": 4, "patience": 2, "validate_top": 1},
    )
