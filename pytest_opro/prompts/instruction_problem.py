"""Prompt instructions as an OPRO problem: the meta-prompt shows exemplars, the scorer runs the task."""

from __future__ import annotations

import random
from collections import Counter
from typing import Any, Mapping, Sequence

from pytest_opro.errors import ProviderError
from pytest_opro.models.client import LLMClient
from pytest_opro.models.config import ModelConfig
from pytest_opro.models.litellm_bridge import supports_prefill
from pytest_opro.models.usage import Completion
from pytest_opro.opro.meta_prompt import bucketize
from pytest_opro.opro.problem import Parsed, Score
from pytest_opro.opro.settings import OptimizerSettings
from pytest_opro.opro.stats import aggregate_samples
from pytest_opro.prompts.examples import Example
from pytest_opro.prompts.extraction import extract_instruction
from pytest_opro.prompts.metrics import Graded, grade_outputs
from pytest_opro.prompts.proposers import proposals
from pytest_opro.prompts.screening import Screen
from pytest_opro.prompts.task import PromptTask

PLACEHOLDER = "<INS>"


def flatten(messages: list[dict[str, str]]) -> str:
    """A chat as the paper's "Q: ... A: ..." text, for showing an exemplar to the optimizer."""
    parts = []
    for message in messages:
        if message["role"] == "system":
            parts.append(f"System: {message['content']}")
        elif message["role"] == "user":
            parts.append(f"Q: {message['content']}")
        else:
            parts.append(f"A: {message['content']}")
    if messages[-1]["role"] != "assistant":
        parts.append("A:")
    return "\n".join(parts)


def _prefill(task: PromptTask, scorer: ModelConfig) -> bool:
    """Whether to put an A_begin instruction in an assistant prefill. Only A_begin asks, so other
    positions never import litellm to look the model up (a fully cached run stays free)."""
    return task.position == "A_begin" and supports_prefill(scorer.model)


class InstructionProblem:
    """Finds an instruction for a :class:`PromptTask`; scores are the metric's mean on a split."""

    higher_is_better = True
    has_validation = True

    def __init__(
        self,
        task: PromptTask,
        client: LLMClient,
        scorer: ModelConfig,
        optimizer: ModelConfig,
        exemplars: int = 3,
        *,
        samples: int = 1,
        aggregate: str = "mean",
    ) -> None:
        self.task = task
        self.samples = samples
        self.aggregate = aggregate
        self.exemplars = exemplars
        self.client = client
        self.scorer = scorer
        self.optimizer = optimizer
        self.meta_prompt = task.meta_prompt or "instruction"
        self.edit_prompt = "edit"
        self._screen: Screen | None = None
        self.prefill = _prefill(task, scorer)

    def initial_solutions(self) -> list[str]:
        return self.task.starting_instructions()

    def proposals(self, kind: str, top: list[str], rng: random.Random) -> list[str]:
        """Model-free candidates for the ``format`` and ``classic`` proposers."""
        return proposals(self.task, kind, top)

    def screen(self, text: str) -> str | None:
        """Why `text` is not a usable instruction (leakage, off-task), or None."""
        if self._screen is None:
            self._screen = Screen(self.task)
        return self._screen(text)

    def meta_prompt_variables(self, step: int, rng: random.Random) -> dict[str, Any]:
        train = list(self.task.splits.train)
        count = min(self.exemplars, len(train))
        chosen = rng.sample(train, count) if count else []
        return {
            "description": self.task.description,
            "exemplars": [
                {"prompt": flatten(self.task.messages(PLACEHOLDER, ex, prefill=True)), "target": ex.target}
                for ex in chosen
            ],
            "position": self.task.position,
        }

    def format_score(self, value: float, settings: OptimizerSettings) -> int:
        return bucketize(value, settings.score_buckets)

    def parse(self, text: str) -> Parsed:
        return Parsed(extract_instruction(text))

    async def score(self, solutions: list[str], split: str) -> list[Score]:
        return await self._score(solutions, self.task.splits.get(split))

    def example_strata(self, split: str) -> dict[str, str]:
        """Example id -> target, so race minibatches hold each answer in proportion."""
        return {ex.id: str(ex.target) for ex in self.task.splits.get(split)}

    async def score_examples(self, solutions: list[str], split: str, ids: Sequence[str]) -> list[Score]:
        """Score on the examples of `split` with these ids, in that order (a race's minibatch)."""
        by_id = {ex.id: ex for ex in self.task.splits.get(split)}
        return await self._score(solutions, [by_id[i] for i in ids])

    async def _score(self, solutions: list[str], examples: tuple[Example, ...] | list[Example]) -> list[Score]:
        """Each solution's score on `examples`, with this problem's scorer, samples and aggregation."""
        return await score_instructions(
            self.task,
            self.client,
            self.scorer,
            solutions,
            examples,
            self.prefill,
            samples=self.samples,
            aggregate=self.aggregate,
        )


