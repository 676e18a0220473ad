"""Metrics for answers that are not one word: the judge, JSON fields, token F1, and the graded gate.

Model calls go to the scripted provider (``fake/...`` models): the scorer answers from a table, the
judge from a function of its prompt, so every grade below is known in advance.
"""

from __future__ import annotations

import json
import re
from collections import Counter

import pytest
import yaml

from pytest_opro import OptimizerSettings, PromptTask, metrics, optimize
from pytest_opro.errors import BudgetExhausted, MetricError, TemplateError
from pytest_opro.models.cache import ResponseCache
from pytest_opro.models.client import LLMClient, run_sync
from pytest_opro.models.config import Budget, ModelConfig
from pytest_opro.opro.stats import paired_test
from pytest_opro.prompts.artifact import artifact_from_result
from pytest_opro.prompts.examples import Example, examples_from_records
from pytest_opro.prompts.gate import FINGERPRINT_LABELS, decide, stale_parts
from pytest_opro.prompts.instruction_problem import score_instructions
from pytest_opro.prompts.judge import parse_verdict
from pytest_opro.prompts.metrics import Graded, grade_outputs
from pytest_opro.prompts.optimization import estimate, settings_for
from pytest_opro.prompts.result import SplitScore
from tests.support.fake_provider import FakeBrain

SCORER = ModelConfig("fake/scorer", params={"temperature": 0.0})
RUBRIC = "The summary names the city and the weather."


def ex(target: str, id: str = "x", input: str = "q", aliases: tuple[str, ...] = ()) -> Example:
    return Example(id=id, input=input, target=target, aliases=aliases)


# -- judge verdicts -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "reply, grade",
    [
        ("The answer covers both points.\nGrade: 5", 5),
        ("Reasoning...\n**Grade:** 3", 3),
        ("grade: 4/5", 4),
        ("First thought Grade: 2\nOn reflection it is fine.\nGrade: 4", 4),  # the last grade line counts
        ("Score = 1", 1),
    ],
)
def test_judge_verdict_good(reply: str, grade: int) -> None:
    assert parse_verdict(reply, (1, 5)) == (grade, None)


@pytest.mark.parametrize(
    "reply, why",
    [
        ("It is a good answer, I would give it four.", r"no 'Grade: <1-5>' line"),
        ("", r"empty reply"),
        ("Grade: excellent", r"no 'Grade: <1-5>' line"),
        ("Grade: 7", r"grade 7 is outside the scale 1-5"),
        ("Grade: 0", r"grade 0 is outside the scale 1-5"),
        ("Grade: 3.5", r"grade 3.5 is not an integer"),
        ("Grade: 8/10", r"grade 8/10 is not on the scale 1-5"),
    ],
)
def test_judge_verdict_rejected_with_reason(reply: str, why: str) -> None:
    grade, reason = parse_verdict(reply, (1, 5))
    assert grade is None
    assert re.search(why, reason), reason


# -- a judged task on the scripted provider -----------------------------------------------------


def weather_task(metric, n: int = 6) -> PromptTask:
    records = [
        {"id": f"w{i}", "input": f"Weather report {i}: sunny in Town{i}.", "target": f"Sunny in Town{i}."}
        for i in range(n)
    ]
    return PromptTask(
        name="weather",
        examples=examples_from_records(records),
        template="{{ input }}",
        metric=metric,
        scorer="fake/scorer",
        optimizer="fake/optimizer",
        counts=(2, 2, n - 4),
    )


def scripted(judge_reply) -> "callable":
    """A scorer that summarises (`Summary of <input>`) and a judge that answers `judge_reply(prompt, n)`."""
    seen: Counter[str] = Counter()

    def reply(messages: list[dict]) -> str:
        text = "\n".join(m["content"] for m in messages)
        if "Answer to grade:" in text:
            n = seen[text]
            seen[text] += 1
            return judge_reply(text, n)
        return f"Summary of {text}"

    return reply


