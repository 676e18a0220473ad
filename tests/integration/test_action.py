"""The GitHub Action (``action.yml``, ``action/opro_action.py``), run here as a runner would run it.

``run_action`` plays the composite action's ``run:`` steps in order with the runner's files and
variables (``GITHUB_OUTPUT``, ``GITHUB_STEP_SUMMARY``, ``GITHUB_EVENT_PATH``, ...), skipping the
``uses:`` steps (actions/cache, actions/upload-artifact; the upload's ``artifact-url`` output is
:data:`ARTIFACT_URL`). A fake ``gh`` first on PATH records every
call (arguments and standard input) and answers from a small JSON state: the pull request's
comments and the open pull requests. The prompt suite is ``.github/action-selftest`` (the scripted
fake provider, so every run is known in advance): its committed instruction scores 83.3% on 30 test
examples; swapping one of the keywords the fake scorer rewards makes the gate fail.
"""

from __future__ import annotations

import importlib.util
import json
import os
import re
import shutil
import subprocess
import sys
import textwrap
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import yaml

import pytest_opro
from pytest_opro.reporting.markdown import COMMENT_LIMIT, comment_from_report, markdown_from_report

REPO = Path(__file__).resolve().parents[2]
ACTION = REPO / "action.yml"
SCRIPT = REPO / "action" / "opro_action.py"
SELFTEST = REPO / ".github" / "action-selftest"
KEYWORDS = "step by step|carefully|double-check|think|be precise"
BROKEN = KEYWORDS.replace("think", "zebra")  # the provider changed: "think" no longer helps
REPO_NAME = "octo/prompts"
SHA = "0123456789abcdef0123456789abcdef01234567"
RUN_URL = "https://github.example/octo/prompts/actions/runs/4242"
MARKER = "<!-- pytest-opro report=opro-report -->"
ARTIFACT_URL = RUN_URL + "/artifacts/987"
#: What the skipped ``uses:`` steps would output (actions/upload-artifact's link to the artifact).
USES_OUTPUTS = {"upload": {"artifact-url": ARTIFACT_URL}}
#: The line the job summary, the comment and the pull request get when the HTML report was written.
HTML_LINE = (
    f"Every example's outputs side by side: `report.html` in the [artifact opro-report]({ARTIFACT_URL}) "
    "(one self-contained page; unzip and open it)."
)

FAKE_GH = '''#!{python}
"""A fake gh: records each call to $FAKE_GH_LOG, answers `gh api` from the JSON state $FAKE_GH_STATE."""
import json, os, re, sys

args = sys.argv[1:]
stdin = sys.stdin.read() if "--input" in args else ""
with open(os.environ["FAKE_GH_LOG"], "a", encoding="utf-8") as log:
    log.write(json.dumps({{"args": args, "stdin": stdin, "token": os.environ.get("GH_TOKEN", "")}}) + "\\n")
state_path = os.environ["FAKE_GH_STATE"]
state = json.load(open(state_path, encoding="utf-8"))
method, rest, skip = "GET", [], False
for i, a in enumerate(args[1:], 1):
    if skip:
        skip = False
    elif a in ("--method", "-X"):
        method, skip = args[i + 1], True
    elif a in ("-H", "--header", "--input"):
        skip = True
    elif not a.startswith("-"):
        rest.append(a)
assert args[0] == "api" and len(rest) == 1, args
path, _, query = rest[0].partition("?")
server = "https://github.example"

def fail(status, message):
    print(json.dumps({{"message": message, "status": str(status)}}))
    print(f"gh: {{message}} (HTTP {{status}})", file=sys.stderr)
    sys.exit(1)

if method != "GET" and os.environ.get("FAKE_GH_READONLY"):
    fail(403, "Resource not accessible by integration")
body = json.loads(stdin) if stdin else {{}}
m = re.fullmatch(r"repos/([^/]+/[^/]+)/issues/(\\d+)/comments", path)
c = re.fullmatch(r"repos/([^/]+/[^/]+)/issues/comments/(\\d+)", path)
p = re.fullmatch(r"repos/([^/]+/[^/]+)/pulls(?:/(\\d+))?", path)
if m and method == "GET":
    out = [x for x in state["comments"] if x["issue"] == int(m.group(2))]
elif m and method == "POST":
    state["next_id"] += 1
    out = {{"id": state["next_id"], "issue": int(m.group(2)), "body": body["body"],
            "user": {{"login": "github-actions[bot]"}},
            "html_url": f"{{server}}/{{m.group(1)}}/pull/{{m.group(2)}}#issuecomment-{{state['next_id']}}"}}
    state["comments"].append(out)
elif c and method == "PATCH":
    [out] = [x for x in state["comments"] if x["id"] == int(c.group(2))] or fail(404, "Not Found")
    out["body"] = body["body"]
elif p and method == "GET" and not p.group(2):
    head = dict(kv.split("=", 1) for kv in query.split("&")).get("head", "")
    out = [x for x in state["pulls"] if x["state"] == "open" and f"octo:{{x['head']}}" == head]
elif p and method == "POST":
    number = 100 + len(state["pulls"])
    out = {{**body, "number": number, "state": "open", "html_url": f"{{server}}/{{p.group(1)}}/pull/{{number}}"}}
    state["pulls"].append(out)
elif p and method == "PATCH":
    [out] = [x for x in state["pulls"] if x["number"] == int(p.group(2))] or fail(404, "Not Found")
    out.update(body)
else:
    fail(404, "Not Found")
json.dump(state, open(state_path, "w", encoding="utf-8"))
print(json.dumps(out))
'''


