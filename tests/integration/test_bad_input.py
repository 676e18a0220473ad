"""Bad input: each mistake gets one line naming the file, line or setting and the fix; no traceback."""

from __future__ import annotations

import json
import re
import sqlite3
import warnings

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pytest_opro.errors import ExampleError
from pytest_opro.models.cache import ResponseCache
from pytest_opro.opro.checkpoint import Checkpoint
from pytest_opro.prompts.examples import examples_from_records
from pytest_opro.prompts.splits import split_examples
from tests.support.loop_brain import make_records, write_project
from tests.support.loopback import LoopbackServer

GOOD = "".join(json.dumps(r) + "\n" for r in make_records(20)).encode()

CONFTEST = """
import pytest
from pytest_opro import PromptTask, load_examples
from pytest_opro.models.config import ModelConfig

@pytest.fixture
def task():
    return PromptTask(name="t", examples=load_examples({path!r}), {kwargs})
"""
TEST = "def test_t(opro, task):\n    opro.check(task)\n"

ARTIFACT_KEYS = {
    "schema_version": 1,
    "task": "t",
    "instruction": "x",
    "position": "Q_begin",
    "scores": {"test": {"score": 0.5}},
    "test_outcomes": {"q000": 1.0},
    "fingerprint": {},
}

# id: (files, example file, PromptTask keyword source, pytest args, fragments of the one line)
CASES = {
    "malformed-jsonl-line": (
        {"ex.jsonl": GOOD[:200].split(b"\n")[0] + b'\n{"input": "x", target: 1}\n'},
        "ex.jsonl",
        "",
        [],
        ["ex.jsonl:2", "malformed JSON", "one complete JSON object"],
    ),
    "yaml-missing-target": (
        {"ex.yaml": b"- input: a\n  target: b\n- input: c\n"},
        "ex.yaml",
        "",
        [],
        ["ex.yaml:3", "no 'target'", "add a 'target' field"],
    ),
    "csv-missing-target-column": (
        {"ex.csv": b"input,answer\na,b\n"},
        "ex.csv",
        "",
        [],
        ["ex.csv:1", "no 'target' column", "columns: input, answer"],
    ),
    "csv-empty-target": (
        {"ex.csv": b"input,target\na,b\nc,\n"},
        "ex.csv",
        "",
        [],
        ["ex.csv:3", "no 'target'", "fill the 'target' column"],
    ),
    "duplicate-ids": (
        {"ex.jsonl": b'{"id": 7, "input": "a", "target": "b"}\n{"id": "7", "input": "c", "target": "d"}\n'},
        "ex.jsonl",
        "",
        [],
        ["ex.jsonl:2", "duplicate id '7'", "first at ex.jsonl:1", "unique 'id'"],
    ),
    "empty-example-set": (
        {"ex.jsonl": b"\n\n"},
        "ex.jsonl",
        "",
        [],
        ["ex.jsonl", "holds no examples", "add at least one"],
    ),
    "non-utf8-file": (
        {"ex.jsonl": b'{"input": "caf\xe9", "target": "b"}\n'},
        "ex.jsonl",
        "",
        [],
        ["ex.jsonl:1", "not UTF-8", "re-save the file as UTF-8"],
    ),
    "split-left-empty": (
        {"ex.jsonl": GOOD},
        "ex.jsonl",
        "fractions=(0.5, 0.0001, 0.4999)",
        [],
        [
            "task 't': split 'validation' is empty",
            "validation=0.0001",
            "over 20 examples",
            "raise the validation share",
        ],
    ),
    "template-syntax-error": (
        {"ex.jsonl": GOOD},
        "ex.jsonl",
        "template='Q: {{ input '",
        [],
        ["task 't' template", "template syntax error on line 1"],
    ),
    "template-undefined-variable": (
        {"ex.jsonl": GOOD},
        "ex.jsonl",
        "template='{{ question }}'",
        [],
        ["task 't' template", "'question' is undefined", "variables available: choices, input"],
    ),
    "unknown-metric": (
        {"ex.jsonl": GOOD},
        "ex.jsonl",
        "metric='exactish'",
        [],
        ["unknown metric 'exactish'", "known metrics: choice"],
    ),
    "unknown-optimizer-setting": (
        {"ex.jsonl": GOOD},
        "ex.jsonl",
        "settings={'max_stepz': 2}",
        ["--opro-optimize"],
        ["unknown optimizer setting(s) max_stepz", "known:", "max_steps"],
    ),
    "unknown-model-string": (
        {"ex.jsonl": GOOD},
        "ex.jsonl",
        "scorer='gpt-nonsense-xyz', optimizer='gpt-nonsense-xyz'",
        ["--opro-optimize"],
        ["model gpt-nonsense-xyz: unknown provider or model string", "'openai/gpt-4o-mini'"],
    ),
    "missing-api-key": (
        {"ex.jsonl": GOOD},
        "ex.jsonl",
        "scorer=ModelConfig('openai/gpt-4o-mini', api_base='http://127.0.0.1:9/v1'), optimizer='openai/gpt-4o-mini'",
        ["--opro-optimize"],
        ["model openai/gpt-4o-mini: authentication failed", "set OPENAI_API_KEY"],
    ),
    "corrupt-artifact-yaml": (
        {"ex.jsonl": GOOD, "__opro__/t.yaml": b"instruction: [unclosed\nscores: {\n"},
        "ex.jsonl",
        "",
        [],
        ["t.yaml", "corrupt artifact", "restore it from git or regenerate it"],
    ),
    "hand-edited-artifact": (
        {"ex.jsonl": GOOD, "__opro__/t.yaml": json.dumps({**ARTIFACT_KEYS, "instruction": ["a", "list"]}).encode()},
        "ex.jsonl",
        "",
        [],
        ["t.yaml", "'instruction' must be a string", "quote it"],
    ),
    "artifact-missing-keys": (
        {"ex.jsonl": GOOD, "__opro__/t.yaml": b"task: t\ninstruction: hi\n"},
        "ex.jsonl",
        "",
        [],
        ["t.yaml", "artifact lacks schema_version", "regenerate it with pytest --opro-optimize"],
    ),
    "artifact-newer-schema": (
        {"ex.jsonl": GOOD, "__opro__/t.yaml": json.dumps({**ARTIFACT_KEYS, "schema_version": 99}).encode()},
        "ex.jsonl",
        "",
        [],
        ["t.yaml", "schema_version 99", "newer pytest-opro", "pip install -U pytest-opro"],
    ),
}