def test_judge_grades_map_to_the_unit_interval_and_see_reference_and_rubric(fake_llm: FakeBrain) -> None:
    fake_llm.scorer = scripted(lambda text, n: "Good.\nGrade: 4")
    task = weather_task(metrics.judge(RUBRIC, "fake/judge"))
    client = LLMClient()
    (score,) = run_sync(score_instructions(task, client, SCORER, ["Summarise."], task.splits.test))
    assert score.failures == 0 and score.n == len(task.splits.test)
    assert all(v == pytest.approx(0.75) for v in score.outcomes.values())  # (4 - 1) / (5 - 1)
    judge_prompts = [m for model, m in fake_llm.log if model == "fake/judge"]
    assert len(judge_prompts) == len(task.splits.test)
    first = judge_prompts[0][0]["content"]
    example = task.splits.test[0]
    assert RUBRIC in first and f"Reference answer:\n{example.target}" in first
    assert f"Answer to grade:\nSummary of Summarise.\n{example.input}" in first
    roles = client.ledger.roles_dict()
    assert roles["judge"]["calls"] == roles["scorer"]["calls"] == len(task.splits.test)


def test_unreadable_verdict_is_a_failure_not_a_zero(fake_llm: FakeBrain) -> None:
    bad = {"Weather report 5"}
    fake_llm.scorer = scripted(lambda text, n: "no idea" if any(b in text for b in bad) else "Grade: 5")
    task = weather_task(metrics.judge(RUBRIC, "fake/judge"), n=6)
    examples = [e for e in task.examples if e.id in ("w4", "w5")]
    (score,) = run_sync(score_instructions(task, LLMClient(), SCORER, [""], examples))
    assert score.outcomes == {"w4": 1.0}  # w5 is left out of the mean, not scored 0
    assert score.failures == 1 and score.value == 1.0
    assert "judge fake/judge: no 'Grade: <1-5>' line" in score.error


def test_votes_use_distinct_sample_indices_and_average(fake_llm: FakeBrain, tmp_path) -> None:
    grades = {0: "Grade: 5", 1: "Grade: 3", 2: "Grade: 1"}  # the n-th time the judge sees a prompt
    fake_llm.scorer = scripted(lambda text, n: grades[n % 3])
    task = weather_task(metrics.judge(RUBRIC, "fake/judge", votes=3))
    cache = ResponseCache(tmp_path)
    client = LLMClient(cache=cache)
    (score,) = run_sync(score_instructions(task, client, SCORER, [""], task.splits.test))
    assert list(score.outcomes.values()) == [pytest.approx(0.5)] * len(task.splits.test)  # mean of 1, 0.5, 0
    assert fake_llm.calls["fake/judge"] == 3 * len(task.splits.test)
    # three distinct cache entries per answer: the sample index is part of the key
    judge_keys = {
        cache.key("fake/judge", msgs, task.metric_obj.model.params, i)
        for model, msgs in fake_llm.log
        if model == "fake/judge"
        for i in range(3)
    }
    assert len(judge_keys) == 3 * len(task.splits.test)
    assert all(cache.get(k) is not None for k in judge_keys)
    assert task.metric_obj.model.params["temperature"] > 0  # several votes are sampled, not greedy


def test_votes_average_the_readable_ones_and_say_so(fake_llm: FakeBrain) -> None:
    grades = {0: "Grade: 5", 1: "garbled", 2: "Grade: 3"}
    fake_llm.scorer = scripted(lambda text, n: grades[n % 3])
    task = weather_task(metrics.judge(RUBRIC, "fake/judge", votes=3))
    (score,) = run_sync(score_instructions(task, LLMClient(), SCORER, [""], task.splits.test))
    assert score.failures == 0
    assert list(score.outcomes.values()) == [pytest.approx(0.75)] * len(task.splits.test)
    assert score.notes == {"judge vote without a readable grade (others averaged)": len(task.splits.test)}


def test_judge_calls_are_cached_and_replayed_with_zero_provider_calls(fake_llm: FakeBrain, tmp_path) -> None:
    fake_llm.scorer = scripted(lambda text, n: f"Grade: {1 + len(text) % 5}")
    task = weather_task(metrics.judge(RUBRIC, "fake/judge", votes=2))
    first_client = LLMClient(cache=ResponseCache(tmp_path))
    first = run_sync(score_instructions(task, first_client, SCORER, ["A", "B"], task.examples))
    made = sum(fake_llm.calls.values())
    assert made == 2 * len(task.examples) * (1 + 2)  # scorer + two votes, for each instruction and example
    replay = LLMClient(cache=ResponseCache(tmp_path, mode="ro"), budget=Budget(max_calls=0))
    again = run_sync(score_instructions(task, replay, SCORER, ["A", "B"], task.examples))
    assert sum(fake_llm.calls.values()) == made  # zero provider calls
    assert [s.outcomes for s in again] == [s.outcomes for s in first]
    roles = replay.ledger.roles_dict()
    assert roles["judge"]["calls"] == 0 and roles["judge"]["cache_hits"] == 2 * len(task.examples) * 2
    assert roles["scorer"]["cache_hits"] == 2 * len(task.examples)


