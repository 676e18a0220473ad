"""Field extraction into JSON: pull a person's name, city and age out of a short note.

The notes are synthetic (``make_data.py``, seed 15). Replies are scored with ``metrics.json_fields``:
the share of the three fields the reply's JSON object gets right (name and city after normalisation,
age as a number); a reply without a JSON object scores 0 and is counted as "not JSON".
"""

from pathlib import Path

import pytest

from pytest_opro import ModelConfig, PromptTask, load_examples, metrics

HERE = Path(__file__).parent

#: What a reply must look like; a reply that breaks it scores 0 ("schema violation").
SCHEMA = {
    "type": "object",
    "required": ["name", "city", "age"],
    "properties": {
        "name": {"type": "string"},
        "city": {"type": "string"},
        "age": {"type": ["integer", "string"]},
    },
}


@pytest.fixture(scope="session")
def extraction_examples():
    """40 synthetic notes, each with its expected fields as a JSON object in 'target'."""
    return load_examples(HERE / "extraction.jsonl")


@pytest.fixture(scope="session")
def extraction_task(extraction_examples):
    """The prompt under test: the instruction goes before the note (Q_begin)."""
    return PromptTask(
        name="extraction",
        template='Text: "{{ input }}"\nReturn a JSON object with the keys "name", "city" and "age".',
        position="Q_begin",
        examples=extraction_examples,
        metric=metrics.json_fields({"name": "normalized", "city": "normalized", "age": "numeric"}, schema=SCHEMA),
        initial_instruction="",
        description="The answer to each problem is a JSON object with the fields the problem names.",
        counts=(6, 10, 24),
        scorer=ModelConfig("local/smollm2", params={"max_tokens": 32}),
        optimizer=ModelConfig("local/smollm2", params={"max_tokens": 48}),
        # min_delta 0.1: on 10 validation examples a smaller gain is within noise.
        settings={"max_steps": 3, "candidates": 3, "patience": 2, "validate_top": 1, "min_delta": 0.1},
    )
