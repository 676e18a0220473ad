#!/usr/bin/env python3
"""The steps of the pytest-opro GitHub Action (``action.yml`` at the repository root).

Every ``run:`` step of action.yml is one call of this script, ``python3 .../opro_action.py STEP``:

- ``setup``: the Python the action uses: a virtual environment made from the runner's tool cache
  (input ``python-version``), or the ``python3`` already on PATH when ``python-version`` is empty.
  Outputs ``python`` and ``report-dir``; later steps of the job find that Python first on PATH.
- ``install``: the ``install`` command with that Python first on PATH, then pytest-opro itself (from
  this action's own copy, with the plot extra) when the command did not install it.
- ``test``: pytest with ``--opro-report``, ``--opro-plot`` and ``--opro-html`` (``--opro-optimize`` in optimize mode),
  the markdown report to the job summary, the pull request comment to a file, and the outputs
  ``verdict`` (pass/fail) and ``report-json``. Exits 1 when the gate or the optimisation did not pass.
  It runs the project's tests, so it never gets the token.
- ``publish``: the only step with the token. Gate mode, on a pull request: create the one comment, or
  update it in place (found by a hidden marker). When the token may not write (a pull request from a
  fork) the job summary alone carries the report, with a notice. Optimize mode: commit the changed
  ``__opro__/`` files to a branch, push it and open or update its pull request. In both, the job
  summary, the comment and the pull request link to the HTML report in the uploaded artifact
  (``OPRO_ARTIFACT_URL``, the upload step's output; the upload runs before this step).

Inputs come as ``INPUT_<NAME>`` environment variables (action.yml sets them), the run's context as the
runner's ``GITHUB_*`` variables; results go to ``$GITHUB_OUTPUT`` and ``$GITHUB_STEP_SUMMARY``. All
GitHub calls go through ``gh api``. Standard library only, Python 3.8 or newer: the script runs under
the runner's own python3 before the action has set up its Python.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import tempfile
import uuid
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple

ACTION_ROOT = Path(__file__).resolve().parents[1]
REPORTING = "pytest_opro.reporting"
#: Pull request comments and bodies over 65,536 characters are refused.
BODY_LIMIT = 60_000
OPRO_GLOB = ":(glob)**/__opro__/**"
BOT_NAME = "github-actions[bot]"
BOT_EMAIL = "41898282+github-actions[bot]@users.noreply.github.com"


class ActionError(Exception):
    """A problem the user must fix: printed as an error annotation, exit status 1."""


# -- the runner's files and commands -----------------------------------------------------------------


def env(name: str, default: str = "") -> str:
    return os.environ.get(name, default)


def inp(name: str, default: str = "") -> str:
    """An action input (``INPUT_PYTHON_VERSION`` for ``python-version``), stripped."""
    return os.environ.get("INPUT_" + name.upper().replace("-", "_"), default).strip()


def _append(variable: str, text: str) -> None:
    path = env(variable)
    if path:
        with open(path, "a", encoding="utf-8") as handle:
            handle.write(text)


def set_output(name: str, value: str) -> None:
    """One step output, in the multi-line form so any value is safe."""
    delimiter = f"opro_{uuid.uuid4().hex}"
    _append("GITHUB_OUTPUT", f"{name}<<{delimiter}\n{value}\n{delimiter}\n")


def summary(text: str) -> None:
    """Append markdown to the job summary."""
    _append("GITHUB_STEP_SUMMARY", text if text.endswith("\n") else text + "\n")


def _command_text(text: str) -> str:
    return text.replace("%", "%25").replace("\r", "%0D").replace("\n", "%0A")


def annotate(kind: str, message: str) -> None:
    """A workflow command: ``notice``, ``warning`` or ``error``, shown on the run's page."""
    print(f"::{kind} title=pytest-opro::{_command_text(message)}", flush=True)


def mask(value: str) -> None:
    if value:
        print(f"::add-mask::{value}", flush=True)


