"""The extraction example suite: its data is what its seeded script makes, and its committed artifact
passes the gate with fresh answers from the embedded model (the example is gated in CI)."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from pytest_opro.prompts.examples import load_examples
from pytest_opro.prompts.structured import JsonFields

REPO = Path(__file__).resolve().parents[2]
SUITE = REPO / "examples" / "extraction"


def _module(path: Path, name: str):
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    assert spec.loader is not None
    spec.loader.exec_module(module)
    return module


def test_data_is_what_the_seeded_script_generates() -> None:
    make_data = _module(SUITE / "make_data.py", "extraction_make_data")
    on_disk = [json.loads(line) for line in (SUITE / "extraction.jsonl").read_text(encoding="utf-8").splitlines()]
    assert on_disk == make_data.records()
    examples = load_examples(SUITE / "extraction.jsonl")
    assert len(examples) == make_data.COUNT == 40
    metric = JsonFields()
    for example in examples:  # every target is a JSON object its own metric scores 1
        assert metric.grade(example.target, example).value == 1.0


def test_artifact_records_json_validity_before_and_after() -> None:
    data = yaml.safe_load((SUITE / "__opro__" / "extraction.yaml").read_text(encoding="utf-8"))
    assert data["fingerprint"]["metric"].startswith("json_fields@1+")
    n = data["scores"]["test"]["n"]
    for scores in (data["scores"], data["baseline"]["scores"]):
        notes = scores["test"].get("notes", {})
        assert set(notes) <= {"not JSON", "JSON but not an object", "schema violation"}
        assert all(0 <= count <= n for count in notes.values())
    assert set(data["run"]["by_role"]) == {"scorer", "optimizer"}


def test_committed_artifact_passes_the_gate_with_fresh_answers(tmp_path: Path) -> None:
    pytest.importorskip("llama_cpp", reason='the embedded model needs: pip install "pytest-opro[local]"')
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")])))
    report = tmp_path / "report.json"
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            str(SUITE),
            "-p",
            "no:cacheprovider",
            "-p",
            "no:randomly",
            "-q",
            f"--opro-cache-dir={tmp_path / 'cache'}",
            f"--opro-report={report}",
        ],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-2000:]
    (task,) = json.loads(report.read_text(encoding="utf-8"))["tasks"]
    assert task["status"] == "passed" and task["gate"]["n"] == 24
    assert task["usage"]["calls"] == 24  # the cache was empty: every test answer was asked again