def test_budget_counts_judge_calls(fake_llm: FakeBrain) -> None:
    fake_llm.scorer = scripted(lambda text, n: "Grade: 3")
    task = weather_task(metrics.judge(RUBRIC, "fake/judge"))
    n = len(task.examples)
    client = LLMClient(budget=Budget(max_calls=n + 2))  # all scorer calls fit, the judge's do not
    with pytest.raises(BudgetExhausted, match="max_calls"):
        run_sync(score_instructions(task, client, SCORER, [""], task.examples))
    assert fake_llm.calls["fake/scorer"] == n and fake_llm.calls["fake/judge"] == 2
    assert client.ledger.roles_dict()["judge"]["calls"] == 2


def test_estimate_counts_judge_calls() -> None:
    plain = weather_task("exact", n=10)
    judged = weather_task(metrics.judge(RUBRIC, "fake/judge", votes=3), n=10)
    settings = settings_for(plain, {"max_steps": 2, "candidates": 2})
    a = estimate(plain, settings, plain.scorer_config(), plain.optimizer_config())
    b = estimate(judged, settings, judged.scorer_config(), judged.optimizer_config())
    assert a.judge_calls == 0 and b.judge_calls == 3 * b.scorer_calls
    assert b.calls == a.calls + b.judge_calls
    assert f"{b.judge_calls} judge" in b.describe()


def test_fingerprint_goes_stale_when_the_judge_changes() -> None:
    base = weather_task(metrics.judge(RUBRIC, "fake/judge")).fingerprint()
    assert {"judge_model", "judge_params", "judge_rubric", "judge_template"} <= set(base)
    changes = {
        "judge rubric": metrics.judge(RUBRIC + " Be strict.", "fake/judge"),
        "judge model (fake/judge -> fake/other)": metrics.judge(RUBRIC, "fake/other"),
        "judge parameters": metrics.judge(RUBRIC, "fake/judge", params={"max_tokens": 99}),
        "judge template": metrics.judge(RUBRIC, "fake/judge", template="Rate {{ output }}. Grade: <n>"),
        "metric (judge@1+": metrics.judge(RUBRIC, "fake/judge", scale=(0, 10)),
    }
    for label, metric in changes.items():
        (changed,) = stale_parts(base, weather_task(metric).fingerprint())
        assert changed.startswith(label)
    assert stale_parts(base, weather_task(metrics.judge(RUBRIC, "fake/judge")).fingerprint()) == []
    assert {FINGERPRINT_LABELS[k] for k in ("judge_rubric", "judge_template")} == {"judge rubric", "judge template"}


def test_judge_template_gets_data_as_variables_never_as_source(fake_llm: FakeBrain, tmp_path) -> None:
    custom = tmp_path / "my_judge.j2"
    custom.write_text("Rubric: {{ rubric }}\nAnswer to grade:\n{{ output }}\nEnd with Grade: <n>", encoding="utf-8")
    judge = metrics.judge(RUBRIC, "fake/judge", template=str(custom))
    messages = judge.messages("{{ 7*7 }} {% if true %}x{% endif %}", ex("{{ 6*6 }}"))
    assert "{{ 7*7 }} {% if true %}x{% endif %}" in messages[0]["content"]
    with pytest.raises(TemplateError, match="must show the answer"):
        metrics.judge(RUBRIC, "fake/judge", template="Grade this: {{ rubric }}")
    with pytest.raises(MetricError, match="scoring pass"):
        judge("an answer", ex("t"))


