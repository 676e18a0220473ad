"""A deterministic fake LLM provider for tests, reached as model ``fake/<anything>``.

It is a real litellm ``CustomLLM`` registered through ``pytest_opro.models.litellm_bridge.register_provider``, so the
whole call path (litellm, retries, cache, accounting) is exercised. What it answers is decided by a
``FakeBrain``:

- models whose name contains "optimizer" follow the optimizer script: a function
  ``(meta_prompt_text, n) -> reply`` where ``n`` counts earlier calls with the same model and
  messages, or a list of replies used in turn (cycled, restarting when a new script is assigned);
- every other model is a scorer: a function ``(messages) -> reply``. The default scorer knows the
  targets registered with ``brain.learn(examples)`` and answers an example correctly only when the
  prompt holds enough of ``brain.keywords`` (each example has a difficulty 0..len(keywords) fixed
  by a hash of its input), so instructions with more keywords score higher.

Use the ``fake_llm`` fixture (a fresh brain per test)::

    def test_something(fake_llm):
        fake_llm.learn(examples)
        ... ModelConfig("fake/scorer") ...
        assert fake_llm.calls["fake/scorer"] == 12
"""

from __future__ import annotations

import collections
import hashlib
import json
import os
import threading
import time
from typing import Any, Callable, Iterable, Sequence

import pytest

os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")  # never fetch prices in tests

PREFIX = "fake"
DEFAULT_KEYWORDS = ("step by step", "carefully", "double-check")
WRONG_ANSWER = "I am not sure."


def _messages_text(messages: Sequence[dict]) -> str:
    parts = []
    for message in messages:
        content = message.get("content")
        parts.append(content if isinstance(content, str) else json.dumps(content, sort_keys=True))
    return "\n".join(parts)


def _stable_int(text: str) -> int:
    return int(hashlib.sha256(text.encode("utf-8")).hexdigest()[:12], 16)


def default_optimizer(meta_prompt: str, n: int) -> str:
    """Proposes instructions that add keywords progressively (deterministic in ``n``)."""
    keywords = DEFAULT_KEYWORDS
    k = n % (len(keywords) + 1)
    chosen = ", ".join(keywords[:k]) if k else "simply"
    return f"<INS>Answer the question {chosen}. (variant {n})</INS>"


class FakeBrain:
    """The behaviour of the fake provider, and a record of the calls it received."""

    def __init__(
        self,
        optimizer: Callable[[str, int], str] | Sequence[str] | None = None,
        scorer: Callable[[list[dict]], str] | None = None,
        keywords: Sequence[str] = DEFAULT_KEYWORDS,
        cost_per_call: float | None = 0.0,
        latency: float = 0.0,
    ) -> None:
        self._script_calls = 0
        self.optimizer = optimizer if optimizer is not None else default_optimizer
        self.scorer = scorer
        self.keywords = tuple(keywords)
        self.cost_per_call = cost_per_call
        self.latency = latency
        self.targets: dict[str, str] = {}
        self.wrong: dict[str, str] = {}
        self.calls: collections.Counter[str] = collections.Counter()
        self.log: list[tuple[str, list[dict]]] = []
        self.fail: Callable[[str, list[dict]], BaseException | None] | None = None
        #: Scorer scripts for particular models (model string -> messages -> reply), before `scorer`.
        self.by_model: dict[str, Callable[[list[dict]], str]] = {}
        self._seen: collections.Counter[tuple[str, str]] = collections.Counter()
        self._lock = threading.Lock()

    @property
    def optimizer(self) -> Callable[[str, int], str] | Sequence[str]:
        """The optimizer script; assigning a new one restarts a list script at its first reply."""
        return self._optimizer

    @optimizer.setter
    def optimizer(self, script: Callable[[str, int], str] | Sequence[str]) -> None:
        with getattr(self, "_lock", threading.Lock()):
            self._optimizer = script
            self._script_calls = 0

    # -- setup ---------------------------------------------------------------------------------
    def learn(self, examples: Iterable[Any]) -> "FakeBrain":
        """Register examples (objects with ``input``/``target``/``choices`` or dicts) for the scorer."""
        for example in examples:
            get = example.get if isinstance(example, dict) else lambda k, e=example: getattr(e, k, None)
            raw_input = get("input")
            text = raw_input if isinstance(raw_input, str) else json.dumps(raw_input, sort_keys=True)
            target = str(get("target"))
            self.targets[text] = target
            choices = [str(c) for c in (get("choices") or ()) if str(c) != target]
            self.wrong[text] = choices[0] if choices else WRONG_ANSWER
        return self

    def difficulty(self, input_text: str) -> int:
        """How many keywords the prompt needs for this example to be answered correctly."""
        return _stable_int(input_text) % (len(self.keywords) + 1)

    # -- behaviour -----------------------------------------------------------------------------
    def reply(self, model: str, messages: list[dict]) -> str:
        text = _messages_text(messages)
        with self._lock:
            self.calls[model] += 1
            self.log.append((model, [dict(m) for m in messages]))
            seen_key = (model, hashlib.sha256(text.encode("utf-8")).hexdigest())
            n = self._seen[seen_key]
            self._seen[seen_key] += 1
            is_optimizer = "optimizer" in model.split("/", 1)[-1]
            script_index = self._script_calls
            if is_optimizer:
                self._script_calls += 1
        if self.fail is not None:
            error = self.fail(model, messages)
            if error is not None:
                raise error
        if is_optimizer:
            script = self.optimizer
            if callable(script):
                return script(text, n)
            script = list(script)
            return script[script_index % len(script)] if script else ""
        if model in self.by_model:
            return self.by_model[model](messages)
        if self.scorer is not None:
            return self.scorer(messages)
        return self.default_score_reply(text)

    def default_score_reply(self, prompt: str) -> str:
        lowered = prompt.lower()
        present = sum(1 for kw in self.keywords if kw.lower() in lowered)
        # the longest registered input found in the prompt is the example being asked
        match = None
        for input_text in self.targets:
            if input_text and input_text in prompt and (match is None or len(input_text) > len(match)):
                match = input_text
        if match is None:
            return WRONG_ANSWER
        if present >= self.difficulty(match):
            return self.targets[match]
        return self.wrong[match]