def run_url() -> str:
    server, repo, run_id = env("GITHUB_SERVER_URL", "https://github.com"), env("GITHUB_REPOSITORY"), env("GITHUB_RUN_ID")
    return f"{server}/{repo}/actions/runs/{run_id}" if repo and run_id else ""


def report_dir() -> Path:
    """Where the reports go: outside the checkout, one folder per ``report-name``."""
    explicit = env("OPRO_REPORT_DIR")
    if explicit:
        return Path(explicit)
    name = re.sub(r"[^A-Za-z0-9._-]+", "-", inp("report-name", "opro-report")).strip(".-") or "opro-report"
    return Path(env("RUNNER_TEMP") or tempfile.gettempdir()) / "pytest-opro" / name


def marker() -> str:
    """The hidden first line that finds this action's comment again (one per ``report-name``)."""
    name = re.sub(r"[^A-Za-z0-9._-]+", "-", inp("report-name", "opro-report"))
    return f"<!-- pytest-opro report={name} -->"


def python() -> str:
    chosen = env("OPRO_PYTHON")
    if not chosen:
        raise ActionError("no Python chosen: the setup step did not run (OPRO_PYTHON is empty)")
    return chosen


def python_env() -> Dict[str, str]:
    """The environment with the action's Python first on PATH (and its venv active, if it has one)."""
    result = dict(os.environ)
    bindir = str(Path(python()).parent)
    result["PATH"] = bindir + os.pathsep + result.get("PATH", "")
    venv = Path(bindir).parent
    if (venv / "pyvenv.cfg").exists():
        result["VIRTUAL_ENV"] = str(venv)
    return result


def group(title: str) -> None:
    print(f"::group::{title}", flush=True)


def endgroup() -> None:
    print("::endgroup::", flush=True)


# -- setup --------------------------------------------------------------------------------------------

_VERSION = re.compile(r"^\d+(\.\d+){0,2}$")


def _version_of(executable: str) -> Optional[str]:
    try:
        out = subprocess.run([executable, "-c", "import sys; print('%d.%d.%d' % sys.version_info[:3])"],
                             capture_output=True, text=True, timeout=60)
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() if out.returncode == 0 else None


def _matches(found: str, wanted: str) -> bool:
    return found == wanted or found.startswith(wanted + ".")


def find_python(wanted: str) -> Tuple[str, str]:
    """An interpreter of version ``wanted`` (``3.12`` or ``3.12.7``): the runner's tool cache first
    (where GitHub's images keep several versions), then ``python3.12`` and ``python3`` on PATH."""
    if not _VERSION.match(wanted):
        raise ActionError(f"python-version {wanted!r}: give a version such as 3.12 (or '' for the python3 on PATH)")
    candidates: List[str] = []
    cache = Path(env("RUNNER_TOOL_CACHE") or "/nonexistent") / "Python"
    if cache.is_dir():
        def key(path: Path) -> Tuple[int, ...]:
            return tuple(int(p) for p in re.findall(r"\d+", path.name)[:3])

        for folder in sorted((p for p in cache.iterdir() if _matches(p.name, wanted)), key=key, reverse=True):
            for arch in sorted(folder.iterdir()) if folder.is_dir() else []:
                for exe in (arch / "bin" / "python3", arch / "python.exe"):
                    if exe.exists():
                        candidates.append(str(exe))
    major_minor = ".".join(wanted.split(".")[:2])
    for name in (f"python{major_minor}", "python3", "python"):
        found = shutil.which(name)
        if found:
            candidates.append(found)
    for candidate in candidates:
        version = _version_of(candidate)
        if version and _matches(version, wanted):
            return candidate, version
    raise ActionError(
        f"Python {wanted} is not on this runner (looked in $RUNNER_TOOL_CACHE/Python and on PATH). Set "
        "python-version to a version the runner has, or set up Python in an earlier step and give "
        "python-version: '' to use it."
    )