# -- a local runner for the composite action ------------------------------------------------------


@dataclass
class Run:
    returncode: int
    outputs: dict[str, str]
    summary: str
    log: str
    steps: list[tuple[str, int | None]] = field(default_factory=list)  # (name, exit status or None if skipped)
    step_outputs: dict[str, dict[str, str]] = field(default_factory=dict)


class Runner:
    """A runner's machine: a workspace, the runner's folders, a fake gh and its state."""

    def __init__(self, root: Path, workspace: Path) -> None:
        self.root, self.workspace = root, workspace
        self.bin = root / "bin"
        self.bin.mkdir(parents=True, exist_ok=True)
        gh = self.bin / "gh"
        gh.write_text(FAKE_GH.format(python=sys.executable), encoding="utf-8")
        for name in ("python3", "python"):  # the runner's own Python, as on GitHub's images
            (self.bin / name).write_text(f'#!/bin/sh\nexec "{sys.executable}" "$@"\n', encoding="utf-8")
        for exe in self.bin.iterdir():
            exe.chmod(0o755)
        self.gh_log = root / "gh-calls.jsonl"
        self.gh_state = root / "gh-state.json"
        self.gh_state.write_text(
            json.dumps(
                {
                    "next_id": 500,
                    "pulls": [],
                    "comments": [
                        {"id": 7, "issue": 12, "body": "Looks good to me", "user": {"login": "reviewer"}},
                        {
                            "id": 8,
                            "issue": 12,
                            "body": "<!-- pytest-opro report=other -->\nanother use of the action",
                            "user": {"login": "github-actions[bot]"},
                        },
                    ],
                }
            ),
            encoding="utf-8",
        )
        self.runs = 0

    def gh_calls(self) -> list[dict[str, Any]]:
        if not self.gh_log.exists():
            return []
        return [json.loads(line) for line in self.gh_log.read_text(encoding="utf-8").splitlines()]

    def state(self) -> dict[str, Any]:
        return json.loads(self.gh_state.read_text(encoding="utf-8"))

    def event(self, *, fork: bool = False, number: int = 12) -> dict[str, Any]:
        head = "someone/prompts" if fork else REPO_NAME
        return {
            "number": number,
            "pull_request": {
                "number": number,
                "head": {"sha": SHA, "repo": {"full_name": head}},
                "base": {"repo": {"full_name": REPO_NAME}},
            },
        }

    def run(
        self,
        inputs: dict[str, str],
        *,
        event: dict[str, Any] | None = None,
        event_name: str = "pull_request",
        extra_env: dict[str, str] | None = None,
        only: str | None = None,
        after: Run | None = None,
    ) -> Run:
        """Play action.yml's steps with these inputs, as the runner does for `uses: ./`; or only the step
        with id `only`, with the step outputs of an earlier run `after` (its reports, without running pytest again)."""
        self.runs += 1
        here = self.root / f"run{self.runs}"
        temp = here / "temp"
        temp.mkdir(parents=True)
        event_path = here / "event.json"
        event_path.write_text(json.dumps(event if event is not None else self.event()), encoding="utf-8")
        summary = here / "summary.md"
        summary.touch()
        action = yaml.safe_load(ACTION.read_text(encoding="utf-8"))
        declared = action["inputs"]
        assert set(inputs) <= set(declared), set(inputs) - set(declared)
        values = {name: str(spec.get("default", "")) for name, spec in declared.items()} | inputs
        outputs: dict[str, dict[str, str]] = dict(after.step_outputs) if after else {}
        context = {"github.action_path": str(REPO), "github.token": "ghs_faketoken", "runner.temp": str(temp)}

        def resolve(text: str) -> str:
            def one(match: re.Match[str]) -> str:
                expr = match.group(1)
                if expr.startswith("inputs."):
                    return resolve(values[expr.removeprefix("inputs.")])
                if expr.startswith("steps."):
                    step_id, _, name = expr.removeprefix("steps.").partition(".outputs.")
                    return outputs.get(step_id, {}).get(name, "")
                return context[expr]

            return re.sub(r"\$\{\{\s*(.+?)\s*\}\}", one, str(text))

        base = {
            k: v for k, v in os.environ.items() if not k.startswith(("GITHUB_", "RUNNER_", "INPUT_", "GH_", "OPRO_"))
        }
        base.update(
            {
                "PATH": f"{self.bin}{os.pathsep}{os.environ['PATH']}",
                "PYTHONPATH": str(REPO),  # tests.support.fake_provider, and this checkout's pytest_opro
                "CI": "true",
                "GITHUB_ACTIONS": "true",
                "GITHUB_ACTION_PATH": str(REPO),
                "GITHUB_WORKSPACE": str(self.workspace),
                "GITHUB_REPOSITORY": REPO_NAME,
                "GITHUB_SERVER_URL": "https://github.example",
                "GITHUB_RUN_ID": "4242",
                "GITHUB_SHA": SHA,
                "GITHUB_EVENT_NAME": event_name,
                "GITHUB_EVENT_PATH": str(event_path),
                "GITHUB_REF_NAME": "main",
                "GITHUB_STEP_SUMMARY": str(summary),
                "GITHUB_PATH": str(here / "path"),
                "GITHUB_ENV": str(here / "env"),
                "RUNNER_TEMP": str(temp),
                "RUNNER_TOOL_CACHE": str(self.root / "toolcache"),
                "FAKE_GH_LOG": str(self.gh_log),
                "FAKE_GH_STATE": str(self.gh_state),
                "OPRO_FAKE_KEYWORDS": KEYWORDS,
            }
        )
        base.update(extra_env or {})
        failed, log, done = False, [], []
        for index, step in enumerate(action["runs"]["steps"]):
            name = step.get("name", f"step {index}")
            if "uses" in step or (only and step.get("id") != only):
                if "uses" in step and step.get("id") in USES_OUTPUTS:
                    outputs[step["id"]] = USES_OUTPUTS[step["id"]]
                done.append((name, None))
                continue
            condition = step.get("if")
            assert condition in (None, "${{ !cancelled() }}"), f"the local runner cannot evaluate: {condition}"
            if condition is None and failed:
                done.append((name, None))
                continue
            out_file = here / f"output-{index}"
            out_file.touch()
            step_env = (
                base | {k: resolve(v) for k, v in (step.get("env") or {}).items()} | {"GITHUB_OUTPUT": str(out_file)}
            )
            proc = subprocess.run(
                ["bash", "--noprofile", "--norc", "-eo", "pipefail", "-c", step["run"]],
                cwd=self.workspace,
                env=step_env,
                capture_output=True,
                text=True,
                timeout=600,
            )
            log.append(f"--- {name} (exit {proc.returncode})\n{proc.stdout}{proc.stderr}")
            if step.get("id"):
                outputs[step["id"]] = parse_outputs(out_file.read_text(encoding="utf-8"))
            failed |= proc.returncode != 0
            done.append((name, proc.returncode))
        result = {name: resolve(spec["value"]) for name, spec in action["outputs"].items()}
        return Run(1 if failed else 0, result, summary.read_text(encoding="utf-8"), "\n".join(log), done, outputs)


