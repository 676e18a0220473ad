"""The committed artifact: writing, reading back, and the errors a hand-edited file gets."""

from __future__ import annotations

import os
import stat
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

import pytest_opro
from pytest_opro.errors import ArtifactError
from pytest_opro.prompts import artifact as art
from pytest_opro.prompts.examples import examples_from_records
from pytest_opro.prompts.optimization import optimize


def minimal(**changes: Any) -> dict[str, Any]:
    """A small valid artifact mapping."""
    data: dict[str, Any] = {
        "schema_version": art.SCHEMA_VERSION,
        "task": "sports",
        "instruction": "Think step by step.",
        "position": "Q_begin",
        "scores": {"test": {"score": 0.75, "n": 4, "ci95": [0.3, 0.95]}},
        "test_outcomes": {"a": 1.0, "b": 1.0, "c": 0.0, "d": 1.0},
        "fingerprint": {"template": "abc", "metric": "exact@1"},
    }
    data.update(changes)
    return data


def write_yaml(path: Path, data: Any) -> Path:
    path.write_text(yaml.safe_dump(data, sort_keys=False), encoding="utf-8")
    return path


def test_round_trip_of_an_optimised_result(tmp_path: Path, fake_llm: Any) -> None:
    examples = examples_from_records(
        {
            "id": f"q{i:02d}",
            "input": f"Question {i:02d}: is {i} even?",
            "target": "yes" if i % 2 == 0 else "no",
            "choices": ["yes", "no"],
        }
        for i in range(24)
    )
    fake_llm.learn(examples)
    task = pytest_opro.PromptTask(name="parity", examples=examples, metric="choice")
    result = optimize(
        task,
        scorer="fake/scorer",
        optimizer="fake/optimizer",
        settings=pytest_opro.OptimizerSettings(max_steps=1),
        cache=None,
    )
    data = art.artifact_from_result(
        result.to_dict(), pytest_opro.__version__, [c.to_dict() for c in result.top_candidates(5)]
    )
    path = art.write_artifact(tmp_path / "__opro__" / "parity.yaml", data)
    loaded = art.load_artifact(path)
    assert loaded.instruction == result.instruction
    assert loaded.fingerprint == task.fingerprint(task.scorer_config("fake/scorer"))
    test = result.scores["test"]
    assert loaded.test_score == pytest.approx(test.value, abs=1e-4)
    assert loaded.test_outcomes == test.outcomes
    assert loaded.data["scores"]["test"]["n"] == len(task.splits.test)
    assert len(loaded.data["top_candidates"]) == 5
    assert loaded.data["plugin_version"] == pytest_opro.__version__
    assert "api_key" not in path.read_text(encoding="utf-8")
    # the interval is written on one line, for short diffs
    assert "ci95: [" in path.read_text(encoding="utf-8")
    # what was read writes back to the same data
    again = art.write_artifact(tmp_path / "copy.yaml", loaded.data)
    assert yaml.safe_load(again.read_text(encoding="utf-8")) == loaded.data


def test_multiline_instruction_is_a_block(tmp_path: Path) -> None:
    text = "First, read the question.\nThen answer with one word."
    path = art.write_artifact(tmp_path / "a.yaml", minimal(instruction=text))
    raw = path.read_text(encoding="utf-8")
    assert "instruction: |-\n  First, read the question.\n  Then answer with one word.\n" in raw
    assert art.load_artifact(path).instruction == text


@settings(max_examples=300, deadline=None)
@given(st.text(st.characters(blacklist_categories=("Cs",)), max_size=80))
def test_any_instruction_reads_back_exactly(tmp_path_factory: pytest.TempPathFactory, text: str) -> None:
    path = tmp_path_factory.mktemp("rt") / "a.yaml"
    art.write_artifact(path, minimal(instruction=text, test_outcomes={text or "x": 1.0}))
    loaded = art.load_artifact(path)
    assert loaded.instruction == text
    assert list(loaded.test_outcomes) == [text or "x"]


def test_write_is_atomic(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = art.write_artifact(tmp_path / "a.yaml", minimal())
    before = path.read_text(encoding="utf-8")

    def broken_fsync(fd: int) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "fsync", broken_fsync)
    with pytest.raises(OSError, match="No space left"):
        art.write_artifact(path, minimal(instruction="something new"))
    assert path.read_text(encoding="utf-8") == before
    assert [p.name for p in tmp_path.iterdir()] == ["a.yaml"]  # no temp file left


def test_written_files_get_the_permissions_of_a_plain_write(tmp_path: Path) -> None:
    """Reports and artifacts are as readable as any file the user writes (not a temp file's 0600)."""
    old = os.umask(0o022)
    try:
        path = art.write_artifact(tmp_path / "a.yaml", minimal())
        plain = tmp_path / "plain.txt"
        plain.write_text("x", encoding="utf-8")
    finally:
        os.umask(old)
    assert stat.S_IMODE(path.stat().st_mode) == stat.S_IMODE(plain.stat().st_mode) == 0o644


def test_write_creates_the_directory(tmp_path: Path) -> None:
    path = art.write_artifact(tmp_path / "deep" / "__opro__" / "a.yaml", minimal())
    assert art.load_artifact(path).data["task"] == "sports"


