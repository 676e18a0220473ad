"""Secrets: a full optimise-and-gate run with API keys around leaves no key in any file or output
(artifacts, cache, JSON, markdown and HTML reports, plots, logs, JUnit XML)."""

from __future__ import annotations

import logging

from tests.support.loop_brain import write_project
from tests.support.loopback import LoopbackServer

SECRETS = {
    "OPENAI_API_KEY": "sk-proj-SECRET0penai7f3a9c1e5d",
    "ANTHROPIC_API_KEY": "sk-ant-SECRETanthr0pic2b4d6f8",
    "GEMINI_API_KEY": "AIzaSECRETgem1ni0c2e4g6i8k",
    "OPRO_LOOP_KEY": "sk-SECRETexpl1cit-9e8d7c6b5a",
}


def leaks(data: bytes) -> list[str]:
    """Names of the secrets found in `data` (whole, or their distinctive middle part)."""
    found = []
    for name, secret in SECRETS.items():
        middle = secret[len(secret) // 3 : 2 * len(secret) // 3]
        if secret.encode() in data or middle.encode() in data:
            found.append(name)
    return found


def test_no_key_in_any_artifact_cache_report_plot_log_or_output(pytester, monkeypatch, inline_ready, tmp_path):
    for name, value in SECRETS.items():
        monkeypatch.setenv(name, value)
    for logger_name in ("LiteLLM", "LiteLLM Router", "httpx", "openai"):  # with every debug log on
        logger = logging.getLogger(logger_name)
        monkeypatch.setattr(logger, "level", logging.DEBUG)
    project = pytester.path / "proj"
    brain = write_project(project, settings={"max_steps": 2, "candidates": 2, "patience": 0})
    conftest = project / "conftest.py"
    # the scorer gets its key explicitly, the optimizer from OPENAI_API_KEY in the environment
    conftest.write_text(conftest.read_text().replace("api_key=KEY,", 'api_key=KEY if "scorer" in name else None,'))
    out_dir = project / "out"
    outputs: dict[str, str] = {}
    with LoopbackServer(answer=brain) as server:
        monkeypatch.setenv("OPRO_LOOP_URL", server.url)
        common = [str(project), "--rootdir", str(project), "-rA", "-vv", "--log-level=DEBUG", "--log-file-level=DEBUG"]
        runs = {
            "optimize": [
                "--opro-optimize",
                f"--opro-report={out_dir / 'optimize.json'}",
                f"--opro-plot={out_dir / 'plots'}",
                f"--opro-html={out_dir / 'optimize.html'}",
                f"--log-file={out_dir / 'optimize.log'}",
                f"--junitxml={out_dir / 'optimize.xml'}",
            ],
            "gate": [
                f"--opro-report={out_dir / 'gate.md'}",
                f"--opro-html={out_dir / 'gate.html'}",
                f"--log-file={out_dir / 'gate.log'}",
                f"--junitxml={out_dir / 'gate.xml'}",
            ],
            "gate-json": [f"--opro-report={out_dir / 'gate.json'}"],
        }
        for label, args in runs.items():
            result = pytester.runpytest_inprocess(*common, *args)
            outputs[label] = result.stdout.str() + result.stderr.str()
            assert result.ret == 0, outputs[label]
        auth = [body for body in server.bodies if "api_key" in body]
    assert not auth  # keys travel in headers only, never in the JSON body

    files = [p for p in project.rglob("*") if p.is_file()]
    names = {p.relative_to(project).as_posix() for p in files}
    for expected in (
        "__opro__/alpha.yaml",
        ".opro_cache/responses.sqlite3",
        "out/optimize.json",
        "out/gate.md",
        "out/gate.json",
        "out/optimize.log",
        "out/optimize.xml",
        "out/optimize.html",
        "out/gate.html",
    ):
        assert expected in names, sorted(names)
    assert any(n.startswith("out/plots/") and n.endswith(".png") for n in names), sorted(names)
    leaked = {p.relative_to(project).as_posix(): leaks(p.read_bytes()) for p in files}
    for label, text in outputs.items():
        leaked[f"<output of {label} run>"] = leaks(text.encode())
    assert {where: what for where, what in leaked.items() if what} == {}
    log = (out_dir / "optimize.log").read_text()
    assert (
        "LiteLLM" in log or "pytest_opro.models.openai_http" in log
    ) and "Is alpha-item" in log  # requests were logged