def test_optimize_with_a_judge_records_roles_and_judge_in_the_artifact(fake_llm: FakeBrain, tmp_path) -> None:
    fake_llm.scorer = scripted(lambda text, n: "Grade: 5" if "carefully" in text else "Grade: 2")
    task = weather_task(metrics.judge(RUBRIC, "fake/judge"), n=10)
    result = optimize(task, settings=OptimizerSettings(max_steps=2, candidates=2, patience=0), cache=None)
    roles = result.usage_by_role
    assert set(roles) == {"scorer", "optimizer", "judge"}
    assert roles["judge"]["calls"] == roles["scorer"]["calls"] > 0
    assert roles["optimizer"]["calls"] == fake_llm.calls["fake/optimizer"]
    data = artifact_from_result(result.to_dict(), "0", [])
    assert data["judge"]["model"] == "fake/judge"
    assert data["run"]["by_role"]["judge"]["calls"] == roles["judge"]["calls"]
    assert data["run"]["calls"] == sum(r["calls"] for r in roles.values())
    assert data["fingerprint"]["judge_rubric"] == task.fingerprint()["judge_rubric"]


# -- JSON -------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "reply",
    [
        '{"name": "Ada", "age": 36}',
        '```json\n{"name": "Ada", "age": 36}\n```',
        'Here you go:\n```\n{"name": "Ada", "age": 36}\n```\nAnything else?',
        'Sure! The fields are {"name": "Ada", "age": 36}. Hope this helps {not json}.',
        'Tags [1, 2] then the object: {"name": "Ada", "age": 36}',  # an object wins over an earlier array
    ],
)
def test_json_is_found_bare_fenced_and_in_prose(reply: str) -> None:
    assert metrics.extract_json(reply) == ({"name": "Ada", "age": 36}, None)


@pytest.mark.parametrize("reply", ["Ada is 36.", "{name: Ada}", "", '```json\n{"name": \n```'])
def test_no_json_says_why(reply: str) -> None:
    value, why = metrics.extract_json(reply)
    assert value is None and why


PERSON = json.dumps({"name": "Ada Lovelace", "city": "London", "age": 36})


@pytest.mark.parametrize(
    "reply, value, reason",
    [
        ('{"name": "Ada Lovelace", "city": "London", "age": 36}', 1.0, None),
        ('Result: {"name": "ada lovelace.", "city": "LONDON", "age": "36 years"}', 1.0, None),
        ('{"name": "Ada", "city": "London", "age": 37}', 1 / 3, None),
        ('{"name": "Ada Lovelace"}', 1 / 3, None),
        ("Her name is Ada Lovelace.", 0.0, "not JSON"),
        ('["Ada Lovelace", "London", 36]', 0.0, "JSON but not an object"),
    ],
)
def test_json_fields_share_of_fields_right(reply: str, value: float, reason: str | None) -> None:
    metric = metrics.json_fields({"name": "normalized", "city": "normalized", "age": "numeric"})
    graded = metric.grade(reply, ex(PERSON))
    assert graded == Graded(pytest.approx(value), reason)
    assert metric(reply, ex(PERSON)) == pytest.approx(value)


def test_json_fields_exact_comparison_and_default_fields() -> None:
    metric = metrics.json_fields(compare="exact")
    assert metric('{"name": "Ada Lovelace", "city": "London", "age": 36}', ex(PERSON)) == 1.0
    assert metric('{"name": "ada lovelace", "city": "London", "age": "36"}', ex(PERSON)) == pytest.approx(1 / 3)
    only = metrics.json_fields(["city"])
    assert only('{"city": "London"}', ex(PERSON)) == 1.0


def test_json_schema_failures_score_zero_with_the_reason() -> None:
    schema = {"type": "object", "required": ["name", "age"], "properties": {"age": {"type": "integer"}}}
    metric = metrics.json_fields(["name", "age"], schema=schema)
    assert metric.grade('{"name": "Ada Lovelace", "age": 36}', ex(PERSON)) == Graded(1.0)
    assert metric.grade('{"name": "Ada Lovelace", "age": "36"}', ex(PERSON)) == Graded(0.0, "schema violation")
    assert metric.grade('{"age": 36}', ex(PERSON)) == Graded(0.0, "schema violation")
    assert metric.schema_errors('{"age": "36"}') == ["'name' is a required property", "'36' is not of type 'integer'"]
    with pytest.raises(MetricError, match="not a valid JSON Schema"):
        metrics.json_fields(schema={"type": "no-such-type"})
    assert metrics.json_fields(schema=schema).digest != metrics.json_fields().digest  # the schema is fingerprinted