def parse_outputs(text: str) -> dict[str, str]:
    """$GITHUB_OUTPUT's two forms: name=value and name<<DELIMITER ... DELIMITER."""
    found: dict[str, str] = {}
    lines = iter(text.splitlines())
    for line in lines:
        if "<<" in line and ("=" not in line or line.index("<<") < line.index("=")):
            name, delimiter = line.split("<<", 1)
            body = []
            for inner in lines:
                if inner == delimiter:
                    break
                body.append(inner)
            found[name] = "\n".join(body)
        elif "=" in line:
            name, value = line.split("=", 1)
            found[name] = value
    return found


def make_workspace(path: Path) -> Path:
    """A checkout of a project with one prompt suite (a copy of the self-test) and its artifact."""
    shutil.copytree(SELFTEST, path / "prompts", ignore=shutil.ignore_patterns("__pycache__", ".opro_cache"))
    (path / "pyproject.toml").write_text(
        '[tool.pytest.ini_options]\naddopts = "-p no:cacheprovider"\n', encoding="utf-8"
    )
    return path


@pytest.fixture
def runner(tmp_path: Path) -> Runner:
    return Runner(tmp_path / "runner", make_workspace(tmp_path / "workspace"))


def report_of(run: Run) -> dict[str, Any]:
    return json.loads(Path(run.outputs["report-json"]).read_text(encoding="utf-8"))


def comment_bodies(runner: Runner) -> dict[int, str]:
    return {c["id"]: c["body"] for c in runner.state()["comments"] if c["issue"] == 12}


def writes(calls: list[dict[str, Any]]) -> list[tuple[str, str]]:
    """(method, path) of the gh calls that were not reads."""
    found = []
    for call in calls:
        args = call["args"]
        method = args[args.index("--method") + 1]
        if method != "GET":
            found.append((method, args[3]))
    return found


GATE = {"tests": "prompts", "python-version": "", "cache": "off"}


@dataclass
class Gated:
    """Two pushes to pull request 12: the committed prompt passes, then the provider changed and it fails."""

    runner: Runner
    passed: Run
    failed: Run
    calls_after_pass: list[dict[str, Any]]
    comments_after_pass: dict[int, str]


