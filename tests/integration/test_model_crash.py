"""A native crash of the embedded model (segfault, abort, illegal instruction inside llama.cpp) fails
the prompt tests that use it with a clear message, and the pytest session goes on: other tests run
and the terminal summary, the report and the junit XML are written.

The crash is real: the model's process raises the signal on itself before it generates, through an
environment variable only these tests set (``OPRO_LOCAL_TEST_CRASH``).
"""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET

import pytest

from pytest_opro.models.local.process import CRASH_FOR_TESTS

pytest.importorskip("llama_cpp", reason='the embedded model needs: pip install "pytest-opro[local]"')

CONFTEST = """
import pytest
from pytest_opro import ModelConfig, PromptTask
from pytest_opro.prompts.examples import examples_from_records

WORDS = "apple river garden window yellow mountain pencil silver rabbit orange guitar castle".split()


def make_task(name):
    return PromptTask(
        name=name,
        template="{{ instruction }}\\n\\n{{ input }}",
        examples=examples_from_records([{"id": w, "input": w, "target": w} for w in WORDS]),
        metric="contains",
        initial_instruction="Repeat the word.",
        counts=(4, 4, 4),
        scorer=ModelConfig("local/smollm2", params={"max_tokens": 4}),
        optimizer=ModelConfig("local/smollm2", params={"max_tokens": 16}),
        settings={"max_steps": 1, "candidates": 2, "patience": 0},
    )


@pytest.fixture
def first_task():
    return make_task("first")


@pytest.fixture
def second_task():
    return make_task("second")
"""

TESTS = """
def test_first(opro, first_task):
    opro.check(first_task)


def test_plain():
    assert 1 + 1 == 2


def test_second(opro, second_task):
    opro.check(second_task)
"""


@pytest.mark.parametrize(
    ("crash", "report_name"), [("SIGSEGV", "report.json"), ("SIGILL", "report.md"), ("SIGABRT", "report.json")]
)
def test_a_crash_of_the_model_fails_its_tests_and_the_session_goes_on(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch, crash: str, report_name: str
) -> None:
    pytester.makeconftest(CONFTEST)
    pytester.makepyfile(test_crash=TESTS)
    monkeypatch.setenv(CRASH_FOR_TESTS, crash)
    report, junit = pytester.path / report_name, pytester.path / "junit.xml"
    quiet = ["-p", "no:cacheprovider", "-p", "no:hypothesispytest", "-p", "no:benchmark", "-p", "no:randomly"]
    result = pytester.runpytest_subprocess(
        "--opro-optimize", "--opro-cache=off", f"--opro-report={report}", f"--junitxml={junit}", *quiet
    )

    result.assert_outcomes(failed=2, passed=1)
    output = result.stdout.str()
    assert "Fatal Python error" not in output
    died = f"local/smollm2: the model process died of {crash}"
    assert output.count(died) >= 2, output  # each prompt test names the model and the signal
    assert "pip install -U llama-cpp-python" in output and "use a server model" in output
    result.stdout.fnmatch_lines(["*= opro =*", "*2 failed, 1 passed*"])  # the terminal summary is written

    cases = {case.get("name"): case for case in ET.parse(junit).getroot().iter("testcase")}
    assert set(cases) == {"test_first", "test_plain", "test_second"}
    assert cases["test_plain"].find("failure") is None
    for name in ("test_first", "test_second"):
        failure = cases[name].find("failure")
        assert failure is not None and died in (failure.get("message") or "") + (failure.text or "")

    text = report.read_text(encoding="utf-8")
    if report_name.endswith(".json"):
        tasks = {task["task"]: task for task in json.loads(text)["tasks"]}
        assert set(tasks) == {"first", "second"}
        assert all(not task["ok"] and died in task["message"] for task in tasks.values()), tasks
    else:
        assert "first" in text and "second" in text and crash in text