def test_json_fields_needs_an_object_target() -> None:
    with pytest.raises(MetricError, match="target of example 'x' .*is not a JSON object"):
        metrics.json_fields()('{"a": 1}', ex("plain text"))
    with pytest.raises(MetricError, match="compare='fuzzy'"):
        metrics.json_fields(compare="fuzzy")


def test_json_reasons_are_counted_per_split(fake_llm: FakeBrain) -> None:
    records = [{"id": f"p{i}", "input": f"Person {i}", "target": json.dumps({"n": i})} for i in range(10)]
    task = PromptTask(
        name="people",
        examples=examples_from_records(records),
        metric=metrics.json_fields(),
        scorer="fake/scorer",
        counts=(2, 2, 6),
    )

    def reply(messages: list[dict]) -> str:
        i = int(messages[-1]["content"].rsplit(" ", 1)[-1])
        return f'Sure: {{"n": {i}}}' if i % 3 else f"Person number {i}"

    fake_llm.scorer = reply
    (score,) = run_sync(score_instructions(task, LLMClient(), SCORER, [""], task.examples))
    assert score.notes == {"not JSON": 4}  # p0, p3, p6, p9
    assert score.value == pytest.approx(0.6) and score.failures == 0
    split = SplitScore.from_score(score)
    assert split.describe_notes() == "4 of 10 replies: not JSON"
    assert split.to_dict()["notes"] == {"not JSON": 4}


# -- token F1 ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "output, target, aliases, expected",
    [
        ("the cat sat", "cat sat on mat", (), 2 / 3),  # P = 2/2, R = 2/4
        ("Cat, sat!", "cat sat", (), 1.0),
        ("a dog", "the cat", (), 0.0),
        ("", "cat", (), 0.0),
        ("the", "a", (), 1.0),  # both empty after dropping articles
        ("new york city", "NYC", ("New York",), 0.8),  # best alias: P = 2/3, R = 1
        ("cat cat cat", "cat", (), 0.5),  # repeated words count once per match: P = 1/3, R = 1
    ],
)
def test_token_f1(output: str, target: str, aliases: tuple[str, ...], expected: float) -> None:
    assert metrics.token_f1(output, ex(target, aliases=aliases)) == pytest.approx(expected)
    assert metrics.resolve("token_f1") is metrics.token_f1


# -- the gate on graded scores --------------------------------------------------------------------


def test_permutation_gate_matches_the_exact_value() -> None:
    recorded = {"a": 1.0, "b": 0.8, "c": 0.6, "d": 0.5}
    now = {"a": 0.5, "b": 0.6, "c": 0.6, "d": 0.4}
    # drops 0.5, 0.2, 0.1 (one tie): of the 2**3 sign patterns only "all drops" reaches a sum of 0.8
    decision = decide(recorded, now, tolerance=0.0, alpha=0.2)
    assert (decision.test, decision.resamples) == ("permutation", 0)
    assert decision.p_value == pytest.approx(1 / 8)
    assert decision.worse_ids == ["a", "b", "d"] and decision.better_ids == []
    assert decision.verdict == "regression"
    text = decision.message("summary")
    assert "paired permutation test (sign-flip on per-example score differences, exact over every sign pattern)" in text
    assert "3 lower, 0 higher, one-sided p=0.125" in text and "first ids that scored lower: a, b, d" in text


def test_permutation_gate_with_resamples_is_seeded_and_says_how_many() -> None:
    ids = [f"e{i:02d}" for i in range(40)]
    recorded = {i: 0.9 for i in ids}
    now = {i: 0.9 - (0.05 + 0.01 * (k % 7)) * (1 if k % 4 else -1) for k, i in enumerate(ids)}
    first, second = decide(recorded, now), decide(recorded, now)
    assert first.test == "permutation" and first.resamples == 10_000
    assert first.p_value == second.p_value  # seeded
    direct = paired_test([now[i] for i in ids], [recorded[i] for i in ids], resamples=10_000, seed=0)
    assert first.p_value == direct.p_value < 0.05 and not first.passed
    assert "10000 seeded resamples" in first.message("summary")


