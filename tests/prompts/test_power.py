"""What the data can confirm: the estimate line before a run, and the examples a kept gain would need after it."""

from __future__ import annotations

from typing import Any

from pytest_opro import OptimizerSettings, PromptTask, optimize
from pytest_opro.prompts.examples import examples_from_records
from pytest_opro.prompts.optimization import estimate, settings_for
from tests.support.fake_provider import FakeBrain


def _task(counts: tuple[int, int, int], n: int = 40) -> PromptTask:
    rows = [
        {
            "id": f"q{i:03d}",
            "input": f"Is {i} a lucky number?",
            "target": "yes" if i % 2 else "no",
            "choices": ["yes", "no"],
        }
        for i in range(n)
    ]
    return PromptTask(
        name="lucky",
        examples=examples_from_records(rows),
        metric="choice",
        scorer="fake/scorer",
        optimizer="fake/optimizer",
        initial_instruction="Answer.",
        counts=counts,
    )


def _line(task: PromptTask, **settings: Any) -> str:
    return estimate(task, settings_for(task, settings), task.scorer_config(), task.optimizer_config()).describe()


def test_the_estimate_line_names_the_smallest_gain_validation_can_confirm() -> None:
    assert _line(_task((10, 12, 10))).endswith(
        "; validation 12 examples: a gain must be at least 5 examples net (42 points) to ship"
    )
    # a stricter level needs more: 2^-6 < 0.02 * 0.8
    assert "at least 6 examples net (50 points)" in _line(_task((10, 12, 10)), select_alpha=0.02)
    assert _line(_task((10, 4, 10))).endswith(
        "; validation 4 examples: too few for any gain to ship (add examples or set select_alpha)"
    )


def test_a_kept_baseline_says_how_many_validation_examples_would_confirm_the_gain(fake_llm: FakeBrain) -> None:
    task = _task((10, 30, 0), n=40)
    index = {ex.input: int(ex.id[1:]) for ex in task.examples}
    target = {ex.input: ex.target for ex in task.examples}

    def scorer(messages: list[dict[str, str]]) -> str:
        text = "\n".join(m["content"] for m in messages)
        question = next(q for q in index if q in text)
        right = index[question] % 10 < (5 if text.startswith("Think") else 4)  # one in ten better, none worse
        return target[question] if right else "I am not sure."

    fake_llm.scorer = scorer
    fake_llm.optimizer = ["<INS>Think.</INS>"]
    result = optimize(task, settings=OptimizerSettings(max_steps=1, candidates=1, patience=0), cache=None)
    selection = result.selection
    assert selection is not None and selection["kept_baseline"]
    best = selection["best"]
    assert best["worse"] == 0 and 0 < best["better"] < 5  # better on validation, too few to confirm
    needed = selection["examples_needed"]
    assert needed is not None and needed > 30
    assert selection["reason"].endswith(f"; about {needed} validation examples would confirm a gain this size at 0.05")