def step_setup() -> int:
    wanted = inp("python-version")
    if wanted:
        base, version = find_python(wanted)
        venv = Path(env("RUNNER_TEMP") or tempfile.gettempdir()) / "pytest-opro" / f"venv-{version}"
        bindir = venv / ("Scripts" if os.name == "nt" else "bin")
        chosen = bindir / ("python.exe" if os.name == "nt" else "python")
        if not chosen.exists():
            print(f"pytest-opro: creating a virtual environment with Python {version} ({base}) in {venv}", flush=True)
            subprocess.run([base, "-m", "venv", str(venv)], check=True)
        _append("GITHUB_PATH", f"{bindir}\n")
        python_path = str(chosen)
    else:
        found = shutil.which("python3") or shutil.which("python")
        if not found:
            raise ActionError("python-version is empty and no python3 is on PATH")
        python_path, version = found, _version_of(found) or "?"
    print(f"pytest-opro: Python {version} at {python_path}", flush=True)
    set_output("python", python_path)
    set_output("report-dir", str(report_dir()))
    return 0


# -- install ------------------------------------------------------------------------------------------


def _has_module(module: str) -> bool:
    probe = f"import importlib.util, sys; sys.exit(0 if importlib.util.find_spec({module!r}) else 1)"
    return subprocess.run([python(), "-c", probe], env=python_env()).returncode == 0


def step_install() -> int:
    command = inp("install")
    if command:
        group(f"install: {command}")
        status = subprocess.run(["bash", "-eo", "pipefail", "-c", command], env=python_env()).returncode
        endgroup()
        if status:
            raise ActionError(f"the install command failed (exit status {status}): {command}")
    if not _has_module("pytest_opro"):
        group("install pytest-opro from the action")
        spec = f"{ACTION_ROOT}[plot]"
        status = subprocess.run([python(), "-m", "pip", "install", "--quiet", spec], env=python_env()).returncode
        endgroup()
        if status:
            raise ActionError(f"could not install pytest-opro ({spec}); install it with the install input")
    return 0


# -- test ---------------------------------------------------------------------------------------------


def cache_args(cache: str, mode: str, workspace: Path) -> List[str]:
    """pytest options for the ``cache`` input. ``actions``: ``.opro_cache`` at the workspace root, the
    folder actions/cache restores and saves (read-only in optimize mode: an optimisation never changes
    the shared answers); ``off``: no cache; a ``redis://`` or ``rediss://`` URL: the shared cache,
    ``--opro-cache-url`` (from the scale-out work; older versions do not have it)."""
    readonly = ["--opro-cache=ro"] if mode == "optimize" else []
    if cache in ("", "actions"):
        return [f"--opro-cache-dir={workspace / '.opro_cache'}", *readonly]
    if cache == "off":
        return ["--opro-cache=off"]
    if re.match(r"^rediss?://", cache):
        return [f"--opro-cache-url={cache}", *readonly]
    raise ActionError("cache must be actions, off, or a redis:// or rediss:// URL (e.g. from a secret)")


#: A cache scope pytest-opro accepts (its --opro-cache-scope rule): what a ref name is turned into.
_SCOPE_MAX = 64


def scope_name(text: str, prefix: str = "") -> str:
    """`prefix` + `text` as a valid cache scope: characters other than letters, digits, ``.``, ``_`` and
    ``-`` become ``-``; a name too long is cut and ends with a short hash of the whole, so two long
    branch names stay apart."""
    name = prefix + re.sub(r"[^A-Za-z0-9._-]+", "-", text).strip("-._")
    if len(name) > _SCOPE_MAX or name == prefix:
        digest = hashlib.sha256(text.encode("utf-8")).hexdigest()[:10]
        name = name[: _SCOPE_MAX - 11].rstrip("-._") + "-" + digest
    return name


