"""Repeated samples (``--opro-samples``) and model comparison (``--opro-compare-model``) through pytester,
on the scripted provider: ``fake/scorer`` knows every answer, ``fake/weak`` always answers "no" (about
half the examples), ``fake/broken`` fails every call.
"""

from __future__ import annotations

import json
import re

import pytest
import yaml

from tests.plugin.test_plugin import (
    CONFTEST,
    REPO,
    TEST_SPORTS,
    artifact_of,
    example_lines,
    gate,
    opro_section,
    optimize,
)
from tests.support.fake_provider import fake_handler

#: Inner pytest runs happen in this process: pytest-opro, litellm and their lazy imports load first.
pytestmark = pytest.mark.usefixtures("inline_ready")

MODELS = """

import litellm

_plain_brain = new_brain


def new_brain():
    brain = _plain_brain()
    brain.by_model["fake/weak"] = lambda messages: "no"
    brain.fail = lambda model, messages: (
        litellm.BadRequestError(message="this model was retired", model=model, llm_provider="fake")
        if model == "fake/broken"
        else None
    )
    return brain
"""


@pytest.fixture
def suite(pytester: pytest.Pytester) -> pytest.Pytester:
    pytester.makeconftest(CONFTEST.format(repo=str(REPO)) + MODELS)
    pytester.path.joinpath("sports.jsonl").write_text(example_lines(30), encoding="utf-8")
    pytester.makepyfile(test_sports=TEST_SPORTS)
    return pytester


# -- samples -------------------------------------------------------------------------------------


def test_samples_are_recorded_replayed_and_a_change_of_k_is_stale(suite: pytest.Pytester) -> None:
    optimize(suite, "--opro-samples", "3").assert_outcomes(passed=1)
    art = artifact_of(suite)
    assert art["fingerprint"]["samples"] == "3" and "aggregate" not in art["fingerprint"]
    assert art["optimizer_settings"]["samples"] == 3 and art["optimizer_settings"]["aggregate"] == "mean"

    warm = gate(suite, "--opro-samples", "3")
    warm.assert_outcomes(passed=1)
    assert sum(fake_handler().brain.calls.values()) == 0  # every sample 0..2 came from the cache

    for args, change in (
        ([], "samples per example (3 -> 1)"),
        (["--opro-samples", "3", "--opro-aggregate", "all"], "aggregate of the samples (mean -> all)"),
    ):
        stale = gate(suite, *args)
        stale.assert_outcomes(failed=1)
        out = stale.stdout.str()
        assert f"is stale: changed since it was written: {change}." in out, out
        assert "combined from another number of scorer calls" in out


def test_samples_in_ini_and_the_estimate(suite: pytest.Pytester) -> None:
    suite.makeini("[pytest]\nopro_samples = 2\nopro_aggregate = majority\n")
    result = optimize(suite, "-s")
    result.assert_outcomes(passed=1)
    art = artifact_of(suite)
    assert art["fingerprint"]["samples"] == "2" and art["fingerprint"]["aggregate"] == "majority"
    one = optimize(suite, "-s", "--opro-samples", "1", "--opro-aggregate", "mean")
    estimate = re.compile(r"at most \d+ calls \(\d+ optimizer, (\d+) scorer\)")
    two_calls = int(estimate.search(result.stdout.str()).group(1))
    one_calls = int(estimate.search(one.stdout.str()).group(1))
    assert two_calls == 2 * one_calls


def test_bad_samples_and_aggregate_are_usage_errors(suite: pytest.Pytester) -> None:
    result = gate(suite, "--opro-samples", "0")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    assert "--opro-samples='0' must be a positive integer" in result.stderr.str()
    result = gate(suite, "--opro-aggregate", "median")
    assert "--opro-aggregate='median' must be mean, all or majority" in result.stderr.str()


# -- model comparison ----------------------------------------------------------------------------


def comparisons(report_path) -> list[dict]:
    report = json.loads(report_path.read_text(encoding="utf-8"))
    return [c for t in report["tasks"] for c in t["comparisons"]]