def test_binary_outcomes_keep_the_sign_test() -> None:
    recorded = {f"e{i}": 1.0 for i in range(10)}
    now = {**recorded, **{f"e{i}": 0.0 for i in range(6)}}
    decision = decide(recorded, now)
    assert decision.test == "sign" and decision.p_value == pytest.approx(1 / 64)
    assert "paired sign test: 6 right->wrong, 0 wrong->right" in decision.message("t")


# -- old-style and asynchronous user metrics ------------------------------------------------------------


def test_old_style_metrics_still_work(fake_llm: FakeBrain) -> None:
    def starts_with_target(output, example):  # a user's metric from before: plain (output, example) -> float
        return output.startswith(example.target)

    class Length:
        name, version = "length", "2"

        def __call__(self, output, example):
            return min(1.0, len(output) / 100)

    fake_llm.scorer = lambda messages: "Sunny in Town" + messages[-1]["content"][15] + ". Yes."
    for metric, expected in ((starts_with_target, 1.0), (Length(), pytest.approx(len("Sunny in Town0. Yes.") / 100))):
        task = weather_task(metric)
        (score,) = run_sync(score_instructions(task, LLMClient(), SCORER, [""], task.examples[:1]))
        assert score.outcomes == {"w0": expected} and score.notes is None
    assert re.fullmatch(
        r".*starts_with_target@1\+[0-9a-f]{8}", weather_task(starts_with_target).fingerprint()["metric"]
    )


def test_async_user_metric_and_score_many_object() -> None:
    async def slow_match(output, example):
        return output == example.target

    class Batch:
        name, version = "batch", "1"

        async def score_many(self, outputs, examples, client):
            return [
                Graded(None, "cannot grade") if o == "?" else float(o == e.target) for o, e in zip(outputs, examples)
            ]

    examples = [ex("a", id="1"), ex("b", id="2"), ex("c", id="3")]
    assert run_sync(grade_outputs(metrics.resolve(slow_match), ["a", "x", "c"], examples)) == [
        Graded(1.0),
        Graded(0.0),
        Graded(1.0),
    ]
    assert metrics.resolve(Batch()).name == "batch"
    assert run_sync(grade_outputs(Batch(), ["a", "?", "x"], examples)) == [
        Graded(1.0),
        Graded(None, "cannot grade"),
        Graded(0.0),
    ]

    class OutOfRange(Batch):
        async def score_many(self, outputs, examples, client):
            return [2.0 for _ in outputs]

    with pytest.raises(MetricError, match=r"metric 'batch' returned 2.0 for example '1'"):
        run_sync(grade_outputs(OutOfRange(), ["a"], examples[:1]))


# -- usage per role ---------------------------------------------------------------------------------


def test_ledger_counts_per_role_and_survives_a_checkpoint() -> None:
    from pytest_opro.models.usage import Ledger

    ledger = Ledger()
    for model, role in (("m/a", "scorer"), ("m/a", "judge"), ("m/b", "optimizer"), ("m/a", None)):
        for usage in ledger.usages(model, role):
            usage.calls += 1
    assert ledger.to_dict()["m/a"]["calls"] == 3 and ledger.to_dict()["m/b"]["calls"] == 1
    assert {r: u["calls"] for r, u in ledger.roles_dict().items()} == {"judge": 1, "optimizer": 1, "scorer": 1}
    restored = Ledger.from_state(ledger.state())
    assert restored.to_dict() == ledger.to_dict() and restored.roles_dict() == ledger.roles_dict()
    old_checkpoint = Ledger.from_state(ledger.to_dict())  # written before roles existed
    assert old_checkpoint.to_dict() == ledger.to_dict() and old_checkpoint.roles_dict() == {}


# -- through the plugin: optimise, gate from the cache, stale when the rubric changes ----------------

