"""The Redis cache in whole pytest runs: four xdist workers writing the same answers at once, a second
run that pays nothing, and a Redis killed (``kill -9``) in the middle of an optimisation."""

from __future__ import annotations

import threading
from pathlib import Path

import yaml

from pytest_opro.models.redis_cache import KEY_PREFIX
from tests.support.loop_brain import cache_entries, comparable, run_pytest, write_project
from tests.support.loopback import LoopbackServer

SETTINGS = {"max_steps": 3, "candidates": 2, "patience": 0}
NAMES = ["alpha", "beta", "gamma", "delta"]


def keys(server) -> int:
    return sum(1 for _ in server.client().scan_iter(match=KEY_PREFIX + "*", count=1000))


def artifact(project: Path, name: str) -> dict:
    data = comparable(yaml.safe_load((project / "__opro__" / f"{name}.yaml").read_text(encoding="utf-8")))
    data.pop("task", None)
    data.get("fingerprint", {}).pop("task", None)
    return data


def identical_tasks(project: Path) -> None:
    """Every task gets alpha's examples: the four tasks make the same requests (same cache keys)."""
    first = (project / "alpha.jsonl").read_text(encoding="utf-8")
    for name in NAMES[1:]:
        (project / f"{name}.jsonl").write_text(first, encoding="utf-8")


def test_four_workers_share_one_redis_cache_and_a_second_run_pays_nothing(tmp_path, redis_server):
    # what one task alone asks for: the number of distinct cache keys
    alone = tmp_path / "alone"
    brain = write_project(alone, names=["alpha"], settings=SETTINGS)
    with LoopbackServer(answer=brain) as provider:
        result = run_pytest(alone, provider.url, "--opro-optimize")
        assert result.returncode == 0, result.stdout + result.stderr
    distinct = cache_entries(alone / ".opro_cache")
    assert distinct > 20

    project = tmp_path / "shared"
    brain = write_project(project, names=NAMES, settings=SETTINGS)
    identical_tasks(project)
    url = f"--opro-cache-url={redis_server.url}"
    with LoopbackServer(answer=brain, latency=0.01) as provider:
        first = run_pytest(project, provider.url, "-n", "4", "--opro-optimize", url)
        assert first.returncode == 0, first.stdout + first.stderr
        first_calls = provider.requests
        assert "4 passed" in first.stdout
        # the four workers asked the same questions at the same time: every answer is stored once
        assert keys(redis_server) == distinct
        assert first_calls >= distinct
        second = run_pytest(project, provider.url, "--opro-optimize", url)
        assert second.returncode == 0, second.stdout + second.stderr
        assert provider.requests == first_calls  # zero provider calls the second time
    assert keys(redis_server) == distinct
    assert not (project / ".opro_cache" / "responses.sqlite3").exists()  # Redis instead, not as well
    reference = artifact(alone, "alpha")
    assert all(artifact(project, name) == reference for name in NAMES)


def test_redis_killed_mid_run_gives_the_uncached_result_and_keeps_what_was_written(tmp_path, redis_server):
    reference_project = tmp_path / "uncached"
    brain = write_project(reference_project, settings=SETTINGS)
    with LoopbackServer(answer=brain) as provider:
        result = run_pytest(reference_project, provider.url, "--opro-optimize", "--opro-cache=off")
        assert result.returncode == 0, result.stdout + result.stderr
        whole_run = provider.requests
    reference = artifact(reference_project, "alpha")

    project = tmp_path / "killed"
    brain = write_project(project, settings=SETTINGS)
    kill_at = whole_run // 3
    seen: dict[str, int] = {}
    lock = threading.Lock()

    def answer(messages: list[dict]) -> str:
        with lock:
            if provider.requests >= kill_at and "keys" not in seen:
                seen["keys"] = keys(redis_server)
                redis_server.kill()  # kill -9 while calls are in flight
        return brain(messages)

    url = f"--opro-cache-url={redis_server.url}"
    with LoopbackServer(answer=answer) as provider:
        killed = run_pytest(project, provider.url, "--opro-optimize", url, "-W", "always::RuntimeWarning")
        out = killed.stdout + killed.stderr
        assert killed.returncode == 0, out
        assert provider.requests == whole_run  # nothing was asked twice
    assert seen["keys"] > 0
    assert out.count("continuing without the cache") == 1, out  # one warning
    assert artifact(project, "alpha") == reference  # the result of an uncached run

    redis_server.start()  # same port, same append-only file
    restored = keys(redis_server)
    assert restored >= seen["keys"]  # everything written before the kill is there
    (project / "__opro__" / "alpha.yaml").unlink()
    with LoopbackServer(answer=brain) as provider:
        again = run_pytest(project, provider.url, "--opro-optimize", url)
        assert again.returncode == 0, again.stdout + again.stderr
        # only what was not written before the kill is paid again
        assert provider.requests == whole_run - restored
    assert artifact(project, "alpha") == reference
    assert keys(redis_server) == whole_run
