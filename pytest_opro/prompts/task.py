"""PromptTask: what a prompt is for, how an instruction is placed in it, and how answers are scored."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any, Callable, Mapping, Sequence, Union

from pytest_opro.errors import ConfigError, ExampleError
from pytest_opro.hashing import canonical_json, sha256_hex
from pytest_opro.models.config import ModelConfig, ModelSpec, model_config
from pytest_opro.opro.templating import render, variables_used
from pytest_opro.prompts.examples import Example, examples_fingerprint
from pytest_opro.prompts.metrics import Metric, resolve
from pytest_opro.prompts.splits import (
    DEFAULT_FRACTIONS,
    EARLIER_DEFAULT_FRACTIONS,
    Splits,
    Stratify,
    resolve_stratify,
    split_examples,
    split_rule,
    targets_repeat,
)

#: Where an instruction can go. "slot" means the template has an explicit ``{{ instruction }}``.
POSITIONS = ("Q_begin", "Q_end", "A_begin", "system", "slot")

#: Scorer defaults: greedy decoding, short answers.
DEFAULT_SCORER_PARAMS: dict[str, Any] = {"temperature": 0.0, "max_tokens": 64}
#: Optimizer defaults from the paper: temperature 1.0, one candidate per call.
DEFAULT_OPTIMIZER_PARAMS: dict[str, Any] = {"temperature": 1.0, "max_tokens": 200}

MetricSpec = Union[str, Metric, Callable[[str, Example], float]]


def _sha(data: Any) -> str:
    return sha256_hex(canonical_json(data, compact=False), 16)


@dataclass
class PromptTask:
    """A prompt to optimise and gate.

    ``template`` is Jinja2 source for the user turn; it sees each example's fields (``input`` or the
    named fields, ``choices``) and, if it asks for it, ``instruction``. Without an ``{{ instruction }}``
    slot the instruction goes where ``position`` says: ``Q_begin`` (before the question, the default),
    ``Q_end`` (after it), ``A_begin`` (start of the answer) or ``system`` (the system message).

    ``stratify`` says how examples are split: ``"auto"`` (default) keeps each target's proportion in
    train, validation and test when targets repeat (choice tasks, small numeric ranges) and uses
    plain hash splits otherwise; ``True`` always stratifies by target, ``False`` never, and a
    callable ``example -> key`` stratifies by your own key. See :mod:`pytest_opro.prompts.splits`
    for what moves when an example is added.
    ``initial_instruction`` is the instruction in production today: the baseline that selection and
    the gate compare against. ``initial_instructions`` are further starting points, scored with it
    before the first step and shown to the optimizer like any candidate.
    """

    name: str
    examples: Sequence[Example]
    template: str = "{{ input }}"
    metric: MetricSpec = "exact"
    initial_instruction: str = ""
    initial_instructions: Sequence[str] = ()
    position: str | None = None
    system_prompt: str | None = None
    scorer: ModelSpec = None
    optimizer: ModelSpec = None
    split_seed: int = 0
    fractions: tuple[float, float, float] | None = DEFAULT_FRACTIONS
    counts: tuple[int, int, int] | None = None
    stratify: Stratify = "auto"
    floor: float | None = None
    tolerance: float | None = None
    description: str = ""
    meta_prompt: str | None = None
    settings: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not self.name.strip():
            raise ConfigError("PromptTask needs a non-empty name (it names the artifact file)")
        bad = set(self.name) & set('/\\:*?"<>|')
        if bad or self.name.startswith("."):
            raise ConfigError(f"PromptTask name {self.name!r} cannot be a file name: use letters, digits, '-', '_'")
        self.examples = tuple(self.examples)
        if isinstance(self.initial_instructions, str) or not all(isinstance(t, str) for t in self.initial_instructions):
            raise ConfigError(f"task {self.name!r}: initial_instructions must be a list of strings")
        self.initial_instructions = tuple(self.initial_instructions)
        if not self.examples:
            raise ExampleError(f"task {self.name!r}: the example set is empty; give it at least a few examples")
        self._metric = resolve(self.metric)
        uses = variables_used(self.template, self._origin)
        if self.position is None:
            self.position = "slot" if "instruction" in uses else "Q_begin"
        if self.position not in POSITIONS:
            raise ConfigError(f"task {self.name!r}: position {self.position!r} is not one of {', '.join(POSITIONS)}")
        if self.position == "slot" and "instruction" not in uses:
            raise ConfigError(f"task {self.name!r}: position 'slot' needs '{{{{ instruction }}}}' in the template")
        if self.position != "slot" and "instruction" in uses:
            raise ConfigError(
                f"task {self.name!r}: the template has an {{{{ instruction }}}} slot, so leave position unset"
            )
        if self.tolerance is not None and not 0.0 <= float(self.tolerance) <= 100.0:
            raise ConfigError(
                f"task {self.name!r}: tolerance is in points of accuracy, 0 to 100 (e.g. 2), got {self.tolerance!r}"
            )
        if self.floor is not None and not 0.0 <= float(self.floor) <= 1.0:
            raise ConfigError(f"task {self.name!r}: floor must be in [0, 1], got {self.floor!r}")
        try:
            resolve_stratify(self.stratify, self.examples)
            self._splits = split_examples(
                self.examples,
                seed=self.split_seed,
                fractions=self.fractions,
                counts=self.counts,
                stratify=self.stratify,
            )
        except ExampleError as exc:
            raise ExampleError(f"task {self.name!r}: {exc}") from None
        except ConfigError as exc:
            raise ConfigError(f"task {self.name!r}: {exc}") from None
        self._split_rule = split_rule(self.stratify, self.examples)
        self._targets_repeat = targets_repeat(self.examples)
        # Render one example now so a template error shows at collection, not mid-run.
        self.render_user(self.initial_instruction, self.examples[0])

    @property
    def _origin(self) -> str:
        return f"task {self.name!r} template"

    @property
    def metric_obj(self) -> Metric:
        """The resolved metric (its name, version and fingerprint parts go into the fingerprint)."""
        return self._metric

    @property
    def splits(self) -> Splits:
        """Train, validation and test examples, assigned by a stable hash of each id."""
        return self._splits

    @property
    def split_rule(self) -> str:
        """How examples were split: "hash" or "stratified:<key>" (part of the fingerprint)."""
        return self._split_rule

    @property
    def targets_repeat(self) -> bool:
        """Whether targets are labels (choice tasks, small numeric ranges): answer collapse is checked then."""
        return self._targets_repeat

    def answer(self, output: str, example: Example) -> str | None:
        """The answer the metric reads in `output` (for answer-collapse diagnostics); None when there is none."""
        from pytest_opro.prompts.metrics import answer_of

        return answer_of(self._metric, output, example)

    @property
    def metric_name(self) -> str:
        """The metric's name ("choice", "numeric", ...)."""
        return str(self._metric.name)

    def starting_instructions(self) -> list[str]:
        """``initial_instruction`` first (the baseline), then the other starting points, without repeats."""
        return list(dict.fromkeys([self.initial_instruction, *self.initial_instructions]))

    def scorer_config(self, override: ModelSpec = None) -> ModelConfig:
        """The scorer model: `override` (CLI) beats the task's own, which beats the default."""
        return model_config(override if override is not None else self.scorer, DEFAULT_SCORER_PARAMS)

    def optimizer_config(self, override: ModelSpec = None) -> ModelConfig:
        """The optimizer model, resolved like :meth:`scorer_config`."""
        return model_config(override if override is not None else self.optimizer, DEFAULT_OPTIMIZER_PARAMS)

    def render_user(self, instruction: str, example: Example) -> str:
        """The user turn for `example`, with `instruction` only where the template asks for it."""
        variables = dict(example.variables())
        if self.position == "slot":
            variables["instruction"] = instruction
        origin = f"{self._origin} (example {example.id}{', ' + example.source if example.source else ''})"
        return render(self.template, variables, origin)

    def messages(self, instruction: str, example: Example, *, prefill: bool = True) -> list[dict[str, str]]:
        """Chat messages that put `instruction` at this task's position for `example`."""
        user = self.render_user(instruction, example)
        instruction = instruction.strip()
        system = self.system_prompt
        assistant_prefix = None
        if instruction:
            if self.position == "Q_begin":
                user = f"{instruction}\n{user}"
            elif self.position == "Q_end":
                user = f"{user}\n{instruction}"
            elif self.position == "system":
                system = f"{system}\n{instruction}" if system else instruction
            elif self.position == "A_begin":
                if prefill:
                    assistant_prefix = instruction
                else:
                    user = f"{user}\n\nA: {instruction}"
        messages: list[dict[str, str]] = []
        if system:
            messages.append({"role": "system", "content": system})
        messages.append({"role": "user", "content": user})
        if assistant_prefix:
            messages.append({"role": "assistant", "content": assistant_prefix})
        return messages

    def score_output(self, output: str, example: Example) -> float:
        """Score one model output with the task's metric."""
        return self._metric(output, example)

    def _metric_id(self) -> str:
        """Name and version, plus a hash of the code for a custom metric."""
        digest = getattr(self._metric, "digest", None)
        base = f"{self._metric.name}@{self._metric.version}"
        return f"{base}+{digest}" if digest else base

    @property
    def default_fractions(self) -> bool:
        """Whether the task splits by the default fractions (no `counts`, `fractions` left as they are)."""
        return self.counts is None and self.fractions is not None and tuple(self.fractions) == DEFAULT_FRACTIONS

    def earlier_default_tasks(self) -> list[PromptTask]:
        """This task split by each earlier default of the fractions, when it uses the default: an
        artifact recorded under one of them is still current (the test split is the same)."""
        if not self.default_fractions:
            return []
        return [replace(self, fractions=f) for f in EARLIER_DEFAULT_FRACTIONS]

    def fingerprint(
        self, scorer: ModelConfig | None = None, *, samples: int = 1, aggregate: str = "mean"
    ) -> dict[str, str]:
        """Short hashes of everything that changes a score; the gate compares them one by one.

        A model-graded metric adds its own entries (judge model, parameters, rubric, template).
        `samples` (scorer calls per example) and `aggregate` are entries only when they are not the
        defaults 1 and "mean", so a one-sample fingerprint reads as it did before they existed."""
        scorer = scorer or self.scorer_config()
        parts = getattr(self._metric, "fingerprint_parts", None)
        extra = {str(k): str(v) for k, v in parts().items()} if callable(parts) else {}
        return {
            "template": _sha({"template": self.template, "position": self.position, "system": self.system_prompt}),
            "examples_train": examples_fingerprint(self._splits.train)[:16],
            "examples_validation": examples_fingerprint(self._splits.validation)[:16],
            "examples_test": examples_fingerprint(self._splits.test)[:16],
            "split_rule": self._split_rule,
            "metric": self._metric_id(),
            "scorer_model": scorer.model,
            "scorer_params": _sha(dict(scorer.params)),
            **extra,
            **({"samples": str(samples)} if samples != 1 else {}),
            **({"aggregate": aggregate} if aggregate != "mean" else {}),
        }