def test_corrupt_yaml_names_the_line(tmp_path: Path) -> None:
    path = tmp_path / "sports.yaml"
    path.write_text(
        "schema_version: 1\ntask: sports\ninstruction: [never closed\nposition: Q_begin\n", encoding="utf-8"
    )
    with pytest.raises(ArtifactError) as info:
        art.load_artifact(path)
    message = str(info.value)
    assert message.startswith(f"{path}:4: corrupt artifact (")
    assert "pytest --opro-optimize" in message and "\n" not in message


def test_merge_conflict_is_named(tmp_path: Path) -> None:
    good = art.dump(minimal())
    text = good.replace(
        "instruction: Think step by step.\n",
        "<<<<<<< HEAD\ninstruction: Think step by step.\n=======\ninstruction: Be brief.\n>>>>>>> other\n",
    )
    line = text.splitlines().index("<<<<<<< HEAD") + 1
    path = tmp_path / "sports.yaml"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(ArtifactError, match=rf"sports\.yaml:{line}: unresolved merge conflict"):
        art.load_artifact(path)


def test_newer_schema_asks_for_an_upgrade(tmp_path: Path) -> None:
    path = write_yaml(tmp_path / "a.yaml", minimal(schema_version=art.SCHEMA_VERSION + 1, new_field={"x": 1}))
    with pytest.raises(
        ArtifactError, match=r"schema_version 2 was written by a newer pytest-opro .*pip install -U pytest-opro"
    ):
        art.load_artifact(path)


@pytest.mark.parametrize(
    "changes, message",
    [
        ({"instruction": 42}, "'instruction' must be a string; quote it"),
        ({"instruction": None}, "'instruction' must be a string"),
        ({"test_outcomes": {"a": "yes"}}, "'test_outcomes' must map example ids to scores in [0, 1]"),
        ({"test_outcomes": {"a": 2}}, "'test_outcomes' must map"),
        ({"test_outcomes": {"a": True}}, "'test_outcomes' must map"),
        ({"test_outcomes": ["a", "b"]}, "'test_outcomes' must map"),
        ({"fingerprint": "abc"}, "'fingerprint' must be a mapping"),
        ({"scores": {"test": {"score": "high"}}}, "'scores.test.score' is missing or not a number"),
        ({"scores": {"train": {"score": 1.0}}}, "'scores.test.score' is missing or not a number"),
        ({"schema_version": "one"}, "schema_version must be a positive integer"),
        ({"schema_version": True}, "schema_version must be a positive integer"),
        ({"schema_version": 0}, "schema_version must be a positive integer"),
    ],
)
def test_hand_edited_types_are_rejected(tmp_path: Path, changes: dict, message: str) -> None:
    path = write_yaml(tmp_path / "a.yaml", minimal(**changes))
    with pytest.raises(ArtifactError) as info:
        art.load_artifact(path)
    assert str(info.value).startswith(f"{path}: ")
    assert message in str(info.value)


def test_missing_keys_are_listed(tmp_path: Path) -> None:
    data = minimal()
    del data["fingerprint"], data["test_outcomes"]
    with pytest.raises(ArtifactError, match="artifact lacks test_outcomes, fingerprint; regenerate"):
        art.load_artifact(write_yaml(tmp_path / "a.yaml", data))


def test_not_a_mapping_and_not_utf8(tmp_path: Path) -> None:
    listing = tmp_path / "list.yaml"
    listing.write_text("- a\n- b\n", encoding="utf-8")
    with pytest.raises(ArtifactError, match="artifact is not a mapping"):
        art.load_artifact(listing)
    latin = tmp_path / "latin.yaml"
    latin.write_bytes("instruction: caf\xe9\n".encode("latin-1"))
    with pytest.raises(ArtifactError, match=r"not UTF-8 \(byte 16\)"):
        art.load_artifact(latin)


def test_no_code_runs_from_yaml_tags(tmp_path: Path) -> None:
    path = tmp_path / "a.yaml"
    path.write_text(art.dump(minimal()) + "evil: !!python/object/apply:os.system ['echo hi']\n", encoding="utf-8")
    with pytest.raises(ArtifactError, match="corrupt artifact"):
        art.load_artifact(path)


def test_hand_edited_instruction_and_int_scores_are_accepted(tmp_path: Path) -> None:
    path = write_yaml(tmp_path / "a.yaml", minimal(instruction="Edited by hand.", test_outcomes={1: 1, 2: 0}))
    loaded = art.load_artifact(path)
    assert loaded.instruction == "Edited by hand."
    assert loaded.test_outcomes == {"1": 1.0, "2": 0.0}


def test_load_instruction(tmp_path: Path) -> None:
    path = art.write_artifact(tmp_path / "__opro__" / "sports.yaml", minimal(instruction="Answer in one word."))
    assert pytest_opro.load_instruction(path) == "Answer in one word."
    assert pytest_opro.load_instruction(str(path)) == "Answer in one word."
    with pytest.raises(ArtifactError, match=r"missing\.yaml: no artifact; create it with: pytest --opro-optimize"):
        pytest_opro.load_instruction(tmp_path / "missing.yaml")