async def score_instructions(
    task: PromptTask,
    client: LLMClient,
    scorer: ModelConfig,
    instructions: list[str],
    examples: tuple[Example, ...] | list[Example],
    prefill: bool | None = None,
    *,
    samples: int = 1,
    aggregate: str = "mean",
) -> list[Score]:
    """Score every instruction on every example in one concurrent batch.

    Each example is asked `samples` times (sample indices 0..k-1, each its own cache entry) and its
    outcome is the `aggregate` of the k grades (:func:`pytest_opro.opro.stats.aggregate_samples`).
    An example with a failed call or an ungradable answer among its samples counts as a failure.
    """
    if prefill is None:
        prefill = _prefill(task, scorer)
    k = samples
    requests = [
        (task.messages(instruction, ex, prefill=prefill), s)
        for instruction in instructions
        for ex in examples
        for s in range(k)
    ]
    replies = await client.complete_many(scorer, requests, role="scorer")
    n = len(examples)
    # Every answer of every instruction is graded in one batch: a model-graded metric makes all its
    # judge calls concurrently, through the same client (cache, budget, ledger).
    answered = [c for c, reply in enumerate(replies) if not isinstance(reply, ProviderError)]
    graded = await grade_outputs(
        task.metric_obj,
        [replies[c].text for c in answered],  # type: ignore[union-attr]
        [examples[(c // k) % n] for c in answered],
        client,
    )
    grades: list[Graded | None] = [None] * len(replies)  # None: the call failed, nothing to grade
    for c, grade in zip(answered, graded):
        grades[c] = grade
    per = n * k  # replies of one instruction
    return [
        _score_of(task, examples, replies[i * per : (i + 1) * per], grades[i * per : (i + 1) * per], k, aggregate)
        for i in range(len(instructions))
    ]


def _score_of(
    task: PromptTask,
    examples: Sequence[Example],
    replies: Sequence[Completion | ProviderError],
    grades: Sequence[Graded | None],
    k: int,
    aggregate: str,
) -> Score:
    """One instruction's score from its replies (k per example, in example order) and their grades
    (None where the call failed)."""
    read_answers = task.targets_repeat  # answer-collapse diagnostics only mean something for labels
    outcomes: dict[str, float] = {}
    notes: dict[str, int] = {}
    answers: dict[str, str | None] = {}
    outputs: dict[str, str] = {}
    failures, error = 0, None
    for j, ex in enumerate(examples):
        values: list[float] = []
        read: list[str | None] = []
        for c in range(j * k, (j + 1) * k):
            reply = replies[c]
            if isinstance(reply, ProviderError):
                error = error or str(reply)
                break
            if c == j * k:
                outputs[ex.id] = reply.text  # the first sample's reply, for reports
            grade = grades[c]
            assert grade is not None  # every reply that is not an error was graded
            if grade.value is None:  # the metric could not grade it (e.g. no readable judge verdict)
                error = error or grade.reason
                break
            values.append(grade.value)
            if grade.reason:
                notes[grade.reason] = notes.get(grade.reason, 0) + 1
            if read_answers:
                read.append(task.answer(reply.text, ex))
        if len(values) < k:
            failures += 1
            continue
        outcomes[ex.id] = values[0] if k == 1 else aggregate_samples(values, aggregate)
        if read_answers:
            answers[ex.id] = _most_common(read)
    return Score(
        value=sum(outcomes.values()) / len(outcomes) if outcomes else 0.0,
        n=len(outcomes),
        outcomes=outcomes,
        failures=failures,
        error=error,
        notes=notes or None,
        answers=answers if read_answers else None,
        outputs=outputs,
    )


def cached_replies(
    cache: Any,
    task: PromptTask,
    scorer: ModelConfig,
    instruction: str,
    examples: tuple[Example, ...] | list[Example],
    recorded: Mapping[str, Any] | None = None,
) -> dict[str, str]:
    """Example id -> the scorer's reply to `instruction` that the response cache holds, for reports.

    Reads only (no model call, no usage counted). `recorded` is an artifact's ``scorer`` block
    (model and parameters): the replies of the run that wrote it, when they differ from `scorer`'s.
    """
    if cache is None or getattr(cache, "mode", "rw") == "off" or not examples:
        return {}
    model, params = scorer.model, dict(scorer.params)
    if recorded and recorded.get("model"):
        model, params = str(recorded["model"]), dict(recorded.get("params") or {})
    prefill = _prefill(task, scorer)
    keys = [cache.key(model, task.messages(instruction, ex, prefill=prefill), params, 0) for ex in examples]
    out: dict[str, str] = {}
    for ex, hit in zip(examples, cache.get_many(keys)):
        if hit is not None and isinstance(hit.get("text"), str):
            out[ex.id] = hit["text"]
    return out


def _most_common(answers: list[str | None]) -> str | None:
    """The answer given most often among an example's samples (the first one on a tie)."""
    counts = Counter(answers)
    return max(answers, key=lambda a: counts[a]) if answers else None
