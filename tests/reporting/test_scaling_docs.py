"""The README's "Scaling out" section: its GitHub Actions matrix example and its router file are real
(valid, pinned, least privileges, actionlint-clean, only existing options) — and .ci/run installs Redis."""

from __future__ import annotations

import re
from pathlib import Path

import yaml

from pytest_opro.models.router import RouterConfig
from pytest_opro.plugin.options import FLAGS, SPECS
from tests.integration.test_workflows import PINNED, actionlint, load

REPO = Path(__file__).resolve().parents[2]
README = (REPO / "README.md").read_text(encoding="utf-8")


def section() -> str:
    start = README.index("## Scaling out")
    return README[start : README.index("\n## ", start + 5)]


def blocks(language: str) -> list[str]:
    return re.findall(rf"```{language}\n(.*?)```", section(), flags=re.S)


def matrix_example(tmp_path: Path) -> Path:
    (workflow,) = [b for b in blocks("yaml") if "jobs:" in b]
    path = tmp_path / "sharded.yml"
    path.write_text(workflow, encoding="utf-8")
    return path


def test_matrix_example_is_a_sharded_gate_with_redis_and_a_merged_report(tmp_path):
    data = load(matrix_example(tmp_path))
    assert data["permissions"] == {}
    gate, report = data["jobs"]["gate"], data["jobs"]["report"]
    assert gate["strategy"]["matrix"]["shard"] == [1, 2, 3, 4]
    assert gate["services"]["redis"]["image"].startswith("redis:")
    text = "\n".join(str(s.get("run", "")) for s in gate["steps"])
    assert "--opro-shard ${{ matrix.shard }}/4" in text and "--opro-cache-url" in text
    assert report["needs"] == "gate" and "pytest_opro.reporting merge" in str(report["steps"])
    for job in data["jobs"].values():
        assert job["permissions"] == {"contents": "read"}
        for step in job["steps"]:
            if "uses" in step:
                assert PINNED.match(step["uses"]), step["uses"]
    known = {f"--opro-{name}" for name, _ in FLAGS} | {f"--opro-{spec.name}" for spec in SPECS}
    assert set(re.findall(r"--opro-[a-z-]+", section())) <= known


def test_matrix_example_passes_actionlint(tmp_path):
    path = matrix_example(tmp_path)
    assert actionlint([path]) == {str(path): []}


def test_router_files_in_the_readme_are_valid(monkeypatch):
    files = [b for b in blocks("yaml") if b.lstrip().startswith(("model_list", "# router.yaml"))]
    assert len(files) == 2
    for text in files:
        config = RouterConfig.from_dict(yaml.safe_load(text), "README")
        for name in re.findall(r"os\.environ/(\w+)", text):
            monkeypatch.setenv(name, f"value-of-{name.lower()}")
        resolved = config.resolved()
        assert resolved.paced and resolved.settings["num_retries"] == 0


def test_ci_installs_redis_server_when_missing():
    run = (REPO / ".ci" / "run").read_text(encoding="utf-8")
    assert "command -v redis-server" in run and "apt-get install" in run and "redis-server" in run
