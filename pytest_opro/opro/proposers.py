"""Where candidates come from: the proposer mix of a step and the proposers that ask the optimizer.

A step's candidates are shared among proposers by the ``proposers`` setting:

- ``opro``: OPRO's meta-prompt (top instructions with scores, exemplars, meta-instruction);
- ``edit``: ask the optimizer to rewrite one top instruction (clearer, shorter, with the answer
  format) or to join two of them, EvoPrompt-style: one instruction in, one out, a task small
  models can do. Needs a problem with an ``edit_prompt`` template;
- any other name (``format``, ``classic``): model-free proposals the problem makes itself through
  its optional ``proposals(kind, top, rng)`` method (prompt tasks: answer-format instructions and a
  library of published instructions).

``proposers=["opro"]`` is the paper's loop, call for call. The mix is deterministic: which slot
goes to which proposer, and what an edit is asked, follow from the seed and the step, so a run
replays from the response cache.
"""

from __future__ import annotations

import random
import re
from dataclasses import dataclass
from typing import Any, Mapping

from pytest_opro.errors import TemplateError
from pytest_opro.opro.meta_prompt import build_meta_prompt
from pytest_opro.opro.mix import KNOWN, MODEL_PROPOSERS, allocate, parse_mix
from pytest_opro.opro.problem import Problem
from pytest_opro.opro.trajectory import Candidate, normalise

#: What an edit asks for, in turn: (mode, number of instructions it takes).
EDIT_MODES = (("rewrite", 1), ("format", 1), ("combine", 2))
#: The edit proposer chooses among this many of the best instructions.
EDIT_POOL = 4


@dataclass
class Proposal:
    """One slot of a step: who proposes, and either a request for the optimizer or a ready text."""

    proposer: str
    messages: list[dict[str, Any]] | None = None
    text: str | None = None
    skeleton: str = ""  # the prompt without trajectory and exemplars: what a reply must not just repeat


def skeleton_of(template: str, variables: Mapping[str, Any]) -> str:
    """The prompt `template` renders with every list emptied and no instruction: its own words only."""
    bare = {k: ([] if isinstance(v, (list, tuple)) else v) for k, v in variables.items()}
    bare.update(instruction="", second="")
    try:
        return build_meta_prompt(template, bare)
    except TemplateError:  # a template that needs its lists: no skeleton, no check
        return ""


class ProposerPlan:
    """Turns a step's slots into proposals: optimizer requests (opro, edit) and model-free texts."""

    def __init__(
        self,
        problem: Problem,
        variables: dict[str, Any],
        opro_messages: list[dict[str, Any]],
        top: list[Candidate],
        seen: set[str],
        rng: random.Random,
    ) -> None:
        self.problem = problem
        self.variables = variables
        self.opro_messages = opro_messages
        self.top = [c.text for c in top]  # worst first, best last
        self.seen = seen
        self.rng = rng
        self._opro_skeleton: str | None = None
        self._edits = 0
        self._offered: dict[str, list[str]] = {}

    @property
    def opro_skeleton(self) -> str:
        if self._opro_skeleton is None:
            self._opro_skeleton = skeleton_of(self.problem.meta_prompt, self.variables)
        return self._opro_skeleton

    def proposal(self, proposer: str) -> Proposal:
        """The proposal for one slot; falls back to OPRO when a proposer has nothing (left) to offer."""
        if proposer == "edit":
            edit = self._edit()
            if edit is not None:
                return edit
        elif proposer != "opro":
            text = self._model_free(proposer)
            if text is not None:
                return Proposal(proposer, text=text)
        return Proposal("opro", messages=self.opro_messages)

    def _edit(self) -> Proposal | None:
        template = getattr(self.problem, "edit_prompt", None)
        if not template:
            return None
        pool = [t for t in self.top[-EDIT_POOL:] if t.strip()] or self.top[-1:]
        mode, takes = EDIT_MODES[self._edits % len(EDIT_MODES)]
        self._edits += 1
        if takes == 2 and len(pool) < 2:
            mode, takes = "rewrite", 1
        chosen = self.rng.sample(pool, takes) if pool else [""]
        variables = dict(self.variables)
        variables.update(mode=mode, instruction=chosen[0], second=chosen[1] if takes == 2 else "")
        prompt = build_meta_prompt(template, variables)
        return Proposal(
            "edit", messages=[{"role": "user", "content": prompt}], skeleton=skeleton_of(template, variables)
        )

    def _model_free(self, kind: str) -> str | None:
        make = getattr(self.problem, "proposals", None)
        if make is None:
            return None
        if kind not in self._offered:
            self._offered[kind] = list(make(kind, list(self.top), self.rng))
        offered = self._offered[kind]
        while offered:
            text = offered.pop(0)
            key = normalise(text)
            if key and key not in self.seen:
                return text
        return None


_WORDS = re.compile(r"[^\W_]+", re.UNICODE)
_SENTENCES = re.compile(r"(?<=[.!?])\s+|\n+")


def _words(text: str) -> str:
    return " ".join(_WORDS.findall(re.sub(r"</?INS>", " ", text, flags=re.IGNORECASE).casefold()))


def repeats_prompt(text: str, skeleton: str, min_words: int = 3) -> bool:
    """True when every sentence of `text` is copied from the prompt's own words (`skeleton`).

    Conservative: a sentence counts only with at least `min_words` words, and at least one must.
    """
    if not skeleton:
        return False
    bare = f" {_words(skeleton)} "
    sentences = [s for s in (_words(part) for part in _SENTENCES.split(text)) if s]
    long_enough = [s for s in sentences if len(s.split()) >= min_words]
    if not long_enough or len(long_enough) < len(sentences):
        return False
    return all(f" {s} " in bare for s in long_enough)


__all__ = [
    "KNOWN",
    "MODEL_PROPOSERS",
    "Proposal",
    "ProposerPlan",
    "allocate",
    "parse_mix",
    "repeats_prompt",
    "skeleton_of",
]