@pytest.fixture(scope="module")
def gated(tmp_path_factory: pytest.TempPathFactory) -> Gated:
    root = tmp_path_factory.mktemp("gated")
    runner = Runner(root / "runner", make_workspace(root / "workspace"))
    passed = runner.run(GATE)
    calls, comments = runner.gh_calls(), comment_bodies(runner)
    failed = runner.run(GATE, extra_env={"OPRO_FAKE_KEYWORDS": BROKEN})
    return Gated(runner, passed, failed, calls, comments)


# -- the sticky comment ----------------------------------------------------------------------------


def test_first_run_creates_the_comment(gated: Gated) -> None:
    passed = gated.passed
    assert passed.returncode == 0, passed.log
    assert passed.outputs["verdict"] == "pass"
    report = report_of(passed)
    assert report["mode"] == "gate" and report["summary"] == report["summary"] | {"tasks": 1, "ok": 1, "not_ok": 0}
    # the job summary holds the whole markdown report, then the link to the HTML report
    assert passed.summary == markdown_from_report(report) + f"\n{HTML_LINE}\n"
    assert (Path(passed.outputs["report-json"]).parent / "report.html").exists()
    calls = gated.calls_after_pass
    assert [c["args"][:4] for c in calls] == [
        ["api", "--method", "GET", f"repos/{REPO_NAME}/issues/12/comments?per_page=100"],
        ["api", "--method", "POST", f"repos/{REPO_NAME}/issues/12/comments"],
    ]
    assert "--paginate" in calls[0]["args"] and calls[1]["args"][-2:] == ["--input", "-"]
    assert {c["token"] for c in calls} == {"ghs_faketoken"}
    created = json.loads(calls[1]["stdin"])["body"]
    assert created == MARKER + "\n" + with_html_line(
        comment_from_report(report, run_url=RUN_URL, commit=SHA, artifact="opro-report")
    )
    # the reviewer's comment and the other use of the action (another report-name) are left alone
    assert gated.comments_after_pass == {7: "Looks good to me", 8: gated.comments_after_pass[8], 501: created}
    assert passed.outputs["comment-url"] == "https://github.example/octo/prompts/pull/12#issuecomment-501"
    check_comment(created, report, passed.summary, ok=True)
    # only the publish step got the token; pytest ran without it
    action = yaml.safe_load(ACTION.read_text(encoding="utf-8"))
    assert [s["id"] for s in action["runs"]["steps"] if "GH_TOKEN" in (s.get("env") or {})] == ["publish"]


def test_failing_gate_fails_the_step_and_updates_the_same_comment(gated: Gated) -> None:
    failed = gated.failed
    assert failed.returncode == 1, failed.log
    assert failed.outputs["verdict"] == "fail"
    assert [status for name, status in failed.steps if name == "Run pytest"] == [1]
    assert "::error title=pytest-opro::the gate failed: 1 of 1 prompt tasks did not pass" in failed.log
    # the comment step still ran after the failed gate
    assert [status for name, status in failed.steps if name.startswith("Comment")] == [0]
    calls = gated.runner.gh_calls()[len(gated.calls_after_pass) :]
    assert [c["args"][:4] for c in calls] == [
        ["api", "--method", "GET", f"repos/{REPO_NAME}/issues/12/comments?per_page=100"],
        ["api", "--method", "PATCH", f"repos/{REPO_NAME}/issues/comments/501"],
    ]
    bodies = comment_bodies(gated.runner)
    assert set(bodies) == {7, 8, 501}, "one comment, updated in place"
    fail_report = report_of(failed)
    assert bodies[501] == MARKER + "\n" + with_html_line(
        comment_from_report(fail_report, run_url=RUN_URL, commit=SHA, artifact="opro-report")
    )
    assert bodies[8].endswith("another use of the action")
    check_comment(bodies[501], fail_report, failed.summary, ok=False)


def with_html_line(comment: str) -> str:
    """The comment as posted: the HTML report's line before the footer."""
    lines = comment.rstrip("\n").split("\n")
    assert lines[-1].startswith("<sub>pytest-opro ")
    return "\n".join(lines[:-1] + [HTML_LINE, ""] + lines[-1:]) + "\n"


def check_comment(body: str, report: dict[str, Any], markdown: str, *, ok: bool) -> None:
    """The comment says what the JSON and markdown reports of the same run say, and nothing more."""
    [task] = report["tasks"]
    gate = task["gate"]
    lines = body.splitlines()
    assert lines[0] == MARKER
    headline = markdown.splitlines()[0]
    assert lines[1] == headline
    assert headline == (
        "## pytest-opro: PASS, 1 prompt task gated"
        if ok
        else "## pytest-opro: FAIL, 1 of 1 prompt tasks gated did not pass"
    )
    change = f"{gate['recorded']:.1%} → {gate['now']:.1%} ({gate['delta'] * 100:+.1f} pts)"
    verdict = "**PASS** no significant change" if ok else "**FAIL** accuracy dropped"
    row = f"| yesno | {change} | {gate['p_value']:.3g} | {verdict} |"
    assert row in lines
    # the same numbers and verdict as the markdown report's summary table
    assert f"| yesno | {verdict} | {change} | {gate['p_value']:.3g} |" in markdown
    if ok:
        assert "<details>" not in body
    else:
        fence = f"```text\n{task['message']}\n```"
        assert f"<details><summary>FAIL · yesno: accuracy dropped</summary>\n\n{fence}\n\n</details>" in body
        assert f"The failed test says:\n\n{fence}" in markdown
    assert (
        f"Gated commit {SHA[:12]}, [workflow run]({RUN_URL}): full report in its job summary, JSON report and "
        "plots in its artifact opro-report."
    ) in lines
    assert lines[-1] == (
        f"<sub>pytest-opro {pytest_opro.__version__} · gate mode · gate tolerance 2 points, alpha 0.05.</sub>"
    )


