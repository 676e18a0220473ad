"""Rejecting candidates that are not instructions for the task, or that leak its examples.

Two simple, conservative rules, each a rejection reason counted in the trajectory and reports:

- ``leakage``: the candidate quotes a training or validation example's input (a run of words
  that belongs to that one example, not the task's common wording), or gives an example's exact
  target as an answer key ("the answer is 12"). Answer labels every example shares
  (plausible/implausible) are format, not leakage. An instruction that carries answers overfits
  the examples it was scored on.
- ``not addressed to the task``: a story or a list of sentences (three sentences or lines, or two
  with at least 12 words) that shares no word with the task (template, description, choices,
  example inputs and targets) nor with the words instructions are made of ("answer", "question",
  "step", "result", ...). A single sentence is never judged by this rule.
"""

from __future__ import annotations

import re
from collections import Counter
from typing import Any, Iterable

from pytest_opro.prompts.examples import Example
from pytest_opro.prompts.task import PromptTask

LEAKAGE = "leakage"
OFF_TASK = "not addressed to the task"

#: A quote is this many consecutive words of one example's input (the whole input when shorter).
QUOTE_WORDS = 8
#: Inputs shorter than this are never looked for (too likely to be ordinary wording).
MIN_QUOTE_WORDS = 4
#: A target this long (characters) leaks wherever it appears; a shorter one only as an answer key.
LONG_TARGET_CHARS = 12
#: A text is story-like from two sentences or lines and this many words, or from this many sentences or lines.
STORY_WORDS = 12
STORY_SENTENCES = 3
#: Words instructions are made of: sharing one means the text talks about answering. Prefixes
#: (five letters or more) match inflections ("question", "questions"); short words match whole,
#: with an "s", "ed" or "ing" ending at most ("keeper" is not "keep").
INSTRUCTION_PREFIXES = (
    "answe",
    "quest",
    "think",
    "solve",
    "solvi",
    "solut",
    "probl",
    "expla",
    "choos",
    "choic",
    "optio",
    "corre",
    "reaso",
    "caref",
    "count",
    "numbe",
    "calcu",
    "respo",
    "reply",
    "outpu",
    "final",
    "decid",
    "decis",
    "deter",
    "check",
    "logic",
    "arith",
    "verif",
    "resul",
    "consi",
    "ident",
    "evalu",
    "focus",
    "tally",
    "total",
    "singl",
    "exact",
    "brief",
    "short",
    "conci",
    "detai",
    "sente",
    "instr",
    "accur",
)
INSTRUCTION_WORDS = frozenset(
    {
        "step",
        "read",
        "word",
        "true",
        "false",
        "break",
        "work",
        "state",
        "give",
        "write",
        "list",
        "keep",
        "clear",
        "task",
    }
)
_ENDINGS = ("ing", "ed", "s")
_STOP = {
    "this",
    "that",
    "with",
    "from",
    "have",
    "your",
    "what",
    "which",
    "when",
    "will",
    "would",
    "there",
    "their",
    "they",
    "them",
    "then",
    "than",
    "were",
    "been",
    "being",
    "into",
    "about",
    "only",
    "also",
    "just",
    "each",
    "some",
    "such",
    "more",
    "most",
    "very",
    "over",
    "these",
    "those",
    "here",
    "where",
    "while",
    "shall",
}
_WORD = re.compile(r"[^\W\d_]+|\d+", re.UNICODE)
_SENTENCE_BREAK = re.compile(r"[.!?]+(?:\s|$)|\n+")


def words(text: str) -> list[str]:
    """Lower-case words and numbers of `text`."""
    return _WORD.findall(text.casefold())


def _stem(word: str) -> str:
    return word[:5]


def _content(tokens: Iterable[str]) -> set[str]:
    return {_stem(w) for w in tokens if len(w) >= 4 and w.isalpha() and w not in _STOP}


def _instruction_word(word: str) -> bool:
    if word.startswith(INSTRUCTION_PREFIXES) or word in INSTRUCTION_WORDS:
        return True
    return any(word.endswith(e) and word[: -len(e)] in INSTRUCTION_WORDS for e in _ENDINGS)


def _input_text(example: Example) -> str:
    value: Any = example.input
    if isinstance(value, dict):
        return " ".join(str(v) for v in value.values())
    return str(value)


class Screen:
    """The rejection rules for one task: ``screen(text)`` is None or the reason to reject."""

    def __init__(self, task: PromptTask) -> None:
        seen = list(task.splits.train) + list(task.splits.validation)
        seen_ids = {ex.id for ex in seen}
        labels = {c.casefold().strip() for ex in task.examples for c in ex.choices}
        # Windows of words; one found in two or more examples is the task's wording, not a quote.
        windows: Counter[tuple[str, ...]] = Counter()
        per_example: list[set[tuple[str, ...]]] = []
        for ex in task.examples:
            tokens = words(_input_text(ex))
            size = min(QUOTE_WORDS, len(tokens))
            own = (
                {tuple(tokens[i : i + size]) for i in range(len(tokens) - size + 1)}
                if size >= MIN_QUOTE_WORDS
                else set()
            )
            windows.update(own)
            if ex.id in seen_ids:
                per_example.append(own)
        self._quotes = {w for own in per_example for w in own if windows[w] == 1}
        self._sizes = sorted({len(w) for w in self._quotes})
        targets = {ex.target.casefold().strip() for ex in seen} - labels
        self._long_targets = {t for t in targets if len(t) >= LONG_TARGET_CHARS or len(t.split()) >= 3}
        short = sorted(targets - self._long_targets, key=len, reverse=True)
        self._answer_key = None
        if short:
            alternatives = "|".join(re.escape(t) for t in short if t)
            cue = r"(?:\b(?:answers?|output|result|label|target|solution)\b\s*(?:is|was|:|=|->|→|=>)|=|->|→|=>)"
            self._answer_key = re.compile(rf"{cue}\s*[\"'“]?(?:{alternatives})(?![\w])", re.IGNORECASE)
        vocabulary = words(" ".join([task.template, task.description or "", task.system_prompt or ""]))
        for ex in seen:
            vocabulary += words(_input_text(ex)) + words(ex.target) + [w for c in ex.choices for w in words(c)]
        self._vocabulary = _content(vocabulary)

    def leaks(self, text: str) -> bool:
        """True when `text` quotes a train/validation input or gives a target as an answer key."""
        tokens = words(text)
        for size in self._sizes:
            if any(tuple(tokens[i : i + size]) in self._quotes for i in range(len(tokens) - size + 1)):
                return True
        lowered = text.casefold()
        if any(t in lowered for t in self._long_targets):
            return True
        return bool(self._answer_key and self._answer_key.search(text))

    def off_task(self, text: str) -> bool:
        """True for a story-like text sharing no word with the task or with instruction wording."""
        tokens = words(text)
        sentences = [s for s in _SENTENCE_BREAK.split(text) if s.strip()]
        if len(sentences) < STORY_SENTENCES and not (len(sentences) >= 2 and len(tokens) >= STORY_WORDS):
            return False
        if _content(tokens) & self._vocabulary:
            return False
        return not any(_instruction_word(w) for w in tokens)

    def __call__(self, text: str) -> str | None:
        if self.leaks(text):
            return LEAKAGE
        if self.off_task(text):
            return OFF_TASK
        return None


__all__ = ["LEAKAGE", "OFF_TASK", "Screen"]
