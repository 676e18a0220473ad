"""PromptTask: instruction positions, templates as data, fingerprints, clear errors."""

from __future__ import annotations

import pytest

from pytest_opro import PromptTask
from pytest_opro.errors import ConfigError, ExampleError, MetricError, TemplateError
from pytest_opro.prompts.examples import examples_from_records


def examples(n: int = 30, **extra):
    return examples_from_records(
        [{"id": f"e{i}", "input": f"question {i}", "target": "yes", **extra} for i in range(n)]
    )


@pytest.mark.parametrize(
    "position, prefill, expected",
    [
        ("Q_begin", True, [{"role": "user", "content": "Think.\nquestion 0"}]),
        ("Q_end", True, [{"role": "user", "content": "question 0\nThink."}]),
        ("system", True, [{"role": "system", "content": "Think."}, {"role": "user", "content": "question 0"}]),
        ("A_begin", True, [{"role": "user", "content": "question 0"}, {"role": "assistant", "content": "Think."}]),
        ("A_begin", False, [{"role": "user", "content": "question 0\n\nA: Think."}]),
    ],
)
def test_instruction_positions(position: str, prefill: bool, expected: list) -> None:
    task = PromptTask(name="t", examples=examples(), position=position)
    ex = next(e for e in task.examples if e.id == "e0")
    assert task.messages("Think.", ex, prefill=prefill) == expected


def test_template_slot_and_empty_instruction() -> None:
    task = PromptTask(name="t", examples=examples(), template="Q: {{ input }}\n{{ instruction }}\nA:")
    assert task.position == "slot"
    ex = task.examples[0]
    assert task.messages("Be brief.", ex)[-1]["content"] == "Q: question 0\nBe brief.\nA:"
    plain = PromptTask(name="p", examples=examples())
    assert plain.messages("", ex) == [{"role": "user", "content": "question 0"}]


def test_instruction_and_example_text_are_never_rendered_as_template() -> None:
    records = [{"id": f"e{i}", "input": "{{ 7*7 }} {% if x %}", "target": "1"} for i in range(20)]
    task = PromptTask(name="t", examples=examples_from_records(records), template="{{ input }} | {{ instruction }}")
    content = task.messages("{{ config }}{}", task.examples[0])[0]["content"]
    assert content == "{{ 7*7 }} {% if x %} | {{ config }}{}"


def test_template_errors_are_one_line_and_name_the_task() -> None:
    with pytest.raises(TemplateError, match=r"task 't' template: template syntax error on line 1"):
        PromptTask(name="t", examples=examples(), template="{{ input ")
    with pytest.raises(
        TemplateError, match=r"example e0.*'question' is undefined \(variables available: choices, input"
    ):
        PromptTask(name="t", examples=examples(), template="{{ question }}")


@pytest.mark.parametrize(
    "kwargs, error, pattern",
    [
        ({"name": ""}, ConfigError, "non-empty name"),
        ({"name": "a/b"}, ConfigError, "cannot be a file name"),
        ({"position": "middle"}, ConfigError, "position 'middle' is not one of"),
        ({"position": "Q_begin", "template": "{{ input }} {{ instruction }}"}, ConfigError, "leave position unset"),
        ({"metric": "fuzzy"}, MetricError, "fuzzy"),
        ({"floor": 1.5}, ConfigError, "floor must be in"),
    ],
)
def test_bad_task_fields(kwargs: dict, error: type, pattern: str) -> None:
    base = {"name": "t", "examples": examples()}
    with pytest.raises(error, match=pattern):
        PromptTask(**{**base, **kwargs})


def test_empty_examples_and_empty_split() -> None:
    with pytest.raises(ExampleError, match="empty"):
        PromptTask(name="t", examples=[])
    with pytest.raises(ExampleError):
        PromptTask(name="t", examples=examples(3), fractions=(0.98, 0.01, 0.01))


def test_fingerprint_names_each_part_that_changes() -> None:
    base = PromptTask(name="t", examples=examples(), metric="exact")
    fp = base.fingerprint()
    assert fp == PromptTask(name="t", examples=examples(), metric="exact").fingerprint()
    changed_template = PromptTask(name="t", examples=examples(), template="Q: {{ input }}").fingerprint()
    assert {k for k in fp if fp[k] != changed_template[k]} == {"template"}
    changed_metric = PromptTask(name="t", examples=examples(), metric="contains").fingerprint()
    assert {k for k in fp if fp[k] != changed_metric[k]} == {"metric"}
    changed_scorer = PromptTask(name="t", examples=examples(), scorer="openai/gpt-4o-mini").fingerprint()
    assert {k for k in fp if fp[k] != changed_scorer[k]} == {"scorer_model"}


def test_editing_a_custom_metric_changes_the_fingerprint() -> None:
    def lenient(output, example):
        return 1.0 if example.target in output else 0.0

    def strict(output, example):
        return 1.0 if output.strip() == example.target else 0.0

    first = PromptTask(name="t", examples=examples(), metric=lenient).fingerprint()["metric"]
    second = PromptTask(name="t", examples=examples(), metric=strict).fingerprint()["metric"]
    assert first.split("@")[0].endswith("lenient") and first != second
    assert first == PromptTask(name="t", examples=examples(), metric=lenient).fingerprint()["metric"]