def scope_args(choice: str, event_name: str, event: Dict[str, Any], ref_name: str) -> List[str]:
    """pytest options for the ``cache-scope`` input with a Redis cache. ``auto``: from the event: the
    default branch (a push to it, a schedule, a manual run on it) writes and reads only its own scope,
    named after it; a pull request writes ``pr-<number>`` and a push to another branch
    ``branch-<name>``, both reading the default branch's scope after their own. ``none``: no scope
    (one key space shared by every run, as before scopes existed). Any other value: that scope, still
    trusting the default branch's."""
    if choice == "none":
        return []
    default = str((event.get("repository") or {}).get("default_branch") or "")
    pull = event.get("pull_request") or {}
    number = pull.get("number") or (event.get("number") if event_name.startswith("pull_request") else None)
    if not default:
        if event_name != "schedule":  # a schedule runs on the default branch, whatever it is called
            raise ActionError("cache-scope auto: the event does not name the repository's default branch; "
                              "set cache-scope to a scope name, or none")
        default = ref_name
    trusted = scope_name(default)
    if choice and choice != "auto":
        return [f"--opro-cache-scope={choice}", f"--opro-cache-trust={trusted}"]
    if number:
        own = scope_name(str(number), "pr-")
    elif event_name == "schedule" or ref_name == default:
        own = trusted
    else:
        own = scope_name(ref_name, "branch-")
    return [f"--opro-cache-scope={own}", f"--opro-cache-trust={trusted}"]


def pytest_command(report_json: Path, plots: Optional[Path], html: Optional[Path] = None) -> List[str]:
    mode = inp("mode", "gate")
    if mode not in ("gate", "optimize"):
        raise ActionError(f"mode {mode!r}: must be gate or optimize")
    args = [python(), "-m", "pytest", *shlex.split(inp("tests")), f"--opro-report={report_json}"]
    if plots is not None:
        args.append(f"--opro-plot={plots}")
    if html is not None:
        args.append(f"--opro-html={html}")
    if mode == "optimize":
        args.append("--opro-optimize")
    cache = inp("cache", "actions")
    args += cache_args(cache, mode, Path(env("GITHUB_WORKSPACE") or os.getcwd()))
    if re.match(r"^rediss?://", cache):
        args += scope_args(inp("cache-scope", "auto"), env("GITHUB_EVENT_NAME"), _event(), env("GITHUB_REF_NAME"))
    return args + shlex.split(inp("args"))


def _shown(args: List[str]) -> str:
    return " ".join(shlex.quote(re.sub(r"^(--opro-cache-url=).+", r"\1***", a)) for a in args)


_HELP: Dict[str, str] = {}


def _supports_option(option: str) -> bool:
    """Whether the installed pytest-opro has `option` (``pytest --help`` runs once per step)."""
    if "text" not in _HELP:
        out = subprocess.run([python(), "-m", "pytest", "--help"], capture_output=True, text=True, env=python_env())
        _HELP["text"] = out.stdout
    return option in _HELP["text"]


def _reporting(*args: str) -> bool:
    proc = subprocess.run([python(), "-m", REPORTING, *args], capture_output=True, text=True, env=python_env())
    if proc.returncode:
        print(proc.stderr, file=sys.stderr, flush=True)
    return proc.returncode == 0


def _fallback_comment(headline: str, detail: str) -> str:
    link = f"\n\n[Workflow run]({run_url()})" if run_url() else ""
    return f"## {headline}\n\n{detail}{link}\n"


