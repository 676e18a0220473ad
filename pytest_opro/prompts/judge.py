"""Model-graded metric: a judge model grades each output against a rubric (``metrics.judge``).

The judge prompt is the Jinja2 template ``templates/judge.j2`` (or the user's own): the rubric, the
output, the example's input and its reference answer are *variables*, never template source. The
judge's reply must end with a line ``Grade: <n>`` with n an integer on the scale; anything else is a
failed grading (counted with failed calls, left out of the mean), never a 0.

Judge calls go through the run's :class:`~pytest_opro.models.client.LLMClient` like every model call:
one concurrent batch per scoring pass, cached under (judge model, parameters, messages, sample
index), counted against the budget and in the ledger under the role "judge". ``votes=k`` asks k times
with sample indices 0..k-1 and averages the readable grades.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any, Mapping, Sequence

from pytest_opro.errors import ConfigError, MetricError, ProviderError, TemplateError
from pytest_opro.hashing import canonical_json, sha256_hex
from pytest_opro.models.config import ModelConfig, ModelSpec, model_config
from pytest_opro.opro.meta_prompt import template_source
from pytest_opro.opro.templating import compile_template, render, variables_used
from pytest_opro.prompts.examples import Example
from pytest_opro.prompts.metric_types import Graded

if TYPE_CHECKING:
    from pytest_opro.models.client import LLMClient

#: Judge defaults: greedy for one vote; sampled (so votes differ) for several; room to explain.
DEFAULT_JUDGE_PARAMS: dict[str, Any] = {"temperature": 0.0, "max_tokens": 256}
VOTING_TEMPERATURE = 0.7
DEFAULT_TEMPLATE = "judge"
#: Why votes were dropped while others were averaged (a note counted in reports).
SOME_VOTES_UNREADABLE = "judge vote without a readable grade (others averaged)"

_GRADE_LINE = re.compile(
    r"^[\s>*_#`-]*(?:final\s+)?(?:grade|score|rating)[\s*_`]*[:=][\s*_`]*"
    r"(?P<grade>[-+]?\d+(?:\.\d+)?)(?:\s*/\s*(?P<of>\d+))?[\s*_`.]*$",
    re.IGNORECASE | re.MULTILINE,
)


def _sha(data: Any) -> str:
    return sha256_hex(canonical_json(data, compact=False), 16)


def judge_template_source(spec: str | None) -> tuple[str, str]:
    """(source, origin) of a judge template: a shipped name, a path to a ``.j2`` file, or inline source."""
    return template_source(spec or DEFAULT_TEMPLATE, "judge template")


def parse_verdict(text: str, scale: tuple[int, int]) -> tuple[int | None, str | None]:
    """The grade in a judge reply and None, or (None, why it has none).

    The grade is read from the last line of the form ``Grade: <n>`` (``Score:`` and ``Rating:``
    are read too, markdown emphasis and a trailing ``/<high>`` allowed). It must be an integer
    within ``scale``; a reply without such a line, with a fractional grade, or with one outside the
    scale is rejected with the reason.
    """
    low, high = scale
    matches = list(_GRADE_LINE.finditer(text or ""))
    if not matches:
        return None, f"no 'Grade: <{low}-{high}>' line in the judge's reply ({_snippet(text)})"
    match = matches[-1]
    raw, of = match.group("grade"), match.group("of")
    if of is not None and int(of) != high:
        return None, f"grade {raw}/{of} is not on the scale {low}-{high}"
    try:
        value = float(raw)
    except ValueError:  # pragma: no cover - the pattern admits numbers only
        return None, f"grade {raw!r} is not a number"
    if not value.is_integer():
        return None, f"grade {raw} is not an integer on the scale {low}-{high}"
    grade = int(value)
    if not low <= grade <= high:
        return None, f"grade {grade} is outside the scale {low}-{high}"
    return grade, None


def _snippet(text: str, limit: int = 80) -> str:
    flat = " ".join((text or "").split())
    if not flat:
        return "empty reply"
    return repr(flat if len(flat) <= limit else flat[: limit - 3] + "...")


def _input_text(example: Example) -> str:
    if isinstance(example.input, Mapping):
        return "\n".join(f"{k}: {v}" for k, v in example.input.items())
    return str(example.input)


class Judge:
    """A metric graded by a model; build it with :func:`pytest_opro.metrics.judge`.

    ``rubric`` says what a good answer is. ``model`` is the judge (a litellm model string or
    ModelConfig; default: the embedded ``local/smollm2``), ``params`` its sampling parameters on top
    of the defaults (temperature 0, or 0.7 with several votes; 256 tokens). ``scale=(low, high)`` is
    the grade range, mapped linearly to [0, 1]. ``votes=k`` averages k judgments. ``template`` is a
    template name, a ``.j2`` path or inline Jinja2 source; it sees ``rubric``, ``output``, ``input``,
    ``reference`` (the target, unless ``reference=False``), ``example`` (the example's variables),
    ``low`` and ``high``.
    """

    version = "1"

    def __init__(
        self,
        rubric: str,
        model: ModelSpec = None,
        *,
        scale: tuple[int, int] = (1, 5),
        votes: int = 1,
        template: str | None = None,
        params: Mapping[str, Any] | None = None,
        reference: bool = True,
        name: str = "judge",
    ) -> None:
        if not isinstance(rubric, str) or not rubric.strip():
            raise ConfigError("judge: the rubric is empty; say what a good answer is")
        try:
            low, high = (int(scale[0]), int(scale[1]))
        except (TypeError, ValueError, IndexError):
            raise ConfigError(f"judge: scale must be (low, high) integers, e.g. (1, 5), got {scale!r}") from None
        if high <= low:
            raise ConfigError(f"judge: scale {scale!r} needs low < high")
        if not isinstance(votes, int) or isinstance(votes, bool) or votes < 1:
            raise ConfigError(f"judge: votes must be a positive integer, got {votes!r}")
        self.rubric = rubric
        self.scale = (low, high)
        self.votes = votes
        self.reference = bool(reference)
        self.name = str(name)
        defaults = dict(DEFAULT_JUDGE_PARAMS)
        if votes > 1:
            defaults["temperature"] = VOTING_TEMPERATURE
        config = model_config(model, defaults)
        self.model: ModelConfig = config.with_params(**dict(params)) if params else config
        self.template_source, self.template_origin = judge_template_source(template)
        compile_template(self.template_source, self.template_origin)
        missing = {"output"} - variables_used(self.template_source, self.template_origin)
        if missing:
            raise TemplateError(f"{self.template_origin}: a judge template must show the answer as {{{{ output }}}}")
        self.digest = _sha({"scale": self.scale, "votes": votes, "reference": self.reference})[:8]

    @property
    def calls_per_output(self) -> int:
        """Judge calls made for each graded output (the votes), for the pre-run estimate."""
        return self.votes

    def __repr__(self) -> str:
        return f"<metric {self.name}@{self.version} by {self.model.model}>"

    def __call__(self, output: str, example: Example) -> float:
        raise MetricError(
            f"metric {self.name!r} calls a judge model; it scores through a task's scoring pass "
            "(opro.check, optimize, score_instruction), not one output at a time"
        )

    def fingerprint_parts(self) -> dict[str, str]:
        """What joins the task fingerprint: changing any of these makes a committed artifact stale."""
        return {
            "judge_model": self.model.model,
            "judge_params": _sha(dict(self.model.params)),
            "judge_rubric": _sha(self.rubric),
            "judge_template": _sha(self.template_source),
        }

    def messages(self, output: str, example: Example) -> list[dict[str, str]]:
        """The judge's chat for one output: the rendered template as one user turn."""
        variables = {
            "rubric": self.rubric,
            "output": output,
            "input": _input_text(example),
            "reference": example.target if self.reference else "",
            "example": example.variables(),
            "low": self.scale[0],
            "high": self.scale[1],
        }
        origin = f"{self.template_origin} (example {example.id})"
        return [{"role": "user", "content": render(self.template_source, variables, origin).strip()}]

    async def score_many(
        self, outputs: Sequence[str], examples: Sequence[Example], client: "LLMClient | None"
    ) -> list[Graded]:
        """Grade every output: all votes of all outputs in one concurrent batch through `client`."""
        if client is None:
            raise MetricError(f"metric {self.name!r} needs a model client to call its judge")
        requests = [
            (self.messages(output, example), vote)
            for output, example in zip(outputs, examples)
            for vote in range(self.votes)
        ]
        replies = await client.complete_many(self.model, requests, role="judge")
        low, high = self.scale
        graded: list[Graded] = []
        for i in range(len(outputs)):
            grades: list[int] = []
            first_problem: str | None = None
            for reply in replies[i * self.votes : (i + 1) * self.votes]:
                if isinstance(reply, ProviderError):
                    first_problem = first_problem or str(reply)
                    continue
                grade, why = parse_verdict(reply.text, self.scale)
                if grade is None:
                    first_problem = first_problem or f"judge {self.model.model}: {why}"
                    continue
                grades.append(grade)
            if not grades:
                graded.append(Graded(None, first_problem))
                continue
            value = sum((g - low) / (high - low) for g in grades) / len(grades)
            graded.append(Graded(value, SOME_VOTES_UNREADABLE if len(grades) < self.votes else None))
        return graded