def test_compare_reports_every_field_and_fails_nothing_by_default(suite: pytest.Pytester) -> None:
    optimize(suite).assert_outcomes(passed=1)
    recorded = artifact_of(suite)
    result = gate(
        suite,
        "--opro-compare-model",
        "fake/weak",
        "--opro-compare-model",
        "fake/scorer temperature=0.5",
        "--opro-report",
        "report.json",
    )
    result.assert_outcomes(passed=1)
    weak, same = comparisons(suite.path / "report.json")
    assert weak["recorded_model"] == "fake/scorer" and weak["model"] == "fake/weak"
    assert weak["recorded"] == pytest.approx(recorded["scores"]["test"]["score"])
    n = recorded["scores"]["test"]["n"]
    right_before = [i for i, v in recorded["test_outcomes"].items() if v == 1.0]
    assert weak["n"] == n and 0 < len(weak["flipped"]) < n and set(weak["flipped"]) <= set(right_before)
    assert weak["now"] == pytest.approx(weak["recorded"] - len(weak["flipped"]) / n)
    assert weak["delta"] == pytest.approx(weak["now"] - weak["recorded"])
    assert weak["p_value"] == pytest.approx(0.5 ** len(weak["flipped"]))
    assert weak["verdict"] == "regression" and weak["significant_drop"] and weak["failed"]
    assert weak["calls"] == n and weak["cost_usd"] == 0.0 and weak["error"] is None
    assert weak["test"] == "sign" and weak["samples"] == 1
    # a parameter after the model string keeps the task's scorer parameters under it
    assert same["model"] == "fake/scorer temperature=0.5" and same["params"]["temperature"] == 0.5
    assert same["params"]["max_tokens"] == 64 and same["verdict"] == "pass" and not same["failed"]

    section = opro_section(result)
    row = next(line for line in section.splitlines() if "fake/scorer -> fake/weak" in line)
    assert re.search(
        r"100\.0% -> \d+\.\d%\s+-\d+\.\d\s+\S+\s+"
        + str(len(weak["flipped"]))
        + r"\s+\$0\.0000\s+regression \(significant drop\)",
        row,
    ), row
    assert "opro compare sports: fake/scorer -> fake/weak:" in result.stdout.str()

    suite.runpytest("-p", "no:cacheprovider", "--opro-compare-model", "fake/weak", "--opro-report", "report.md")
    markdown = (suite.path / "report.md").read_text(encoding="utf-8")
    assert "### Model comparison" in markdown
    assert re.search(
        r"\| sports \| fake/scorer → fake/weak \| 100\.0% → \d+\.\d% \| -\d+\.\d pts \| \S+ \| \d+ of \d+ \| \$0\.0000 \| \*\*significant drop\*\* regression \|",
        markdown,
    ), markdown


def test_compare_fail_fails_a_significant_drop_like_the_gate(suite: pytest.Pytester) -> None:
    optimize(suite).assert_outcomes(passed=1)
    result = gate(suite, "--opro-compare-model", "fake/weak", "--opro-compare-fail")
    result.assert_outcomes(failed=1)
    out = result.stdout.str()
    assert "opro compare FAILED for task 'sports': fake/scorer -> fake/weak: regression" in out
    assert "as the gate does" in out and "first ids that scored lower:" in out
    fine = gate(suite, "--opro-compare-model", "fake/scorer", "--opro-compare-fail")
    fine.assert_outcomes(passed=1)


def test_ini_compare_models(suite: pytest.Pytester) -> None:
    optimize(suite).assert_outcomes(passed=1)
    suite.makeini("[pytest]\nopro_compare_models =\n    fake/weak\n    fake/scorer\n")
    result = gate(suite, "--opro-report", "report.json")
    result.assert_outcomes(passed=1)
    assert [c["model"] for c in comparisons(suite.path / "report.json")] == ["fake/weak", "fake/scorer"]


def test_a_model_that_errors_fails_only_its_comparison(suite: pytest.Pytester) -> None:
    optimize(suite).assert_outcomes(passed=1)
    result = gate(
        suite,
        "--opro-compare-model",
        "fake/broken",
        "--opro-compare-model",
        "fake/weak",
        "--opro-report",
        "report.json",
    )
    result.assert_outcomes(passed=1)  # the gate passed; a comparison is not the gate
    broken, weak = comparisons(suite.path / "report.json")
    n = artifact_of(suite)["scores"]["test"]["n"]
    assert broken["error"].startswith(f"{n} of {n} answers could not be scored"), broken["error"]
    assert "this model was retired" in broken["error"] and broken["failed"]
    assert broken["now"] is None and broken["verdict"] is None
    assert weak["error"] is None and weak["verdict"] == "regression"  # the next comparison still ran
    assert "fake/scorer -> fake/broken" in opro_section(result) and "not compared:" in opro_section(result)
    failing = gate(suite, "--opro-compare-model", "fake/broken", "--opro-compare-fail")
    failing.assert_outcomes(failed=1)
    assert "opro compare FAILED for task 'sports' on fake/broken:" in failing.stdout.str()


def test_bad_compare_model_is_a_usage_error(suite: pytest.Pytester) -> None:
    result = gate(suite, "--opro-compare-model", "fake/weak temperature")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    assert "--opro-compare-model: model 'fake/weak temperature': 'temperature' is not key=value" in result.stderr.str()


def test_compare_models_in_the_python_api(suite: pytest.Pytester, fake_llm) -> None:  # type: ignore[no-untyped-def]
    from pytest_opro import ModelComparison, PromptTask, compare_models, load_examples

    optimize(suite).assert_outcomes(passed=1)
    examples = load_examples(suite.path / "sports.jsonl")
    fake_llm.learn(examples)
    fake_llm.by_model["fake/weak"] = lambda messages: "no"
    task = PromptTask(
        name="sports", examples=examples, scorer="fake/scorer", metric="choice", settings={"max_steps": 2}
    )
    found = compare_models(task, suite.path / "__opro__" / "sports.yaml", ["fake/weak", "fake/scorer"], cache=None)
    assert [type(c) for c in found] == [ModelComparison, ModelComparison]
    weak, same = found
    assert weak.significant_drop and weak.flipped and weak.recorded_model == "fake/scorer"
    assert not same.failed and same.delta == 0.0
    assert "fake/scorer -> fake/weak:" in weak.describe()
    assert yaml.safe_load(yaml.safe_dump(weak.to_dict()))["failed"] is True