JUDGE_CONFTEST = """
import os
import pathlib
import sys

sys.path.insert(0, {repo!r})

import pytest
import yaml
from pytest_opro import PromptTask, load_examples, metrics
from tests.support.fake_provider import FakeBrain, install

HERE = pathlib.Path(__file__).parent


def reply(messages):
    text = "\\n".join(m["content"] for m in messages)
    if "Answer to grade:" in text:
        return "Grade: 5" if "carefully" in text.split("Answer to grade:")[1] else "Grade: 2"
    return "I will answer " + ("carefully" if "carefully" in text else "quickly")


@pytest.fixture
def judged_task():
    install(FakeBrain(scorer=reply))
    rubric = os.environ.get("OPRO_TEST_RUBRIC", "Careful answers are best.")
    return PromptTask(name="judged", examples=load_examples(HERE / "data.jsonl"), template="{{{{ input }}}}",
                      metric=metrics.judge(rubric, "fake/judge"), scorer="fake/scorer", optimizer="fake/optimizer",
                      settings={{"max_steps": 2, "candidates": 4, "select_alpha": 1}})
"""


def test_plugin_optimises_gates_from_cache_and_goes_stale_on_a_new_rubric(pytester, monkeypatch) -> None:
    from pathlib import Path

    repo = Path(__file__).resolve().parents[2]
    pytester.makeconftest(JUDGE_CONFTEST.format(repo=str(repo)))
    rows = [
        {"id": f"t{i:02d}", "input": f"Topic {i}: explain it.", "target": f"An explanation of topic {i}."}
        for i in range(20)
    ]
    pytester.path.joinpath("data.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    pytester.makepyfile(test_judged="def test_judged(opro, judged_task):\n    opro.check(judged_task)\n")
    quiet = ("-p", "no:cacheprovider", "-p", "no:hypothesispytest", "-p", "no:benchmark", "--opro-report=report.json")

    optimised = pytester.runpytest_subprocess("--opro-optimize", *quiet)
    optimised.assert_outcomes(passed=1)
    optimised.stdout.fnmatch_lines(["*scorer*judge)*"])  # the estimate counts judge calls
    artifact = yaml.safe_load(pytester.path.joinpath("__opro__", "judged.yaml").read_text(encoding="utf-8"))
    assert "carefully" in artifact["instruction"] and artifact["scores"]["test"]["score"] == 1.0
    assert artifact["baseline"]["scores"]["test"]["score"] == 0.25
    assert artifact["judge"] == {"model": "fake/judge", "params": {"max_tokens": 256, "temperature": 0.0}}
    judged, scored = artifact["run"]["by_role"]["judge"], artifact["run"]["by_role"]["scorer"]
    # one judgment per answer; answers that repeat (same output, same example) are judged once, then cached
    assert judged["calls"] + judged["cache_hits"] == scored["calls"] + scored["cache_hits"]
    assert 0 < judged["calls"] < scored["calls"]
    report = json.loads(pytester.path.joinpath("report.json").read_text(encoding="utf-8"))
    assert report["tasks"][0]["usage"]["by_role"]["judge"]["calls"] > 0

    gated = pytester.runpytest_subprocess(*quiet)
    gated.assert_outcomes(passed=1)
    (task,) = json.loads(pytester.path.joinpath("report.json").read_text(encoding="utf-8"))["tasks"]
    assert task["status"] == "passed" and task["usage"]["calls"] == 0  # scorer and judge replayed from the cache
    assert task["usage"]["cache_hits"] == 2 * task["gate"]["n"]
    assert task["gate"]["test"] == "sign"  # the winner scores 1.0 on every test example

    monkeypatch.setenv("OPRO_TEST_RUBRIC", "Short answers are best.")
    stale = pytester.runpytest_subprocess(*quiet)
    stale.assert_outcomes(failed=1)
    stale.stdout.fnmatch_lines(["*artifact judged.yaml is stale: changed since it was written: judge rubric.*"])


def test_judge_key_and_endpoint_never_reach_fingerprint_or_artifact(fake_llm: FakeBrain) -> None:
    secret = "sk-judge-secret-123"
    judge = metrics.judge(RUBRIC, ModelConfig("fake/judge", api_key=secret, api_base="http://127.0.0.1:9/v1"))
    task = weather_task(judge, n=10)
    fake_llm.scorer = scripted(lambda text, n: "Grade: 3")
    result = optimize(task, settings=OptimizerSettings(max_steps=1, candidates=1, patience=0), cache=None)
    text = json.dumps(artifact_from_result(result.to_dict(), "0", [])) + json.dumps(task.fingerprint())
    assert secret not in text and "127.0.0.1:9" not in text
