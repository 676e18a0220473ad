"""A scripted OPRO run whose optimizer calls are recorded call for call.

``recorded_run()`` optimises a small choice task with the fake provider and returns every optimizer
request (meta-prompt, sample index, reply) and the trajectory. ``tests/support/data/opro_only_run.json`` holds
this record as the loop produced it before proposers existed (and, as the paper does, with every
candidate scored on all of train: ``screening="off"``): with ``proposers=["opro"]`` the loop must
still send exactly those meta-prompts and keep exactly those candidates.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from pytest_opro import OptimizerSettings, PromptTask, optimize
from pytest_opro.models.client import LLMClient
from pytest_opro.prompts.examples import examples_from_records
from tests.support.fake_provider import FakeBrain

GOLDEN = Path(__file__).parent / "data" / "opro_only_run.json"


class RecordingClient(LLMClient):
    """An LLMClient that notes each optimizer request's messages, sample index and reply."""

    def __init__(self, **kw: Any) -> None:
        super().__init__(**kw)
        self.optimizer_calls: list[dict[str, Any]] = []

    async def complete_many(self, config: Any, requests: Any, *, role: str | None = None) -> Any:
        replies = await super().complete_many(config, requests, role=role)
        if "optimizer" in config.model:
            for (messages, sample_index), reply in zip(requests, replies):
                self.optimizer_calls.append(
                    {
                        "meta_prompt": messages[0]["content"],
                        "sample_index": sample_index,
                        "reply": getattr(reply, "text", None),
                    }
                )
        return replies


def script(meta_prompt: str, n: int) -> str:
    """Replies that depend on the meta-prompt and on n: keyword-adding instructions, an empty reply,
    a repeat and an over-long text, so rejections and re-asks shape the trajectory."""
    shown = meta_prompt.count("\ntext:\n")
    if n == 1:
        return "<INS></INS>"
    if n == 2:
        return "<INS>Answer the question step by step.</INS>"
    if n == 5:
        return "<INS>" + "very " * 150 + "long</INS>"
    words = ("step by step", "carefully", "double-check")[: (shown + n) % 4]
    return f"<INS>Answer the question {', '.join(words) or 'plainly'} (try {shown}.{n}).</INS>"


def task() -> PromptTask:
    records = [
        {
            "id": f"s{i:03d}",
            "input": f"Is sentence {i} about {'golf' if i % 3 else 'tennis'} plausible?",
            "target": "plausible" if i % 2 else "implausible",
            "choices": ["plausible", "implausible"],
        }
        for i in range(36)
    ]
    return PromptTask(
        name="replay",
        examples=examples_from_records(records),
        metric="choice",
        scorer="fake/scorer",
        optimizer="fake/optimizer",
        initial_instruction="Answer the question.",
        description="Decide whether a sentence about sport is plausible.",
        counts=(12, 12, 12),
    )


def recorded_run(brain: FakeBrain, **settings: Any) -> dict[str, Any]:
    """Run the scripted optimisation and return what the optimizer was asked and what was kept."""
    t = task()
    brain.learn(t.examples)
    brain.optimizer = script
    client = RecordingClient(cache=None, concurrency=1)
    result = optimize(
        t,
        client=client,
        settings=OptimizerSettings(
            max_steps=3, candidates=4, reask=1, patience=0, validate_top=2, screening="off", **settings
        ),
    )
    return {
        "optimizer_calls": client.optimizer_calls,
        "trajectory": [
            {k: c.to_dict()[k] for k in ("step", "text", "train", "validation", "rejection", "call")}
            for c in result.trajectory
        ],
        "instruction": result.instruction,
    }


def save_golden(record: dict[str, Any]) -> None:
    GOLDEN.write_text(json.dumps(record, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")


def load_golden() -> dict[str, Any]:
    return json.loads(GOLDEN.read_text(encoding="utf-8"))