def step_test() -> int:
    out = report_dir()
    if out.exists():
        shutil.rmtree(out)
    out.mkdir(parents=True)
    report_json, report_md, comment_md = out / "report.json", out / "report.md", out / "comment.md"
    mode = inp("mode", "gate")
    cache = inp("cache", "actions")
    if re.match(r"^rediss?://", cache):
        mask(cache)
        if not _supports_option("--opro-cache-url"):
            raise ActionError("cache is a Redis URL, but this pytest-opro has no --opro-cache-url option (the "
                              "shared Redis cache); upgrade pytest-opro, or use cache: actions")
        if inp("cache-scope", "auto") != "none" and not _supports_option("--opro-cache-scope"):
            raise ActionError("cache-scope: this pytest-opro has no --opro-cache-scope option (trust scopes of the "
                              "Redis cache); upgrade pytest-opro, or set cache-scope: none")
    plots: Optional[Path] = out / "plots"
    if not _has_module("matplotlib"):
        annotate("notice", 'no plots: matplotlib is not installed (install "pytest-opro[plot]")')
        plots = None
    # the HTML report: every example's outputs side by side (pytest-opro versions that have it)
    html = out / "report.html" if _supports_option("--opro-html") else None
    command = pytest_command(report_json, plots, html)
    print(f"pytest-opro: {_shown(command)}", flush=True)
    status = subprocess.run(command, env=python_env()).returncode

    report: Optional[Dict[str, Any]] = None
    if report_json.exists():
        try:
            report = json.loads(report_json.read_text(encoding="utf-8"))
        except ValueError:
            report = None
    not_ok = report["summary"]["not_ok"] if report else None
    verdict = "pass" if status == 0 and not not_ok else "fail"
    reason = {5: "pytest collected no tests", 4: "pytest stopped on a usage error",
              2: "pytest was interrupted", 3: "pytest had an internal error"}.get(status, "")

    args_comment = ["--run-url", run_url()] if run_url() else []
    event = _event()
    commit = ((event.get("pull_request") or {}).get("head") or {}).get("sha") or env("GITHUB_SHA")
    if commit:
        args_comment += ["--commit", commit]
    args_comment += ["--artifact", inp("report-name", "opro-report")]
    exited = f"pytest exited with status {status}" + (f" ({reason})" if reason else "")
    if report is not None and _reporting("markdown", str(report_json), str(report_md)):
        # a failure the report does not show: other tests failed, or pytest could not run them all
        caution = "" if verdict == "pass" or not_ok else (
            f"> [!CAUTION]\n> FAIL: {exited}" + ("" if reason else ", with a failure outside the prompt tasks")
            + "; the log of the workflow run says why.\n\n")
        summary(caution + report_md.read_text(encoding="utf-8"))
        if not _reporting("comment", str(report_json), str(comment_md), *args_comment):
            comment_md.write_text(_fallback_comment(
                f"pytest-opro: {verdict.upper()}", "This pytest-opro version cannot write the comment; "
                "the report is in the job summary."), encoding="utf-8")
        if caution:
            comment_md.write_text(caution + comment_md.read_text(encoding="utf-8"), encoding="utf-8")
    else:
        detail = f"{exited} before a report was written; the log of the workflow run says why."
        summary(f"## pytest-opro: FAIL, no report\n\n{detail}\n")
        comment_md.write_text(_fallback_comment("pytest-opro: FAIL, no report", detail), encoding="utf-8")

    state = {"verdict": verdict, "status": status, "mode": mode, "report": report is not None}
    (out / "state.json").write_text(json.dumps(state), encoding="utf-8")
    set_output("verdict", verdict)
    set_output("report-json", str(report_json) if report is not None else "")
    if verdict == "fail":
        what = "the gate failed" if mode == "gate" else "the optimisation did not pass"
        if not_ok:
            what += f": {not_ok} of {report['summary']['tasks']} prompt tasks did not pass"  # type: ignore[index]
        else:
            what += f": {exited}"
        annotate("error", what + " (the report is in the job summary)")
        return 1
    return 0


# -- publish ------------------------------------------------------------------------------------------


class GhError(Exception):
    def __init__(self, status: Optional[int], text: str) -> None:
        super().__init__(text)
        self.status = status


def gh(method: str, path: str, body: Optional[Dict[str, Any]] = None, paginate: bool = False) -> Any:
    """One GitHub REST call through ``gh api``; the decoded JSON (pages joined into one list)."""
    args = ["gh", "api", "--method", method, path, "-H", "Accept: application/vnd.github+json"]
    if paginate:
        args.append("--paginate")
    if body is not None:
        args += ["--input", "-"]
    try:
        proc = subprocess.run(args, input=json.dumps(body) if body is not None else None, capture_output=True,
                              text=True, timeout=120)
    except (OSError, subprocess.SubprocessError) as exc:
        raise GhError(None, f"gh could not run: {exc}") from None
    if proc.returncode:
        found = re.search(r"HTTP (\d{3})", proc.stderr)
        raise GhError(int(found.group(1)) if found else None, (proc.stderr or proc.stdout).strip())
    text = proc.stdout.strip()
    if not paginate:
        return json.loads(text) if text else None
    items: List[Any] = []
    decoder, at = json.JSONDecoder(), 0
    while at < len(text):  # --paginate prints one JSON array per page
        page, at = decoder.raw_decode(text, at)
        items += page if isinstance(page, list) else [page]
        while at < len(text) and text[at].isspace():
            at += 1
    return items