def test_comment_bodies_of_the_known_runs(gated: Gated) -> None:
    """The whole comment for a passing and a failing gate of the self-test suite, as reviewers see it."""
    version = pytest_opro.__version__
    footer = (
        f"Gated commit {SHA[:12]}, [workflow run]({RUN_URL}): full report in its job summary, JSON report "
        f"and plots in its artifact opro-report.\n\n<sub>pytest-opro {version} · gate mode · gate tolerance "
        "2 points, alpha 0.05.</sub>\n"
    )
    body = (Path(gated.passed.outputs["report-json"]).parent / "comment.md").read_text(encoding="utf-8")
    assert (
        body
        == textwrap.dedent("""\
        ## pytest-opro: PASS, 1 prompt task gated

        | task | test: recorded → now | p-value | verdict |
        |---|---|---:|---|
        | yesno | 83.3% → 83.3% (+0.0 pts) | 1 | **PASS** no significant change |

        """)
        + footer
    )
    body = (Path(gated.failed.outputs["report-json"]).parent / "comment.md").read_text(encoding="utf-8")
    [task] = report_of(gated.failed)["tasks"]
    assert (
        body
        == textwrap.dedent("""\
        ## pytest-opro: FAIL, 1 of 1 prompt tasks gated did not pass

        | task | test: recorded → now | p-value | verdict |
        |---|---|---:|---|
        | yesno | 83.3% → 60.0% (-23.3 pts) | 0.00781 | **FAIL** accuracy dropped |

        <details><summary>FAIL · yesno: accuracy dropped</summary>

        ```text
        {message}
        ```

        </details>

        """).format(message=task["message"])
        + footer
    )
    assert task["message"].startswith("opro gate FAILED for task 'yesno': accuracy dropped")


def test_fork_pull_request_gets_the_job_summary_and_a_notice(runner: Runner) -> None:
    run = runner.run(GATE | {"cache": "actions"}, event=runner.event(fork=True), extra_env={"FAKE_GH_READONLY": "1"})
    assert run.returncode == 0, run.log
    assert run.outputs["verdict"] == "pass" and run.outputs["comment-url"] == ""
    assert [c["args"][2] for c in runner.gh_calls()] == ["GET", "POST"]  # tried once, refused
    assert set(comment_bodies(runner)) == {7, 8}, "no comment written"
    notice = "the token is read-only (a pull request from a fork)"
    assert f"::notice title=pytest-opro::The pull request comment was not written: {notice}" in run.log
    report = report_of(run)
    assert run.summary.startswith(markdown_from_report(report))
    assert run.summary.removeprefix(markdown_from_report(report)).startswith(
        f"\n{HTML_LINE}\n\n> [!NOTE]\n> The pull request comment was not written: {notice}."
    )
    # cache: actions keeps the answers in the workspace's .opro_cache, the folder actions/cache saves
    assert f"--opro-cache-dir={runner.workspace / '.opro_cache'}" in run.log
    assert (runner.workspace / ".opro_cache" / "responses.sqlite3").exists()


def test_no_comment_outside_pull_requests_when_off_or_without_a_token(gated: Gated, tmp_path: Path) -> None:
    runner = Runner(tmp_path / "runner", tmp_path)  # the publish step alone, after the passing gate
    push = runner.run(GATE, event={"ref": "refs/heads/main"}, event_name="push", only="publish", after=gated.passed)
    assert push.returncode == 0 and "push is not a pull request: no comment" in push.log
    off = runner.run(GATE | {"comment": "false"}, only="publish", after=gated.passed)
    assert off.returncode == 0 and "comment is off: no pull request comment" in off.log
    assert runner.gh_calls() == []
    tokenless = runner.run(GATE | {"token": ""}, only="publish", after=gated.passed)
    assert tokenless.returncode == 0 and runner.gh_calls() == []
    assert "The pull request comment was not written: no token (the token input is empty)" in tokenless.summary


def test_a_run_without_a_task_still_updates_the_comment(runner: Runner) -> None:
    """pytest stops before any task ran (here: no such path): the sticky comment must not keep saying PASS."""
    run = runner.run(GATE | {"tests": "no/such/dir"})
    assert run.returncode == 1 and run.outputs["verdict"] == "fail"
    caution = "> [!CAUTION]\n> FAIL: pytest exited with status 4 (pytest stopped on a usage error); the log"
    assert run.summary.startswith(caution)
    [body] = [json.loads(c["stdin"])["body"] for c in runner.gh_calls() if c["stdin"]]
    assert body.startswith(f"{MARKER}\n{caution}") and RUN_URL in body
    assert "## pytest-opro: no prompt task ran (gate mode)" in body