def assert_one_clear_line(result, fragments: list[str]) -> None:
    out = result.stdout.str() + "\n" + result.stderr.str()
    assert result.ret != 0, out
    assert "Traceback" not in out, out
    assert not re.search(r"\.py:\d+: in ", out), out  # no traceback entries
    assert not re.search(r"^(E|>) ", out, re.MULTILINE), out  # no source lines or "E" blocks
    lines = [line for line in out.splitlines() if all(f in line for f in fragments)]
    assert lines, f"no single line holds {fragments}:\n{out}"


@pytest.mark.parametrize("case", list(CASES))
def test_bad_input_gets_one_clear_line(pytester, monkeypatch, inline_ready, case):
    files, path, kwargs, args, fragments = CASES[case]
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    for name, data in files.items():
        target = pytester.path / name
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(data)
    pytester.makeconftest(CONFTEST.format(path=path, kwargs=kwargs))
    pytester.makepyfile(test_t=TEST)
    result = pytester.runpytest_inprocess("-p", "no:cacheprovider", *args)
    assert_one_clear_line(result, fragments)


def test_fulltrace_keeps_the_traceback_for_debugging(pytester, inline_ready):
    pytester.path.joinpath("ex.jsonl").write_bytes(b"{bad\n")
    pytester.makeconftest(CONFTEST.format(path="ex.jsonl", kwargs=""))
    pytester.makepyfile(test_t=TEST)
    result = pytester.runpytest_inprocess("-p", "no:cacheprovider", "--fulltrace")
    assert "raise ExampleError" in result.stdout.str()


def test_bad_settings_name_the_option(pytester, inline_ready):
    pytester.makeini("[pytest]\nopro_tolerance = 300\n")
    pytester.makepyfile(test_t="def test_t():\n    pass\n")
    result = pytester.runpytest_inprocess("-p", "no:cacheprovider")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    assert "ini opro_tolerance='300' must be between 0 and 100" in result.stderr.str()
    result = pytester.runpytest_inprocess("-p", "no:cacheprovider", "--opro-steps=many")
    assert "--opro-steps='many' is not a valid n" in result.stderr.str()
    assert "Traceback" not in result.stdout.str() + result.stderr.str()


