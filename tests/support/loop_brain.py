"""Helpers for reliability tests: a content-deterministic brain for the loopback server, and a
small pytest project (conftest + examples) that optimises one or more prompt tasks against it.

The loopback server cannot tell apart the identical requests an optimizer step sends (the sample
index lives only in the cache key), so every answer here is a pure function of the request text:
whatever order concurrent calls, retries and faults arrive in, a run's result is the same.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

import pytest

KEYWORDS = ("step by step", "carefully", "double-check")
WRONG = "I am not sure."
META_MARKER = "Your task is to generate the instruction <INS>"


def _h(text: str) -> int:
    return int(hashlib.sha256(text.encode("utf-8")).hexdigest()[:12], 16)


def make_records(n: int, prefix: str = "q") -> list[dict[str, Any]]:
    """`n` yes/no examples with distinct inputs."""
    return [
        {
            "id": f"{prefix}{i:03d}",
            "input": f"Is {prefix}-item number {i} {'even' if i % 3 else 'odd'}?",
            "target": "yes" if i % 2 else "no",
            "choices": ["yes", "no"],
        }
        for i in range(n)
    ]


def write_jsonl(path: Path, records: Iterable[dict[str, Any]]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")
    return path


class LoopBrain:
    """Answers loopback chat requests: meta-prompts get an instruction, task prompts an answer.

    The scorer answers an example right when the prompt holds at least its difficulty (0..3, from
    a hash of the input) of :data:`KEYWORDS`. The optimizer adds one keyword per instruction shown
    in the meta-prompt's trajectory, so runs improve over the first steps.
    """

    def __init__(self, records: Iterable[dict[str, Any]] = ()) -> None:
        self.targets: dict[str, str] = {}
        self.learn(records)

    def learn(self, records: Iterable[dict[str, Any]]) -> "LoopBrain":
        for r in records:
            self.targets[str(r["input"])] = str(r["target"])
        return self

    def __call__(self, messages: list[dict]) -> str:
        text = "\n".join(str(m.get("content") or "") for m in messages)
        if META_MARKER in text:
            shown = text.count("\ntext:\n")
            k = min(len(KEYWORDS), shown)
            chosen = ", ".join(KEYWORDS[:k]) or "plainly"
            return f"<INS>Answer {chosen}. (v{_h(text) % 997})</INS>"
        match = max((i for i in self.targets if i in text), key=len, default=None)
        if match is None:
            return WRONG
        present = sum(1 for kw in KEYWORDS if kw in text.lower())
        if present >= _h(match) % (len(KEYWORDS) + 1):
            return self.targets[match]
        return "no" if self.targets[match] == "yes" else "yes"


#: Settings under every project and task here: a winner needs no significance on 4 validation examples.
MECHANICS: dict[str, Any] = {"select_alpha": 1}

CONFTEST = """
import os
import pytest
from pytest_opro import PromptTask, load_examples
from pytest_opro.models.config import ModelConfig

HERE = os.path.dirname(__file__)
URL = os.environ["OPRO_LOOP_URL"]
KEY = os.environ.get("OPRO_LOOP_KEY", "sk-loop-not-secret")
SETTINGS = {settings!r}


def model(name):
    return ModelConfig("openai/" + name, api_base=URL, api_key=KEY, timeout={timeout!r}, max_retries={retries!r})


def make_task(name):
    examples = load_examples(os.path.join(HERE, name + ".jsonl"))
    return PromptTask(name=name, examples=examples, metric="choice", scorer=model("loop-scorer"),
                      optimizer=model("loop-optimizer"), settings=SETTINGS)


def pytest_opro_artifact_written(task, path, result):
    with open(os.path.join(HERE, "written.log"), "a", encoding="utf-8") as log:
        log.write(f"{{task.name}} {{os.getpid()}}\\n")
"""

TEST_MODULE = """
import pytest
from conftest import make_task

@pytest.mark.parametrize("name", {names!r})
def test_prompt(opro, name):
    opro.check(make_task(name))