def _event() -> Dict[str, Any]:
    path = env("GITHUB_EVENT_PATH")
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8")) if path else {}
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def _cannot_write(why: str) -> int:
    note = (f"The pull request comment was not written: {why}. The report is in this job summary and in the "
            f"artifact {inp('report-name', 'opro-report')!r}.")
    annotate("notice", note)
    summary(f"\n> [!NOTE]\n> {note}\n")
    return 0


def html_link(out: Path) -> str:
    """One markdown line pointing at the HTML report in the uploaded artifact ("" without a report)."""
    if not (out / "report.html").exists():
        return ""
    name = inp("report-name", "opro-report")
    url = env("OPRO_ARTIFACT_URL")
    where = f"[artifact {name}]({url})" if url else f"artifact {name!r}"
    return f"Every example's outputs side by side: `report.html` in the {where} (one self-contained page; unzip and open it)."


def step_publish() -> int:
    out = report_dir()
    state_path = out / "state.json"
    state = json.loads(state_path.read_text(encoding="utf-8")) if state_path.exists() else None
    link = html_link(out)
    if link:
        summary(f"\n{link}\n")
    if inp("mode", "gate") == "optimize":
        return publish_optimized(out, state)
    return publish_comment(out, state)


def publish_comment(out: Path, state: Optional[Dict[str, Any]]) -> int:
    if inp("comment", "true").lower() not in ("true", "yes", "1", "on"):
        print("pytest-opro: comment is off: no pull request comment", flush=True)
        return 0
    event = _event()
    pr = event.get("pull_request")
    if not isinstance(pr, dict) or not pr.get("number"):
        print(f"pytest-opro: {env('GITHUB_EVENT_NAME') or 'this event'} is not a pull request: no comment",
              flush=True)
        return 0
    number, repo = int(pr["number"]), env("GITHUB_REPOSITORY")
    head_repo = ((pr.get("head") or {}).get("repo") or {}).get("full_name")
    fork = bool(head_repo and head_repo != repo)
    read_only = ("the token is read-only (a pull request from a fork)" if fork else
                 "the token may not write to pull requests (give the job permissions: pull-requests: write)")
    if not env("GH_TOKEN"):
        return _cannot_write("no token (the token input is empty)")
    comment_md = out / "comment.md"
    if state is None or not comment_md.exists():
        text = _fallback_comment("pytest-opro: FAIL, no report", "The action stopped before its test step "
                                 "finished; the log of the workflow run says why.")
    else:
        text = with_line(comment_md.read_text(encoding="utf-8"), html_link(out))
    body = {"body": f"{marker()}\n{text}"[:65_000]}
    try:
        comments = gh("GET", f"repos/{repo}/issues/{number}/comments?per_page=100", paginate=True)
        mine = [c for c in comments if isinstance(c, dict) and str(c.get("body", "")).startswith(marker())]
        if mine:
            result = gh("PATCH", f"repos/{repo}/issues/comments/{mine[0]['id']}", body)
            done = "updated"
        else:
            result = gh("POST", f"repos/{repo}/issues/{number}/comments", body)
            done = "created"
    except GhError as exc:
        if exc.status == 403:
            return _cannot_write(read_only)
        annotate("warning", f"the pull request comment was not written: {exc}")
        summary(f"\n> [!WARNING]\n> The pull request comment was not written: {exc}\n")
        return 0
    url = (result or {}).get("html_url", "")
    print(f"pytest-opro: pull request comment {done}: {url}", flush=True)
    set_output("comment-url", url)
    return 0