def test_optimize_without_a_prompt_task_says_so(pytester, inline_ready):
    pytester.makepyfile(test_t="def test_plain():\n    pass\n")
    result = pytester.runpytest_inprocess("-p", "no:cacheprovider", "--opro-optimize")
    assert result.ret == pytest.ExitCode.NO_TESTS_COLLECTED
    assert "no prompt task was selected" in result.stdout.str()


# -- corrupt state files: rebuilt or bypassed with a warning ---------------------------------------
def test_corrupt_cache_is_rebuilt_with_a_warning(pytester, monkeypatch, inline_ready):
    project = pytester.path / "proj"
    brain = write_project(project, settings={"max_steps": 1, "candidates": 1, "patience": 0})
    cache = project / ".opro_cache"
    cache.mkdir()
    (cache / "responses.sqlite3").write_bytes(b"this is not a database" * 100)
    with LoopbackServer(answer=brain) as server:
        monkeypatch.setenv("OPRO_LOOP_URL", server.url)
        result = pytester.runpytest_inprocess(
            str(project), "--rootdir", str(project), "-p", "no:cacheprovider", "--opro-optimize"
        )
    out = result.stdout.str()
    assert result.ret == 0, out
    assert "is corrupt" in out and "moved to responses.sqlite3.corrupt, starting empty" in out
    assert (cache / "responses.sqlite3.corrupt").exists()
    conn = sqlite3.connect(str(cache / "responses.sqlite3"))
    try:
        assert conn.execute("SELECT count(*) FROM responses").fetchone()[0] == server.requests > 0
    finally:
        conn.close()


def test_corrupt_cache_in_read_only_mode_is_bypassed(tmp_path):
    (tmp_path / "responses.sqlite3").write_bytes(b"garbage" * 1000)
    cache = ResponseCache(tmp_path, mode="ro")
    with pytest.warns(RuntimeWarning, match="corrupt.*running without it"):
        assert cache.get("k") is None
    cache.put("k", {"text": "x"})
    assert (tmp_path / "responses.sqlite3").read_bytes() == b"garbage" * 1000


def test_corrupt_checkpoint_is_ignored_with_a_warning(tmp_path):
    path = tmp_path / "t.json"
    path.write_text('{"version": 1, "key": "k", "state": {"step": ', encoding="utf-8")
    with pytest.warns(UserWarning, match="ignoring unreadable checkpoint"):
        assert Checkpoint(path, "k").load() is None
    path.write_text(json.dumps({"version": 1, "key": "another run", "state": {"step": 3}}), encoding="utf-8")
    with warnings.catch_warnings():
        warnings.filterwarnings("error", "pytest-opro: ignoring unreadable checkpoint", UserWarning)
        assert Checkpoint(path, "k").load() is None  # another run's checkpoint is not mixed in, silently


# -- splits: property-based --------------------------------------------------------------------
fractions = (
    st.tuples(st.floats(0, 1), st.floats(0, 1))
    .filter(lambda t: t[0] + t[1] <= 1)
    .map(lambda t: (t[0], t[1], max(0.0, 1 - t[0] - t[1])))
)


@settings(max_examples=150, deadline=None)
@given(n=st.integers(1, 40), fr=fractions, seed=st.integers(0, 5))
def test_splits_partition_or_name_the_empty_split(n, fr, seed):
    examples = examples_from_records([{"id": f"e{i}", "input": f"x{i}", "target": "y"} for i in range(n)])
    try:
        splits = split_examples(examples, seed=seed, fractions=fr)
    except ExampleError as exc:
        message = str(exc)
        assert re.match(r"split '(train|validation|test)' is empty \(fractions ", message), message
        assert f"over {n} examples" in message and "\n" not in message
        return
    parts = splits.train + splits.validation + splits.test
    assert sorted(e.id for e in parts) == sorted(e.id for e in examples)  # a partition
    for share, part in zip(fr, (splits.train, splits.validation, splits.test)):
        assert part or share == 0
    # stable: adding an example never moves the others
    more = examples + examples_from_records([{"id": "extra", "input": "new", "target": "y"}])
    try:
        bigger = split_examples(more, seed=seed, fractions=fr)
    except ExampleError:
        return
    for name in ("train", "validation", "test"):
        assert {e.id for e in splits.get(name)} <= {e.id for e in bigger.get(name)}
