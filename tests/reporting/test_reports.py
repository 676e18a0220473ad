"""Report files (``--opro-report``) and plots (``--opro-plot``) of a known run with the fake provider.

The inner suite optimises one task over 60 synthetic yes/no questions. The fake scorer answers an
example right when the prompt holds enough of five keywords; the scripted optimizer proposes
three instructions per step with a known number of keywords, so the run is known in advance:
gains at steps 1-3, none at 4 and 5, early stop after step 5 (patience 2), winner from step 3.
"""

from __future__ import annotations

import json
import re
import struct
import sys
import zlib
from pathlib import Path

import pytest
import yaml

import pytest_opro
from pytest_opro.reporting.json_report import REPORT_SCHEMA_VERSION
from pytest_opro.reporting.markdown import markdown_from_report, md_fence, md_text

#: Inner pytest runs happen in this process: pytest-opro, litellm and their lazy imports load first.
pytestmark = pytest.mark.usefixtures("inline_ready")

REPO = Path(__file__).resolve().parents[2]
KEYWORDS = "step by step|carefully|double-check|think|be precise"
WINNER = "Think step by step, carefully, and double-check."
SCRIPT = [
    # step 1: 0, 1, 2 keywords
    "<INS>Answer the question.</INS>",
    "<INS>Answer carefully.</INS>",
    "<INS>Go step by step, carefully.</INS>",
    # step 2: 1, 2, 3
    "<INS>Be precise.</INS>",
    "<INS>Think, then be precise.</INS>",
    "<INS>Think step by step, be precise.</INS>",
    # step 3: 0, 2, 4 (the winner)
    "<INS>Reply in one word.</INS>",
    "<INS>Double-check and think.</INS>",
    f"<INS>{WINNER}</INS>",
    # step 4: 1, 3, 2 (no gain)
    "<INS>Double-check.</INS>",
    "<INS>Be precise, double-check, think.</INS>",
    "<INS>Carefully double-check.</INS>",
    # step 5: 0, 3, 4 (ties the winner: no gain, so early stop with patience 2)
    "<INS>Say yes or no.</INS>",
    "<INS>Carefully, step by step, be precise.</INS>",
    "<INS>Be precise, think, double-check, step by step.</INS>",
]

CONFTEST = """
import json
import os
import sys

sys.path.insert(0, {repo!r})

import pytest
from pytest_opro import PromptTask
from pytest_opro.prompts.examples import examples_from_records
from tests.support.fake_provider import FakeBrain, install

ROWS = [
    {{"id": f"q{{i:03d}}", "input": f"Question q{{i:03d}}: is {{i * 7 + 3}} odd?",
      "target": "yes" if (i * 7 + 3) % 2 else "no", "choices": ["yes", "no"]}}
    for i in range(60)
]


@pytest.fixture
def yesno_task():
    examples = examples_from_records(ROWS, source="yesno")
    brain = FakeBrain(keywords=os.environ["OPRO_FAKE_KEYWORDS"].split("|"))
    brain.optimizer = json.loads(os.environ["OPRO_FAKE_SCRIPT"])
    install(brain).learn(examples)
    return PromptTask(name="yesno", examples=examples, metric="choice", scorer="fake/scorer",
                      optimizer="fake/optimizer",
                      settings={{"max_steps": 8, "candidates": 3, "patience": 2, "screening": "off"}})
"""

TEST_FILE = """
def test_yesno(opro, yesno_task):
    opro.check(yesno_task)
"""


