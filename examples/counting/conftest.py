"""Object counting (BIG-bench): answer with a number. The template has an explicit instruction slot."""

from pathlib import Path

import pytest

from pytest_opro import ModelConfig, PromptTask, load_examples, metrics

HERE = Path(__file__).parent


@pytest.fixture(scope="session")
def counting_examples():
    """80 BIG-bench object_counting examples; targets are numbers with word aliases."""
    return load_examples(HERE / "object_counting.jsonl")


@pytest.fixture(scope="session")
def counting_task(counting_examples):
    """The instruction sits where the template's ``{{ instruction }}`` slot is."""
    return PromptTask(
        name="counting",
        template="Question: {{ input }}\n{{ instruction }}\nAnswer with a number.",
        examples=counting_examples,
        metric=metrics.numeric,
        initial_instruction="Count the items one by one.",
        counts=(10, 30, 40),
        scorer=ModelConfig("local/smollm2", params={"max_tokens": 8}),
        optimizer=ModelConfig("local/smollm2", params={"max_tokens": 48}),
        # A winner must be significantly better on the 30 validation examples (select_alpha 0.05,
        # most of it on the candidate best on train), so no fixed min_delta margin is needed.
        settings={"max_steps": 3, "candidates": 4, "patience": 2, "validate_top": 1},
    )
