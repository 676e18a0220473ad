"""Concurrency: ``pytest -n 4 --opro-optimize`` over four tasks sharing one response cache."""

from __future__ import annotations

import collections
import sqlite3

import yaml

from pytest_opro.prompts.artifact import load_artifact
from tests.support.loop_brain import cache_entries, comparable, run_pytest, write_project
from tests.support.loopback import LoopbackServer

TASKS = ("alpha", "bravo", "charlie", "delta")
SETTINGS = {"max_steps": 2, "candidates": 3, "patience": 0}


def test_four_workers_share_one_cache_without_loss(tmp_path, pytester, monkeypatch, inline_ready):
    # --opro-allow-no-gain: this is about the shared cache; whether a task finds a gain does not matter
    project = tmp_path / "proj"
    # a long client timeout: requests may be held (below) while other workers start on a loaded machine
    brain = write_project(project, names=TASKS, settings=SETTINGS, timeout=120.0)
    with LoopbackServer(answer=brain, latency=0.01) as server:
        # one worker has at most 8 calls in flight (--opro-concurrency=8): requests wait until more
        # than one worker has calls in flight, however far apart the workers start
        server.hold_until_in_flight(9)
        proc = run_pytest(
            project, server.url, "-n", "4", "--opro-optimize", "--opro-allow-no-gain", "--opro-concurrency=8"
        )
        paid = server.requests
        assert proc.returncode == 0, proc.stdout + proc.stderr
        assert server.held.is_set() and server.max_in_flight > 8  # the workers really overlapped

        # every artifact written once, by one worker, and complete
        written = collections.Counter(line.split()[0] for line in (project / "written.log").read_text().splitlines())
        assert written == {name: 1 for name in TASKS}
        artifacts = {name: load_artifact(project / "__opro__" / f"{name}.yaml").data for name in TASKS}
        assert sorted(p.name for p in (project / "__opro__").iterdir()) == sorted(f"{n}.yaml" for n in TASKS)

        # the shared cache is intact and lost nothing: one row per paid call
        db = project / ".opro_cache" / "responses.sqlite3"
        conn = sqlite3.connect(str(db))
        try:
            assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        finally:
            conn.close()
        assert cache_entries(project / ".opro_cache") == paid
        assert sum(a["run"]["calls"] for a in artifacts.values()) == paid

        # a second run in one process is answered entirely from that cache, with the same results
        monkeypatch.setenv("OPRO_LOOP_URL", server.url)
        result = pytester.runpytest_inprocess(
            str(project),
            "--rootdir",
            str(project),
            "-p",
            "no:cacheprovider",
            "-p",
            "no:xdist",
            "--opro-optimize",
            "--opro-allow-no-gain",
        )
        assert result.ret == 0, result.stdout.str()
        assert server.requests == paid
    for name in TASKS:
        again = yaml.safe_load((project / "__opro__" / f"{name}.yaml").read_text(encoding="utf-8"))
        assert comparable(again) == comparable(artifacts[name])
        assert again["run"]["calls"] == 0 and again["run"]["cache_hits"] == artifacts[name]["run"]["calls"]