@pytest.fixture
def suite(pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> pytest.Pytester:
    pytester.makeconftest(CONFTEST.format(repo=str(REPO)))
    pytester.makepyfile(test_yesno=TEST_FILE)
    monkeypatch.setenv("OPRO_FAKE_KEYWORDS", KEYWORDS)
    monkeypatch.setenv("OPRO_FAKE_SCRIPT", json.dumps(SCRIPT))
    return pytester


def run(pytester: pytest.Pytester, *args: str) -> pytest.RunResult:
    return pytester.runpytest("-p", "no:cacheprovider", "--opro-cache=off", *args)


def png_size(path: Path) -> tuple[int, int]:
    """Width and height from a PNG's IHDR chunk, after checking the signature and the chunk's CRC."""
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG signature"
    length, kind = struct.unpack(">I4s", data[8:16])
    assert kind == b"IHDR" and length == 13
    assert struct.unpack(">I", data[29:33])[0] == zlib.crc32(data[12:29])
    assert data.rstrip(b"\x00")[-8:-4] == b"IEND"
    return struct.unpack(">II", data[16:24])


def undocumented_fields(report: dict) -> set[str]:
    """Keys of the report (top level, summary, one task and its parts) that docs/report-schema.md never names."""
    doc = (REPO / "docs/report-schema.md").read_text(encoding="utf-8")
    documented = set(re.findall(r"`([a-z_]+)`", doc))
    task = report["tasks"][0]
    keys = set(report) | set(report["summary"]) | set(report["settings"]) | set(task) | set(task["usage"])
    keys |= set(task["run"] or {}) | set(task["gate"] or {}) | set(task["scores"]["winner"]["test"])
    for part in ("top_candidates", "candidates", "steps"):
        keys |= set(task[part][0]) if task[part] else set()
    return keys - documented


# -- a known optimisation run ------------------------------------------------------------------


def test_json_report_and_plot_of_known_run(suite: pytest.Pytester) -> None:
    result = run(suite, "--opro-optimize", "--opro-report=out/report.json", "--opro-plot=out/plots")
    result.assert_outcomes(passed=1)
    result.stdout.fnmatch_lines(["opro: report written to out/report.json", "opro: 1 plot written to out/plots"])
    report = json.loads(suite.path.joinpath("out/report.json").read_text(encoding="utf-8"))
    artifact = yaml.safe_load(suite.path.joinpath("__opro__/yesno.yaml").read_text(encoding="utf-8"))

    assert report["schema"] == "pytest-opro-report"
    assert report["schema_version"] == REPORT_SCHEMA_VERSION == 1
    assert report["plugin_version"] == pytest_opro.__version__
    assert report["mode"] == "optimize"
    assert report["settings"] == {"tolerance": 0.02, "alpha": 0.05}
    [task] = report["tasks"]
    assert report["summary"]["tasks"] == 1 and report["summary"]["ok"] == 1 and report["summary"]["not_ok"] == 0
    assert report["summary"]["statuses"] == {"written": 1}

    assert task["task"] == "yesno" and task["status"] == "written" and task["ok"] is True
    assert task["nodeid"] == "test_yesno.py::test_yesno"
    assert task["artifact"] == "__opro__/yesno.yaml"
    assert task["instruction"] == WINNER == artifact["instruction"]
    assert task["baseline_instruction"] == ""
    assert task["gate"] is None

    # the run as scripted: gains at steps 1-3, two steps without, early stop, winner from step 3
    run_block = task["run"]
    assert run_block["steps_run"] == 5 and run_block["best_step"] == 3
    assert run_block["early_stopped"] is True
    assert run_block["stop_reason"] == "early stop: no validation gain for 2 steps"
    assert run_block["patience"] == 2 and run_block["max_steps"] == 8
    assert (run_block["optimizer_model"], run_block["scorer_model"]) == ("fake/optimizer", "fake/scorer")
    assert [s["step"] for s in task["steps"]] == [1, 2, 3, 4, 5]
    assert len(task["candidates"]) == 1 + len(SCRIPT)
    # a step's three optimizer calls run concurrently: the script is followed step by step, in any order within one
    scripted = [re.sub(r"</?INS>", "", s) for s in SCRIPT]
    for step in range(1, 6):
        texts = sorted(c["text"] for c in task["candidates"] if c["step"] == step)
        assert texts == sorted(scripted[3 * (step - 1) : 3 * step]), step
    # validation is scored for the two best of each step by train, plus the baseline
    assert sum(c["validation"] is not None for c in task["candidates"]) == 1 + 2 * 5

    # scores match the artifact (rounded there to 4 places) and rise with the number of keywords
    for side, source in (("winner", artifact["scores"]), ("baseline", artifact["baseline"]["scores"])):
        for split in ("train", "validation", "test"):
            got = task["scores"][side][split]
            assert got["n"] == source[split]["n"]
            assert round(got["value"], 4) == source[split]["score"]
            assert got["ci_low"] <= got["value"] <= got["ci_high"]
    base, win = task["scores"]["baseline"], task["scores"]["winner"]
    assert base["validation"]["value"] < win["validation"]["value"] < 1.0
    assert base["test"]["value"] < win["test"]["value"]
    assert sum(s["n"] for s in win.values()) == 60

    top = task["top_candidates"]
    assert [c["rank"] for c in top] == [1, 2, 3, 4, 5]
    assert top[0]["text"] == WINNER and top[0]["step"] == 3
    assert top[0]["validation"] == win["validation"]["value"]
    vals = [(c["validation"] if c["validation"] is not None else -1, c["train"]) for c in top]
    assert vals == sorted(vals, reverse=True)

    usage = task["usage"]
    by_model = usage["by_model"]
    assert usage["calls"] == sum(m["calls"] for m in by_model.values()) > 0
    assert by_model["fake/optimizer"]["calls"] == len(SCRIPT)
    assert usage["cache_hits"] == 0 and usage["cost_usd"] == 0 and usage["seconds"] > 0

    # the plot: a valid PNG of the documented size
    assert undocumented_fields(report) == set()
    doc = (REPO / "docs/report-schema.md").read_text(encoding="utf-8")
    assert f"`schema_version` is {REPORT_SCHEMA_VERSION}." in doc

    png = suite.path / "out/plots/yesno.png"
    assert png_size(png) == (960, 540)
    assert png.stat().st_size > 20_000  # drawn, not blank


def test_markdown_report_of_known_run(suite: pytest.Pytester) -> None:
    run(suite, "--opro-optimize", "--opro-report=report.md").assert_outcomes(passed=1)
    text = suite.path.joinpath("report.md").read_text(encoding="utf-8")
    artifact = yaml.safe_load(suite.path.joinpath("__opro__/yesno.yaml").read_text(encoding="utf-8"))
    base, win = artifact["baseline"]["scores"], artifact["scores"]

    assert text.startswith("## pytest-opro: PASS, 1 prompt task optimised\n")
    assert "| task | verdict | test: baseline → winner | p-value | calls | cost | time |" in text
    assert re.search(
        rf"\| yesno \| \*\*PASS\*\* optimised, artifact written \| {base['test']['score']:.1%} → "
        rf"{win['test']['score']:.1%} \| – \| \d+ \| \$0\.0000 \| \d+\.\d s \|",
        text,
    ), text
    assert "### PASS · yesno: optimised, artifact written" in text
    assert (
        f"**PASS**: the winner beat the baseline on validation ({base['validation']['score']:.1%} → "
        f"{win['validation']['score']:.1%}) and was written to `__opro__/yesno.yaml`. "
        "No gate runs under --opro-optimize; plain `pytest` gates against it from now on." in text
    )
    low, high = win["test"]["ci95"]
    assert (
        f"| test | {win['test']['n']} | {base['test']['score']:.1%} ({base['test']['ci95'][0]:.0%}–"
        f"{base['test']['ci95'][1]:.0%}) | {win['test']['score']:.1%} ({low:.0%}–{high:.0%}) |"
    ) in text
    proposals = artifact["run"]["proposals"]["opro"]
    assert re.search(
        "Optimisation: 5 steps, stopped: early stop: no validation gain for 2 steps; winner from step 3; "
        rf"{proposals} proposals \(opro {proposals}\); (racing: \d+ candidates screened out, \d+ train scorer calls "
        r"saved; )?optimizer fake/optimizer → scorer fake/scorer\.",
        text,
    ), text
    assert f"Winning instruction (`__opro__/yesno.yaml`):\n\n```text\n{WINNER}\n```" in text
    assert "<details><summary>Top 5 candidates</summary>" in text
    assert f"| 1 | 3 | {win['train']['score']:.1%} | {win['validation']['score']:.1%} | {WINNER} |" in text
    assert "The failed test says" not in text  # nothing failed


def test_markdown_and_json_of_a_failing_gate(suite: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> None:
    run(suite, "--opro-optimize").assert_outcomes(passed=1)
    recorded = yaml.safe_load(suite.path.joinpath("__opro__/yesno.yaml").read_text(encoding="utf-8"))

    passed = run(suite, "--opro-report=pass.md", "--opro-plot=plots")
    passed.assert_outcomes(passed=1)
    assert png_size(suite.path / "plots/yesno.png") == (960, 540)  # gate mode plots the artifact's history
    ok = suite.path.joinpath("pass.md").read_text(encoding="utf-8")
    assert ok.startswith("## pytest-opro: PASS, 1 prompt task gated\n")
    assert "### PASS · yesno: no significant change" in ok
    assert "**Gate: PASS** (pass)." in ok and "paired sign test p=1." in ok
    assert f"Committed instruction (`__opro__/yesno.yaml`):\n\n```text\n{WINNER}\n```" in ok
    assert "Top 5 candidates (kept in the artifact)" in ok

    # the provider changed: "think" no longer helps, so examples needing four keywords now fail
    monkeypatch.setenv("OPRO_FAKE_KEYWORDS", KEYWORDS.replace("think", "zebra"))
    failed = run(suite, "--opro-report=fail.json")
    failed.assert_outcomes(failed=1)
    report = json.loads(suite.path.joinpath("fail.json").read_text(encoding="utf-8"))
    [task] = report["tasks"]
    gate = task["gate"]
    assert task["status"] == "failed" and task["ok"] is False and report["summary"]["not_ok"] == 1
    assert gate["verdict"] == "regression" and gate["passed"] is False
    assert round(gate["recorded"], 4) == recorded["scores"]["test"]["score"]
    assert gate["n"] == recorded["scores"]["test"]["n"]
    worse = len(gate["worse_ids"])
    assert worse > 0 and gate["better_ids"] == []
    assert gate["now"] == pytest.approx(gate["recorded"] - worse / gate["n"])
    assert gate["p_value"] == pytest.approx(0.5**worse)
    assert gate["now_ci"][0] <= gate["now"] <= gate["now_ci"][1]
    assert set(gate["worse_ids"]) <= set(recorded["test_outcomes"])
    # scores in gate mode come from the committed artifact
    assert round(task["scores"]["winner"]["test"]["value"], 4) == recorded["scores"]["test"]["score"]
    assert task["top_candidates"][0]["text"] == WINNER
    assert undocumented_fields(report) == set()

    from pytest_opro.reporting.cli import main as cli

    assert cli(["plot", str(suite.path / "fail.json"), str(suite.path / "again")]) == 0
    assert png_size(suite.path / "again/yesno.png") == (960, 540)
    assert cli(["markdown", str(suite.path / "fail.json"), str(suite.path / "fail.md")]) == 0
    text = suite.path.joinpath("fail.md").read_text(encoding="utf-8")
    assert text == markdown_from_report(report)
    assert text.startswith("## pytest-opro: FAIL, 1 of 1 prompt tasks gated did not pass\n")
    assert "### FAIL · yesno: accuracy dropped" in text
    assert (
        f"**Gate: FAIL** (regression). Test score {gate['recorded']:.1%} → {gate['now']:.1%}, "
        f"{gate['delta'] * 100:+.1f} points on n={gate['n']}; {worse} right→wrong, 0 wrong→right; "
        f"paired sign test p={gate['p_value']:.3g}. Fails when p < 0.05 and the drop exceeds 2 points."
    ) in text
    now_cell = f"{gate['now']:.1%} ({gate['now_ci'][0]:.0%}–{gate['now_ci'][1]:.0%})"
    assert re.search(rf"\| test \| {gate['n']} \| [^|]+ \| [^|]+ \| {re.escape(now_cell)} \|", text), text
    # the gate's own message, as the failed test shows it, with the way out
    message = task["message"]
    assert message.startswith("opro gate FAILED for task 'yesno': accuracy dropped")
    assert "re-run: pytest --opro-optimize" in message
    assert f"The failed test says:\n\n```text\n{message}\n```" in text
    assert message in failed.stdout.str()


def test_plot_option_without_matplotlib_names_the_install(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    pytester.makepyfile(test_plain="def test_plain():\n    pass\n")
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # import machinery: "not installed"
    result = pytester.runpytest("-p", "no:cacheprovider", "--opro-plot=plots")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    assert "ERROR: --opro-plot needs matplotlib" in result.stderr.str()
    assert 'install it with: pip install "pytest-opro[plot]"' in result.stderr.str()
    assert not (pytester.path / "plots").exists()


def test_no_plot_without_history_says_so(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_plain="def test_plain():\n    pass\n")
    result = pytester.runpytest("-p", "no:cacheprovider", "--opro-plot=plots", "--opro-report=r.md")
    result.assert_outcomes(passed=1)
    result.stdout.fnmatch_lines(["opro: no plot written to plots: no task had an optimisation history"])
    assert (
        pytester.path.joinpath("r.md")
        .read_text(encoding="utf-8")
        .startswith("## pytest-opro: no prompt task ran (gate mode)")
    )


# -- untrusted text in markdown ----------------------------------------------------------------


def test_markdown_cells_cannot_inject_markup() -> None:
    hostile = "a | b ![x](http://e.x/p.png) <img src=x> `code` [link](u) **bold** &amp;\nnext line"
    cell = md_text(hostile)
    assert "\n" not in cell
    assert re.search(r"(?<!\\)[|<>`\[\]()!*]", cell) is None  # every markup character escaped
    assert "&amp;amp;" in cell
    assert md_text("x" * 300, 100) == "x" * 99 + "…"


def test_fence_outgrows_backticks_inside() -> None:
    text = "before\n```\nbreak out?\n````\nafter"
    block = md_fence(text)
    fence = block.splitlines()[0].removesuffix("text")
    assert fence == "`" * 5 and block.endswith("\n" + fence)
    assert block.count(fence) == 2


# -- a model matrix: the same gate in several jobs, each comparing other models ------------------


def _matrix_report(models: list[str], now: float = 0.9) -> dict:
    entry = {
        "task": "yesno",
        "nodeid": "test_yesno.py::test_yesno",
        "mode": "gate",
        "status": "passed",
        "ok": True,
        "instruction": "Answer carefully.",
        "gate": {
            "verdict": "pass",
            "passed": True,
            "recorded": 0.9,
            "now": now,
            "n": 30,
            "worse_ids": [],
            "better_ids": [],
        },
        "usage": {"calls": 0, "cache_hits": 30, "cost_usd": 0.0, "seconds": 0.1},
        "comparisons": [{"model": m, "recorded_model": "fake/scorer"} for m in models],
    }
    return {
        "schema": "pytest-opro-report",
        "schema_version": 1,
        "mode": "gate",
        "settings": {"tolerance": 0.02, "alpha": 0.05},
        "tasks": [entry],
    }


def test_merge_joins_the_comparisons_of_a_model_matrix() -> None:
    from pytest_opro.reporting.merge import MergeError, merge_reports

    merged = merge_reports([_matrix_report([]), _matrix_report(["fake/a"]), _matrix_report(["fake/b"])])
    [task] = merged["tasks"]
    assert [c["model"] for c in task["comparisons"]] == ["fake/a", "fake/b"]
    assert merged["summary"]["tasks"] == 1
    # the same task gated differently by two jobs is not one gate; one report twice is an overlap
    with pytest.raises(MergeError, match="is in both"):
        merge_reports([_matrix_report(["fake/a"]), _matrix_report(["fake/b"], now=0.5)])
    for twice in ([], ["fake/a"]):
        with pytest.raises(MergeError, match="is in both"):
            merge_reports([_matrix_report(twice), _matrix_report(twice)])


def test_a_graded_gate_is_described_by_the_test_that_ran() -> None:
    from pytest_opro.prompts.gate import decide
    from pytest_opro.reporting.markdown import _verdict_line

    graded = decide({"a": 1.0, "b": 0.5, "c": 1.0}, {"a": 0.5, "b": 0.25, "c": 1.0}).to_dict()
    line = _verdict_line({"gate": graded, "ok": True})
    assert "2 lower, 0 higher; paired permutation test p=" in line and "sign test" not in line
    binary = decide({"a": 1.0, "b": 1.0}, {"a": 0.0, "b": 1.0}).to_dict()
    assert "1 right→wrong, 0 wrong→right; paired sign test p=" in _verdict_line({"gate": binary, "ok": True})