"""


def write_project(
    root: Path,
    names: Sequence[str] = ("alpha",),
    n_examples: int = 20,
    settings: dict[str, Any] | None = None,
    timeout: float = 5.0,
    retries: int = 4,
) -> LoopBrain:
    """A pytest project in `root` with one task per name; returns the brain that knows its examples.

    These projects test mechanics (resume, faults, concurrency), not selection statistics: with 4
    validation examples no winner can be significant, so ``select_alpha`` is 1 (no significance
    test) unless `settings` says otherwise.
    """
    settings = {**MECHANICS, **(settings or {"max_steps": 4, "candidates": 2, "patience": 0})}
    root.mkdir(parents=True, exist_ok=True)
    (root / "conftest.py").write_text(
        textwrap.dedent(CONFTEST).format(settings=settings, timeout=timeout, retries=retries), encoding="utf-8"
    )
    (root / "test_prompts.py").write_text(textwrap.dedent(TEST_MODULE).format(names=list(names)), encoding="utf-8")
    (root / "pytest.ini").write_text("[pytest]\n", encoding="utf-8")
    brain = LoopBrain()
    for name in names:
        records = make_records(n_examples, prefix=name)
        write_jsonl(root / f"{name}.jsonl", records)
        brain.learn(records)
    return brain


ROOT = Path(__file__).resolve().parents[2]


def run_pytest(
    project: Path, url: str, *args: str, extra_env: Mapping[str, str] | None = None, timeout: float = 600
) -> subprocess.CompletedProcess:
    """``pytest`` on a :func:`write_project` project in a subprocess, on this checkout (not whatever
    pytest-opro is installed), its models at the loopback server `url`."""
    env = {
        **os.environ,
        **dict(extra_env or {}),
        "OPRO_LOOP_URL": url,
        "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]),
    }
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            str(project),
            "--rootdir",
            str(project),
            "-q",
            "-p",
            "no:cacheprovider",
            "-p",
            "no:randomly",
            *args,
        ],
        cwd=project,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


VOLATILE_RUN_KEYS = (
    "calls",
    "cache_hits",
    "prompt_tokens",
    "completion_tokens",
    "cost_usd",
    "retries",
    "failures",
    "wall_seconds",
    "by_role",
)


def comparable(artifact: dict[str, Any]) -> dict[str, Any]:
    """An artifact without the fields that record how (not what) a run computed."""
    data = json.loads(json.dumps(artifact, default=str))
    data.pop("created", None)
    for key in VOLATILE_RUN_KEYS:
        data.get("run", {}).pop(key, None)
    return data


def loop_model(url: str, name: str, **kw: Any) -> "Any":
    """A ModelConfig reaching the loopback server at `url` through litellm's openai provider."""
    from pytest_opro.models.config import ModelConfig

    kw.setdefault("api_key", "sk-loop-not-secret")
    kw.setdefault("timeout", 5.0)
    return ModelConfig("openai/" + name, api_base=url, **kw)


def loop_task(
    name: str, records: list[dict[str, Any]], scorer: Any, optimizer: Any, settings: dict[str, Any] | None = None
) -> "Any":
    """The same task the project from :func:`write_project` builds, in memory."""
    from pytest_opro import PromptTask
    from pytest_opro.prompts.examples import examples_from_records

    return PromptTask(
        name=name,
        examples=examples_from_records(records),
        metric="choice",
        scorer=scorer,
        optimizer=optimizer,
        settings={**MECHANICS, **(settings or {"max_steps": 4, "candidates": 2, "patience": 0})},
    )


def cache_entries(cache_dir: Path) -> int:
    """Rows in the response cache under `cache_dir` (0 when there is none)."""
    import sqlite3

    path = cache_dir / "responses.sqlite3"
    if not path.exists():
        return 0
    conn = sqlite3.connect(str(path))
    try:
        return int(conn.execute("SELECT count(*) FROM responses").fetchone()[0])
    finally:
        conn.close()


def preload_litellm() -> None:
    """Import litellm and every pytest-opro module before an in-process pytester run.

    pytester removes modules first imported during an inline run. A pytest-opro module imported
    there would come back as a second copy (``PromptTask`` no longer ``PromptTask``), and litellm
    imports the ``importlib_metadata`` backport, which replaces the stdlib's distribution finder in
    ``sys.meta_path``: dropped on restore, later inline runs would find no entry points at all.
    """
    import importlib
    import pkgutil

    import pytest_opro
    from pytest_opro.models import litellm_bridge as llm

    for info in pkgutil.walk_packages(pytest_opro.__path__, "pytest_opro."):
        if not info.name.endswith("__main__"):
            importlib.import_module(info.name)
    llm.get_litellm()
    # imported lazily by the plot, and by hypothesis's pytest plugin at the end of every inner run
    # (seconds each time otherwise)
    for name in ("matplotlib.figure", "hypothesis"):
        with contextlib.suppress(ImportError):
            importlib.import_module(name)


@pytest.fixture(scope="session")
def inline_ready() -> None:
    """Session fixture for tests that run pytest in-process: see :func:`preload_litellm`.

    Session-scoped so the imports happen before pytester snapshots ``sys.modules``/``sys.meta_path``.
    """
    preload_litellm()