def test_model_comparisons_reach_the_comment(runner: Runner) -> None:
    """`args: --opro-compare-model ...` compares the committed prompt on another model; the comment shows it."""
    run = runner.run(GATE | {"args": "--opro-compare-model fake/other"})
    assert run.returncode == 0, run.log
    [comparison] = report_of(run)["tasks"][0]["comparisons"]
    assert (comparison["recorded_model"], comparison["model"]) == ("fake/scorer", "fake/other")
    assert comparison["verdict"] == "pass" and comparison["error"] is None and comparison["n"] == 30
    [body] = [json.loads(c["stdin"])["body"] for c in runner.gh_calls() if c["stdin"]]
    assert "### Model comparison" in body and "| yesno | fake/scorer → fake/other | 83.3% → 83.3% |" in body
    assert "### Model comparison" in run.summary


# -- optimize mode ---------------------------------------------------------------------------------


def git(cwd: Path, *args: str) -> str:
    return subprocess.run(["git", *args], cwd=cwd, check=True, capture_output=True, text=True).stdout


def test_optimize_mode_pushes_a_branch_and_opens_then_updates_a_pull_request(runner: Runner, tmp_path: Path) -> None:
    ws = runner.workspace
    (ws / "prompts" / "__opro__" / "yesno.yaml").unlink()  # not optimised yet
    remote = tmp_path / "server" / REPO_NAME
    git(tmp_path, "init", "--quiet", "--bare", str(remote) + ".git")
    git(ws, "init", "--quiet", "-b", "main")
    git(ws, "add", ".")
    git(ws, "-c", "user.name=t", "-c", "user.email=t@e.x", "commit", "--quiet", "-m", "start")
    server = {"GITHUB_SERVER_URL": (tmp_path / "server").as_uri()}
    inputs = GATE | {"mode": "optimize", "args": "--opro-steps=3"}  # one step is enough here

    first = runner.run(inputs, event={}, event_name="schedule", extra_env=server)
    assert first.returncode == 0 and first.outputs["verdict"] == "pass", first.log
    assert report_of(first)["mode"] == "optimize"
    pushed = git(remote.with_suffix(".git"), "show", "--stat", "--format=%an %s", "opro/optimize")
    assert "github-actions[bot] Update optimised prompts (pytest --opro-optimize)" in pushed
    assert "prompts/__opro__/yesno.yaml" in pushed
    assert writes(runner.gh_calls()) == [("POST", f"repos/{REPO_NAME}/pulls")]
    [pull] = runner.state()["pulls"]
    assert (pull["head"], pull["base"], pull["title"]) == ("opro/optimize", "main", "Update optimised prompts")
    assert pull["body"].startswith("## pytest-opro: PASS, 1 prompt task optimised\n")
    assert pull["body"].endswith(
        f"Plots and the JSON report: artifact 'opro-report' of "
        f"{server['GITHUB_SERVER_URL']}/octo/prompts/actions/runs/4242\n\n{HTML_LINE}\n"
    )
    assert first.outputs["pull-request-url"] == "https://github.example/octo/prompts/pull/100"
    # the inputs "cache: off" and "args" reach pytest
    assert "--opro-optimize --opro-cache=off --opro-steps=3" in first.log

    # the next week another instruction wins (the artifact changed again): the same pull request is updated
    artifact = ws / "prompts" / "__opro__" / "yesno.yaml"
    artifact.write_text(artifact.read_text(encoding="utf-8") + "# changed\n", encoding="utf-8")
    second = runner.run(inputs, event={}, event_name="schedule", extra_env=server, only="publish", after=first)
    assert second.returncode == 0, second.log
    assert git(remote.with_suffix(".git"), "show", "opro/optimize:prompts/__opro__/yesno.yaml").endswith("# changed\n")
    assert writes(runner.gh_calls())[1:] == [("PATCH", f"repos/{REPO_NAME}/pulls/100")]
    assert len(runner.state()["pulls"]) == 1

    # nothing changed since: nothing pushed, no call
    third = runner.run(inputs, event={}, event_name="schedule", extra_env=server, only="publish", after=second)
    assert third.returncode == 0 and "no __opro__/ file changed: nothing to propose" in third.log
    assert len(writes(runner.gh_calls())) == 2


# -- setup and inputs ----------------------------------------------------------------------------


