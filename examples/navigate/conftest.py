"""Navigate (BIG-bench): do the moves return to the start? The instruction starts the answer (A_begin)."""

from pathlib import Path

import pytest

from pytest_opro import ModelConfig, PromptTask, load_examples, metrics

HERE = Path(__file__).parent


@pytest.fixture(scope="session")
def navigate_examples():
    """80 BIG-bench navigate examples (True / False)."""
    return load_examples(HERE / "navigate.jsonl")


@pytest.fixture(scope="session")
def navigate_task(navigate_examples):
    """The instruction is the start of the model's answer, like the paper's "A_begin" prompts."""
    return PromptTask(
        name="navigate",
        template="If you follow these instructions, do you return to the starting point? "
        "Answer True or False.\n{{ input }}",
        position="A_begin",
        examples=navigate_examples,
        metric=metrics.choice,
        initial_instruction="The answer is",
        counts=(10, 30, 40),
        scorer=ModelConfig("local/smollm2", params={"max_tokens": 6}),
        optimizer=ModelConfig("local/smollm2", params={"max_tokens": 48}),
        # A winner must be significantly better on the 30 validation examples (select_alpha 0.05,
        # most of it on the candidate best on train), so no fixed min_delta margin is needed.
        settings={"max_steps": 3, "candidates": 4, "patience": 2, "validate_top": 1},
    )