def _make_handler_class() -> type:
    import litellm
    from litellm.llms.custom_llm import CustomLLM

    class FakeLLM(CustomLLM):
        """litellm CustomLLM delegating to the current FakeBrain."""

        supports_prefill = True

        def __init__(self) -> None:
            super().__init__()
            self.brain = FakeBrain()

        @property
        def cost_per_call(self) -> float | None:
            return self.brain.cost_per_call

        def _respond(self, model: str, messages: list) -> Any:
            full_model = model if model.startswith(PREFIX + "/") else f"{PREFIX}/{model}"
            text = self.brain.reply(full_model, list(messages))
            prompt_tokens = max(1, len(_messages_text(messages).split()))
            completion_tokens = len(text.split())
            return litellm.ModelResponse(
                model=full_model,
                choices=[{"index": 0, "finish_reason": "stop", "message": {"role": "assistant", "content": text}}],
                usage=litellm.Usage(
                    prompt_tokens=prompt_tokens,
                    completion_tokens=completion_tokens,
                    total_tokens=prompt_tokens + completion_tokens,
                ),
            )

        def completion(self, model: str, messages: list, *args: Any, **kwargs: Any) -> Any:
            if self.brain.latency:
                time.sleep(self.brain.latency)
            return self._respond(model, messages)

        async def acompletion(self, model: str, messages: list, *args: Any, **kwargs: Any) -> Any:
            if self.brain.latency:
                import asyncio

                await asyncio.sleep(self.brain.latency)
            return self._respond(model, messages)

    return FakeLLM


_handler: Any = None


def fake_handler() -> Any:
    """The process-wide FakeLLM instance, registered under ``fake/`` on first use."""
    global _handler
    if _handler is None:
        from pytest_opro.models import litellm_bridge as llm

        llm.get_litellm()
        _handler = _make_handler_class()()
        llm.register_provider(PREFIX, _handler)
    return _handler


def install(brain: FakeBrain) -> FakeBrain:
    """Make ``brain`` answer every ``fake/...`` call from now on."""
    fake_handler().brain = brain
    return brain


@pytest.fixture
def fake_llm() -> Any:
    """A fresh FakeBrain answering ``fake/<anything>`` models for the duration of one test."""
    handler = fake_handler()
    previous = handler.brain
    brain = install(FakeBrain())
    try:
        yield brain
    finally:
        handler.brain = previous