def load_script() -> Any:
    spec = importlib.util.spec_from_file_location("opro_action", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    assert spec.loader is not None
    spec.loader.exec_module(module)
    return module


def test_cache_input_becomes_pytest_options(tmp_path: Path) -> None:
    action = load_script()
    ws = tmp_path
    assert action.cache_args("actions", "gate", ws) == [f"--opro-cache-dir={ws / '.opro_cache'}"]
    assert action.cache_args("actions", "optimize", ws) == [f"--opro-cache-dir={ws / '.opro_cache'}", "--opro-cache=ro"]
    assert action.cache_args("off", "gate", ws) == ["--opro-cache=off"]
    assert action.cache_args("rediss://:pw@cache.example:6380/0", "gate", ws) == [
        "--opro-cache-url=rediss://:pw@cache.example:6380/0"
    ]
    assert action.cache_args("redis://cache:6379", "optimize", ws) == [
        "--opro-cache-url=redis://cache:6379",
        "--opro-cache=ro",
    ]
    with pytest.raises(action.ActionError, match="cache must be actions, off, or a redis"):
        action.cache_args("http://cache", "gate", ws)
    assert action._shown(["pytest", "--opro-cache-url=redis://:secret@h"]) == "pytest '--opro-cache-url=***'"


def test_setup_makes_a_venv_from_the_tool_cache(runner: Runner) -> None:
    version = "%d.%d.%d" % sys.version_info[:3]
    exe = runner.root / "toolcache" / "Python" / version / "x64" / "bin" / "python3"
    exe.parent.mkdir(parents=True)
    exe.write_text(f'#!/bin/sh\nexec "{sys.executable}" "$@"\n', encoding="utf-8")
    exe.chmod(0o755)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("GITHUB_", "RUNNER_", "INPUT_"))}
    env |= {
        "RUNNER_TOOL_CACHE": str(runner.root / "toolcache"),
        "RUNNER_TEMP": str(runner.root / "temp"),
        "GITHUB_OUTPUT": str(runner.root / "out"),
        "GITHUB_PATH": str(runner.root / "path"),
        "INPUT_PYTHON_VERSION": "%d.%d" % sys.version_info[:2],
        "INPUT_REPORT_NAME": "my report",
    }
    proc = subprocess.run([sys.executable, str(SCRIPT), "setup"], env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    outputs = parse_outputs((runner.root / "out").read_text(encoding="utf-8"))
    venv = runner.root / "temp" / "pytest-opro" / f"venv-{version}"
    assert outputs == {
        "python": str(venv / "bin" / "python"),
        "report-dir": str(runner.root / "temp" / "pytest-opro" / "my-report"),
    }
    assert (runner.root / "path").read_text(encoding="utf-8") == f"{venv / 'bin'}\n"
    assert subprocess.run(
        [outputs["python"], "-c", "import sys; print(sys.prefix)"], capture_output=True, text=True
    ).stdout.strip() == str(venv)

    env["INPUT_PYTHON_VERSION"] = "2.7"
    proc = subprocess.run([sys.executable, str(SCRIPT), "setup"], env=env, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 1
    assert "::error title=pytest-opro::Python 2.7 is not on this runner" in proc.stdout


# -- the comment renderer on its own ---------------------------------------------------------------


def synthetic_report(tasks: int, failing: int, message: str = "boom") -> dict[str, Any]:
    def entry(i: int) -> dict[str, Any]:
        ok = i >= failing
        gate = {
            "verdict": "pass" if ok else "regression",
            "recorded": 0.8,
            "now": 0.8 if ok else 0.5,
            "delta": 0.0 if ok else -0.3,
            "p_value": 1.0 if ok else 0.001,
        }
        return {
            "task": f"t{i}",
            "ok": ok,
            "status": "passed" if ok else "failed",
            "mode": "gate",
            "gate": gate,
            "message": "" if ok else message,
            "scores": {"baseline": {}, "winner": {}},
        }

    return {
        "mode": "gate",
        "plugin_version": "9",
        "settings": {"tolerance": 0.02, "alpha": 0.05},
        "summary": {"tasks": tasks, "ok": tasks - failing, "not_ok": failing},
        "tasks": [entry(i) for i in range(tasks)],
    }


def test_comment_stays_under_githubs_limit() -> None:
    body = comment_from_report(synthetic_report(400, 300, message="x" * 9000), run_url=RUN_URL)
    assert len(body) < COMMENT_LIMIT + 2000 < 65_536
    assert "more failures: their messages are in the job summary." in body
    # past 100 tasks only those that did not pass are listed
    assert "300 more tasks are listed in the job summary only." in body
    assert "| t0 |" in body and "| t99 |" in body and "| t100 |" not in body
    assert "x" * 3999 + "…" in body and "x" * 4001 not in body
    calm = comment_from_report(synthetic_report(150, 0))
    assert "| task |" not in calm and "\n150 tasks are listed in the job summary only.\n" in calm


def test_comment_escapes_task_names_and_fences_messages() -> None:
    report = synthetic_report(1, 1, message="```\n</details><img src=x>")
    report["tasks"][0]["task"] = "<b>t</b> | x"
    body = comment_from_report(report)
    assert "<summary>FAIL · &lt;b&gt;t&lt;/b&gt; | x: accuracy dropped</summary>" in body
    assert "| \\<b\\>t\\</b\\> \\| x |" in body
    assert "````text\n```\n</details><img src=x>\n````" in body
    assert "workflow run" not in body  # no run URL given: no link


def test_comment_command(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from pytest_opro.reporting.cli import main
    from pytest_opro.reporting.json_report import REPORT_SCHEMA, REPORT_SCHEMA_VERSION

    report = synthetic_report(2, 1) | {"schema": REPORT_SCHEMA, "schema_version": REPORT_SCHEMA_VERSION}
    path = tmp_path / "report.json"
    path.write_text(json.dumps(report), encoding="utf-8")
    assert main(["comment", str(path), "--run-url", RUN_URL, "--commit", SHA, "--artifact", "opro-report"]) == 0
    out = capsys.readouterr().out
    assert out == comment_from_report(report, run_url=RUN_URL, commit=SHA, artifact="opro-report")
    assert out.startswith("## pytest-opro: FAIL, 1 of 2 prompt tasks gated did not pass\n")
    assert main(["comment", str(path), str(tmp_path / "c.md")]) == 0
    assert (tmp_path / "c.md").read_text(encoding="utf-8") == comment_from_report(report)


# -- trust scopes of the shared Redis cache -------------------------------------------------------


def test_cache_scope_comes_from_the_event() -> None:
    from pytest_opro.models.redis_cache import check_scope

    action = load_script()
    repo = {"repository": {"default_branch": "main"}}
    pull = {**repo, "number": 42, "pull_request": {"number": 42}}
    trust = "--opro-cache-trust=main"
    assert action.scope_args("auto", "pull_request", pull, "42/merge") == ["--opro-cache-scope=pr-42", trust]
    assert action.scope_args("auto", "pull_request_target", pull, "main") == ["--opro-cache-scope=pr-42", trust]
    assert action.scope_args("auto", "push", repo, "main") == ["--opro-cache-scope=main", trust]
    assert action.scope_args("auto", "workflow_dispatch", repo, "main") == ["--opro-cache-scope=main", trust]
    assert action.scope_args("auto", "schedule", {}, "main") == ["--opro-cache-scope=main", trust]
    assert action.scope_args("auto", "push", repo, "feature/x") == ["--opro-cache-scope=branch-feature-x", trust]
    assert action.scope_args("nightly", "push", repo, "feature/x") == ["--opro-cache-scope=nightly", trust]
    assert action.scope_args("none", "push", repo, "main") == []
    released = {"repository": {"default_branch": "release/2.x"}}
    assert action.scope_args("", "push", released, "release/2.x") == [
        "--opro-cache-scope=release-2.x",
        "--opro-cache-trust=release-2.x",
    ]
    with pytest.raises(action.ActionError, match="does not name the repository's default branch"):
        action.scope_args("auto", "push", {}, "main")
    # any branch name becomes a valid scope; long ones stay apart
    names = ["../../x{y}*?", "a" * 300, "a" * 299 + "b", "ünïcode/名前", "-", "release/v1.2\n"]
    scopes = [action.scope_name(name, "branch-") for name in names]
    assert all(check_scope(scope) == scope for scope in scopes) and len(set(scopes)) == len(scopes)


def test_shared_cache_runs_are_scoped_by_event(tmp_path: Path, acl_server: Any) -> None:
    """The default branch's gate (a push, the trusted user) writes its own scope; a pull request
    (the untrusted user) then replays those answers with no provider call."""
    from pytest_opro.models.redis_cache import PASSWORD_ENV, USERNAME_ENV
    from tests.support.redis_server import TRUSTED_USER, UNTRUSTED_USER, USER_SECRETS

    runner = Runner(tmp_path / "runner", make_workspace(tmp_path / "workspace"))
    inputs = {**GATE, "cache": acl_server.url}
    repo = {"repository": {"default_branch": "main"}}

    def as_user(user: tuple[str, str]) -> dict[str, str]:
        return {USERNAME_ENV: user[0], PASSWORD_ENV: user[1]}

    def keys() -> list[str]:
        return sorted(k.decode() for k in acl_server.client().scan_iter(match="opro:resp:v1:*"))

    main = runner.run(inputs, event=repo, event_name="push", extra_env=as_user(TRUSTED_USER))
    assert main.returncode == 0, main.log
    assert "--opro-cache-scope=main --opro-cache-trust=main" in main.log
    calls = report_of(main)["summary"]["calls"]
    assert calls > 0 and len(keys()) == calls and all(k.startswith("opro:resp:v1:trusted:main:") for k in keys())

    pull = runner.run(inputs, event={**runner.event(), **repo}, extra_env=as_user(UNTRUSTED_USER))
    assert pull.returncode == 0, pull.log
    assert "--opro-cache-scope=pr-12 --opro-cache-trust=main" in pull.log
    summary = report_of(pull)["summary"]
    assert summary["calls"] == 0 and summary["cache_hits_by_scope"] == {"main": calls}
    assert f"({calls} cached: main {calls})" in pull.summary  # the job summary says where the answers came from
    for run in (main, pull):
        assert not any(secret in run.log + run.summary for secret in USER_SECRETS)
