"""Model-free proposals for prompt tasks: answer-format instructions and published instructions.

Used by the ``format`` and ``classic`` proposers (see :mod:`pytest_opro.opro.proposers`). Neither
calls a model: a small scorer often fails a task only because its answer is not one the metric can
read, and an instruction that names the answer format fixes that.
"""

from __future__ import annotations

from typing import Sequence

from pytest_opro.prompts.task import PromptTask

#: Instructions published in the literature, tried as they were printed.
CLASSIC: tuple[str, ...] = (
    # Kojima et al. 2022, "Large Language Models are Zero-Shot Reasoners" (arXiv 2205.11916).
    "Let's think step by step.",
    # Zhou et al. 2022, "Large Language Models Are Human-Level Prompt Engineers" (APE, arXiv 2211.01910).
    "Let's work this out in a step by step way to be sure we have the right answer.",
    # Yang et al. 2023, OPRO (arXiv 2309.03409), Table 1: PaLM 2-L-IT optimizer, GSM8K.
    "Take a deep breath and work on this problem step-by-step.",
    # OPRO, Table 1: PaLM 2-L optimizer, GSM8K.
    "Break this down.",
    # OPRO, Table 1: gpt-3.5-turbo optimizer, GSM8K.
    "A little bit of arithmetic and a logical approach will help us quickly arrive at the solution to this problem.",
    # OPRO, Table 1: gpt-4 optimizer, GSM8K.
    "Let's combine our numerical command and clear thinking to quickly and accurately decipher the answer.",
    # OPRO, Section 5: the "Let's solve the problem" starting instruction of its ablations.
    "Let's solve the problem.",
)


def task_labels(task: PromptTask) -> list[str]:
    """The answer choices every example shares, in the first example's order ([] when they differ)."""
    first = list(task.examples[0].choices)
    if not first:
        return []
    common = set(first)
    for ex in task.examples[1:]:
        common &= set(ex.choices)
    return [c for c in first if c in common]


def _either(labels: Sequence[str]) -> str:
    return f"{labels[0]} or {labels[1]}" if len(labels) == 2 else "one of: " + ", ".join(labels)


def format_phrasings(task: PromptTask) -> list[str]:
    """Answer-format instructions for `task`, most direct first, worded for its position.

    An ``A_begin`` instruction starts the model's answer, so it is a prefix ("The answer (True or
    False) is:"); elsewhere it is an imperative ("Answer with one of: True, False.").
    """
    labels = task_labels(task)
    metric = task.metric_name
    prefix = task.position == "A_begin"
    if labels:
        either, listed = _either(labels), ", ".join(labels)
        if prefix:
            return [
                f"The answer ({either}) is:",
                f"Answer ({either}):",
                f"My one-word answer ({either}):",
                "The correct answer is",
            ]
        return [
            f"Answer with one of: {listed}.",
            f"Answer with only one word: {either}.",
            f"Reply with exactly one of these words and nothing else: {listed}.",
            f"Choose the correct answer, {either}, and give only that word.",
        ]
    if metric == "numeric":
        if prefix:
            return ["The answer, as a number, is", "The final number is", "Answer (one number):"]
        return [
            "Answer with a single number.",
            "End with the final number.",
            "Give only the final number, in digits.",
            "Count carefully and answer with one number.",
        ]
    if prefix:
        return ["The answer is", "Answer:", "The short answer is"]
    return [
        "Answer with the answer only, no explanation.",
        "Give a short, direct answer.",
        "Reply with just the answer.",
    ]


def format_proposals(task: PromptTask, top: Sequence[str]) -> list[str]:
    """Format phrasings on their own, interleaved with the best instructions plus a phrasing."""
    phrasings = format_phrasings(task)
    best = [t.strip() for t in reversed(top) if t.strip()]  # best first
    out: list[str] = []
    for i, phrase in enumerate(phrasings):
        out.append(phrase)
        if i < len(best) and task.position != "A_begin" and phrase.lower() not in best[i].lower():
            out.append(f"{best[i]} {phrase}")
    return out


def proposals(task: PromptTask, kind: str, top: Sequence[str]) -> list[str]:
    """Model-free proposals of `kind` ("format" or "classic") for `task`; [] for a kind it lacks."""
    if kind == "format":
        return format_proposals(task, top)
    if kind == "classic":
        return list(CLASSIC)
    return []


__all__ = ["CLASSIC", "format_phrasings", "format_proposals", "proposals", "task_labels"]
