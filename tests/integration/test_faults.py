"""Faults: an optimisation survives a flaky provider with the same result, stops cleanly in an outage,
never scores a failed call as a wrong answer, and never leaves a half-written artifact."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import yaml

from pytest_opro.errors import ProviderError
from pytest_opro.models.cache import ResponseCache
from pytest_opro.models.client import LLMClient, run_sync
from pytest_opro.prompts.artifact import load_artifact, write_artifact
from pytest_opro.prompts.instruction_problem import score_instructions
from pytest_opro.prompts.optimization import optimize
from tests.support.loop_brain import LoopBrain, loop_model, loop_task, make_records, write_project
from tests.support.loopback import FAULT_KINDS, FaultPlan, LoopbackServer

ROOT = Path(__file__).resolve().parents[2]
FAULT_RATE = 0.2
MAX_RETRIES = 12  # even at a 40% fault rate, 0.4 ** 13: a call failing for good is one in 150,000
TIMEOUT = 3.0  # client timeout (generous: a loaded CI machine must not time out by itself)


class RecordingClient(LLMClient):
    """An LLMClient that remembers the most retries any single call needed."""

    max_call_retries = 0

    async def complete(self, config, messages, *, sample_index=0, role=None):
        out = await super().complete(config, messages, sample_index=sample_index, role=role)
        self.max_call_retries = max(self.max_call_retries, out.retries)
        return out


def fast_client(**kw) -> RecordingClient:
    kw.setdefault("retry_base", 0.01)
    kw.setdefault("retry_cap", 0.3)
    kw.setdefault("concurrency", 8)
    return RecordingClient(**kw)


def run(server: LoopbackServer, records, tmp_path: Path, name: str, client: LLMClient | None = None, **kw):
    scorer = loop_model(server.url, "loop-scorer", max_retries=MAX_RETRIES, timeout=TIMEOUT)
    optimizer = loop_model(server.url, "loop-optimizer", max_retries=MAX_RETRIES, timeout=TIMEOUT)
    task = loop_task("faulty", records, scorer, optimizer)
    client = client or fast_client(cache=ResponseCache(tmp_path / name))
    return optimize(task, client=client, **kw), client


def essence(result) -> dict:
    data = result.to_dict()
    return {
        "instruction": data["instruction"],
        "scores": data["scores"],
        "baseline": data["baseline_scores"],
        "steps_run": data["steps_run"],
        "best_step": data["best_step"],
        "rejections": data["rejections"],
        "top": [(c["text"], c["train"], c["validation"]) for c in data["trajectory"]],
    }


QUICK_KINDS = tuple(k for k in FAULT_KINDS if k != "timeout")  # a timeout costs TIMEOUT seconds


@pytest.mark.parametrize(
    "rate, kinds, seed",
    [(FAULT_RATE, FAULT_KINDS, 1), (0.4, QUICK_KINDS, 2)],
    ids=["20%-all-kinds", "40%-timeouts-once"],
)
def test_flaky_provider_gives_the_same_winner(tmp_path, rate, kinds, seed):
    records = make_records(20, "f")
    brain = LoopBrain(records)
    with LoopbackServer(answer=brain, latency=0.01) as clean:
        reference, ref_client = run(clean, records, tmp_path, "clean")
        assert clean.requests == ref_client.ledger.total().calls
        assert ref_client.ledger.total().retries == 0

    every_kind = {10 + i: kind for i, kind in enumerate(FAULT_KINDS)}  # each kind at least once
    plan = FaultPlan(rate=rate, kinds=kinds, seed=seed, on_requests=every_kind, retry_after=0.05)
    with LoopbackServer(answer=brain, latency=0.01, faults=plan, timeout_sleep=TIMEOUT + 0.5) as flaky:
        result, client = run(flaky, records, tmp_path, "flaky")
        total = client.ledger.total()
        faults = dict(flaky.fault_counts)
        requests = flaky.requests

    print(
        f"fault rate {rate:.0%} seed {seed}: {requests} requests, {total.calls} calls, "
        f"{total.retries} retries, {total.failures} failures, faults {faults}"
    )
    assert essence(result) == essence(reference)
    assert total.calls == ref_client.ledger.total().calls
    # every attempt is one request: litellm and the OpenAI SDK do not retry behind our back
    assert requests == total.calls + total.retries
    assert total.retries == sum(faults.values()) > 0
    assert total.failures == 0
    assert client.max_call_retries <= MAX_RETRIES
    assert set(faults) == set(FAULT_KINDS), faults
    usage = result.to_dict()["usage"]
    assert sum(u["retries"] for u in usage.values()) == total.retries


def test_summary_and_reports_count_retries_and_failures(pytester, monkeypatch, inline_ready):
    project = pytester.path / "proj"
    brain = write_project(
        project, settings={"max_steps": 2, "candidates": 2, "patience": 0}, timeout=TIMEOUT, retries=MAX_RETRIES
    )
    plan = FaultPlan(rate=FAULT_RATE, seed=3, retry_after=0.05)
    with LoopbackServer(answer=brain, latency=0.01, faults=plan, timeout_sleep=TIMEOUT + 0.5) as server:
        monkeypatch.setenv("OPRO_LOOP_URL", server.url)
        report = project / "report.json"
        result = pytester.runpytest_inprocess(
            str(project),
            "--rootdir",
            str(project),
            "-p",
            "no:cacheprovider",
            "--opro-optimize",
            f"--opro-report={report}",
        )
        faults = sum(server.fault_counts.values())
    assert result.ret == 0, result.stdout.str()
    (record,) = json.loads(report.read_text())["tasks"]
    assert record["usage"]["retries"] == faults > 0
    assert record["usage"]["failures"] == 0
    artifact = yaml.safe_load((project / "__opro__" / "alpha.yaml").read_text())
    assert artifact["run"]["retries"] == faults and artifact["run"]["failures"] == 0
    summary = result.stdout.str().split("= opro =")[-1]
    retried = re.compile(rf"\b{faults}\s+retr|retr\w*[ :=]+{faults}\b")
    failed = re.compile(r"\b0\s+fail|fail\w*[ :=]+0\b")
    assert retried.search(summary) and failed.search(summary), (
        "the terminal summary (report.summary_lines) must show e.g. '8 retries, 0 failed calls':\n" + summary
    )


def test_outage_stops_the_run_with_its_checkpoint_and_resume_completes(tmp_path):
    records = make_records(20, "o")
    brain = LoopBrain(records)
    with LoopbackServer(answer=brain, latency=0.01) as clean:
        reference, _ = run(clean, records, tmp_path, "reference")

    checkpoint = tmp_path / "ckpt" / "faulty.json"
    with LoopbackServer(answer=brain, latency=0.01) as server:

        def outage_after_step_one(report):
            if report.step == 1:
                server.faults = FaultPlan(rate=1.0, kinds=["503"])

        client = fast_client(cache=ResponseCache(tmp_path / "outage"))
        scorer = loop_model(server.url, "loop-scorer", max_retries=2)
        optimizer = loop_model(server.url, "loop-optimizer", max_retries=2)
        task = loop_task("faulty", records, scorer, optimizer)
        with pytest.raises(ProviderError) as info:
            optimize(task, client=client, checkpoint=checkpoint, on_step=outage_after_step_one)
        message = str(info.value)
        assert "2 of 2 optimizer calls failed after retries" in message
        assert "checkpointed" in message and "run again to resume" in message and "\n" not in message
        assert client.ledger.total().failures == 2
        saved = json.loads(checkpoint.read_text())
        assert saved["state"]["step"] == 1
        # no candidate of the failed step was kept, none was scored as wrong
        assert all(c["step"] <= 1 for c in saved["state"]["trajectory"])

        server.faults = FaultPlan()
        before = server.requests
        resumed = optimize(task, client=fast_client(cache=ResponseCache(tmp_path / "outage")), checkpoint=checkpoint)
        assert essence(resumed) == essence(reference)
        assert not checkpoint.exists()  # cleared once the result is complete
        assert server.requests - before > 0


def test_scorer_outage_stops_instead_of_scoring_failures_as_wrong(tmp_path):
    records = make_records(20, "s")
    brain = LoopBrain(records)
    with LoopbackServer(answer=brain) as opt_server, LoopbackServer(answer=brain) as score_server:
        score_server.faults = FaultPlan(rate=1.0, kinds=["500"])
        task = loop_task(
            "faulty",
            records,
            loop_model(score_server.url, "loop-scorer", max_retries=1),
            loop_model(opt_server.url, "loop-optimizer", max_retries=1),
        )
        checkpoint = tmp_path / "faulty.json"
        with pytest.raises(ProviderError, match=r"of \d+ scorer calls on train failed after retries"):
            optimize(task, client=fast_client(), cache=None, checkpoint=checkpoint)
        assert opt_server.requests == 0  # stopped at the baseline, before asking the optimizer
        assert not checkpoint.exists()  # nothing completed, nothing to resume


def test_failed_calls_are_left_out_of_the_mean_not_counted_wrong(tmp_path):
    records = make_records(30, "m")
    brain = LoopBrain(records)
    plan = FaultPlan(rate=0.3, kinds=["503"], seed=5)
    with LoopbackServer(answer=brain, faults=plan) as server:
        task = loop_task(
            "faulty",
            records,
            loop_model(server.url, "loop-scorer", max_retries=0),
            loop_model(server.url, "loop-optimizer"),
        )
        client = fast_client()
        perfect = "Answer step by step, carefully, double-check."
        examples = task.splits.train + task.splits.validation + task.splits.test
        (score,) = run_sync(score_instructions(task, client, task.scorer_config(), [perfect], examples))
    assert score.failures > 0 and score.n + score.failures == len(examples)
    assert score.value == 1.0  # every answer that came back is right; failures are not zeros
    assert len(score.outcomes) == score.n
    assert client.ledger.total().failures == score.failures


# -- the artifact is never half-written -------------------------------------------------------------
OLD = {
    "schema_version": 1,
    "task": "t",
    "instruction": "old",
    "position": "Q_begin",
    "scores": {"test": {"score": 0.5, "n": 2, "ci95": [0.1, 0.9]}},
    "test_outcomes": {"a": 1.0, "b": 0.0},
    "fingerprint": {"template": "x"},
}


def test_failed_rename_keeps_the_old_artifact_and_no_temp_file(tmp_path, monkeypatch):
    path = write_artifact(tmp_path / "t.yaml", OLD)
    before = path.read_bytes()

    def broken_replace(src, dst):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr("pytest_opro.opro.atomic.os.replace", broken_replace)
    with pytest.raises(OSError):
        write_artifact(path, {**OLD, "instruction": "new " * 10_000})
    assert path.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["t.yaml"]


def test_process_killed_while_writing_leaves_the_old_artifact(tmp_path):
    path = write_artifact(tmp_path / "t.yaml", OLD)
    before = path.read_bytes()
    script = textwrap.dedent(f"""
        import os, sys, time
        import pytest_opro.opro.atomic as atomic
        from pytest_opro.prompts.artifact import write_artifact

        def stall(src, dst):  # the new file is complete on disk; die before the rename
            print("ready", flush=True)
            time.sleep(60)

        atomic.os.replace = stall
        write_artifact({str(path)!r}, {{**{OLD!r}, "instruction": "new " * 100_000}})
    """)
    proc = subprocess.Popen(
        [sys.executable, "-c", script],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    try:
        assert proc.stdout.readline().strip() == "ready"
        proc.send_signal(signal.SIGKILL)
        assert proc.wait(30) == -signal.SIGKILL
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.stdout.close()
    assert path.read_bytes() == before
    assert load_artifact(path).instruction == "old"
    assert [p.name for p in tmp_path.glob("*.yaml")] == ["t.yaml"]  # the leftover is hidden and *.tmp
    leftovers = [p.name for p in tmp_path.iterdir() if p.name != "t.yaml"]
    assert all(name.startswith(".t.yaml.") and name.endswith(".tmp") for name in leftovers)