def with_line(text: str, line: str) -> str:
    """`text` with `line` as a paragraph before its closing ``<sub>`` footer (at the end without one)."""
    if not line:
        return text
    lines = text.rstrip("\n").split("\n")
    at = len(lines)
    if lines and lines[-1].startswith("<sub>"):
        at = len(lines) - 1
    before = lines[:at] + ([""] if at and lines[at - 1] else [])
    return "\n".join(before + [line, ""] + lines[at:]).rstrip("\n") + "\n"


def _git(*args: str, check: bool = True) -> str:
    proc = subprocess.run(["git", *args], capture_output=True, text=True)
    if check and proc.returncode:
        raise ActionError(f"git {args[0]} failed: {proc.stderr.strip()}")
    return proc.stdout


def publish_optimized(out: Path, state: Optional[Dict[str, Any]]) -> int:
    if state is None or state.get("verdict") != "pass":
        annotate("notice", "the optimisation did not pass: no pull request opened")
        return 0
    if not _git("status", "--porcelain", "--", OPRO_GLOB).strip():
        print("pytest-opro: no __opro__/ file changed: nothing to propose", flush=True)
        summary("\nNo `__opro__/` file changed: no pull request.\n")
        return 0
    token, repo = env("GH_TOKEN"), env("GITHUB_REPOSITORY")
    branch = inp("branch", "opro/optimize")
    base = env("GITHUB_BASE_REF") or env("GITHUB_REF_NAME")
    if not token:
        raise ActionError("optimize mode opens a pull request and needs a token (the token input is empty)")
    url = run_url()
    _git("config", "user.name", BOT_NAME)
    _git("config", "user.email", BOT_EMAIL)
    _git("switch", "-C", branch)
    _git("add", "--", OPRO_GLOB)
    _git("commit", "--quiet", "-m", "Update optimised prompts (pytest --opro-optimize)", *(["-m", f"Run: {url}"] if url else []))
    auth = base64.b64encode(f"x-access-token:{token}".encode()).decode()
    mask(auth)
    remote = f"{env('GITHUB_SERVER_URL', 'https://github.com')}/{repo}.git"
    _git("-c", f"http.extraheader=AUTHORIZATION: basic {auth}", "push", "--quiet", "--force", remote,
         f"HEAD:refs/heads/{branch}")
    report_md = out / "report.md"
    text = report_md.read_text(encoding="utf-8") if report_md.exists() else "(no report)"
    body = text[:BODY_LIMIT] + (f"\n\nPlots and the JSON report: artifact {inp('report-name', 'opro-report')!r} "
                                f"of {url}\n" if url else "")
    body = with_line(body, html_link(out))
    owner = repo.split("/")[0]
    try:
        open_prs = gh("GET", f"repos/{repo}/pulls?state=open&head={owner}:{branch}", paginate=True)
        if open_prs:
            result = gh("PATCH", f"repos/{repo}/pulls/{open_prs[0]['number']}", {"body": body})
            done = "updated"
        else:
            result = gh("POST", f"repos/{repo}/pulls", {"title": "Update optimised prompts", "head": branch,
                                                         "base": base, "body": body})
            done = "opened"
    except GhError as exc:
        hint = (" (allow it: Settings > Actions > General > 'Allow GitHub Actions to create and approve pull "
                "requests', and give the job permissions: pull-requests: write)") if exc.status == 403 else ""
        raise ActionError(f"the branch {branch} was pushed, but its pull request was not opened: {exc}{hint}") from None
    link = (result or {}).get("html_url", "")
    print(f"pytest-opro: pull request {done}: {link}", flush=True)
    summary(f"\nPull request {done}: {link}\n")
    set_output("pull-request-url", link)
    return 0


STEPS = {"setup": step_setup, "install": step_install, "test": step_test, "publish": step_publish}


def main(argv: Optional[List[str]] = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1 or args[0] not in STEPS:
        print(f"usage: {Path(__file__).name} {{{','.join(STEPS)}}}", file=sys.stderr)
        return 2
    try:
        return STEPS[args[0]]()
    except ActionError as exc:
        annotate("error", str(exc))
        return 1


if __name__ == "__main__":
    sys.exit(main())
