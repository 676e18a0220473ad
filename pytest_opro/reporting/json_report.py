"""End-of-run work: report files (``--opro-report``), plots (``--opro-plot``), obsolete artifacts, exit status.

The JSON report is the source of truth: :func:`task_entry` turns one :class:`TaskRecord` into the
documented, versioned shape of ``docs/report-schema.md``; the markdown report
(:mod:`pytest_opro.reporting.markdown`) and the plots are rendered from those entries, so the three
never disagree.
"""

from __future__ import annotations

import datetime as _dt
import json
from pathlib import Path
from typing import Any, Sequence

from pytest_opro.opro.atomic import write_text_atomic
from pytest_opro.opro.mix import INITIAL, proposer_of
from pytest_opro.opro.stopping import StopReason
from pytest_opro.opro.trajectory import Candidate, best_distinct
from pytest_opro.prompts.artifact import proposal_counts, top_answer
from pytest_opro.prompts.splits import SPLIT_NAMES
from pytest_opro.reporting.outcome import TaskRecord, add_scope_hits, task_ok
from pytest_opro.reporting.terminal import racing_totals

REPORT_SCHEMA = "pytest-opro-report"
REPORT_SCHEMA_VERSION = 1
TOP_CANDIDATES = 5


# -- the machine-readable report ---------------------------------------------------------------
def json_report(
    records: Sequence[TaskRecord],
    rootpath: Path,
    *,
    optimize: bool,
    tolerance: float,
    alpha: float,
    allow_no_gain: bool = False,
    shard: tuple[int, int] | None = None,
) -> dict[str, Any]:
    """The whole report as plain data (see ``docs/report-schema.md``); `tolerance` in points.

    `shard` (K, N) marks the report of one ``--opro-shard K/N`` job."""
    from pytest_opro import __version__

    tasks = [task_entry(r, rootpath, allow_no_gain=allow_no_gain) for r in records]
    report = {
        "schema": REPORT_SCHEMA,
        "schema_version": REPORT_SCHEMA_VERSION,
        "plugin_version": __version__,
        "created": _dt.datetime.now(_dt.timezone.utc).replace(microsecond=0).isoformat(),
        "mode": "optimize" if optimize else "gate",
        "settings": {"tolerance": tolerance / 100.0, "alpha": alpha},
        "summary": _summary(tasks),
        "tasks": tasks,
    }
    if shard is not None:
        report["shard"] = {"index": int(shard[0]), "count": int(shard[1])}
    return report


def summarize(tasks: list[dict[str, Any]]) -> dict[str, Any]:
    """The ``summary`` block of a report with these task entries."""
    return _summary(tasks)


def _summary(tasks: list[dict[str, Any]]) -> dict[str, Any]:
    statuses: dict[str, int] = {}
    by_scope: dict[str, int] = {}
    for t in tasks:
        statuses[t["status"]] = statuses.get(t["status"], 0) + 1
        add_scope_hits(by_scope, t["usage"].get("cache_hits_by_scope") or {})
    summary = {
        "tasks": len(tasks),
        "ok": sum(1 for t in tasks if t["ok"]),
        "not_ok": sum(1 for t in tasks if not t["ok"]),
        "statuses": statuses,
        "calls": sum(t["usage"]["calls"] for t in tasks),
        "cache_hits": sum(t["usage"]["cache_hits"] for t in tasks),
        "cost_usd": sum(t["usage"]["cost_usd"] for t in tasks),
        "seconds": sum(t["usage"]["seconds"] for t in tasks),
    }
    if by_scope:  # a scoped Redis cache: which trust scope the hits came from
        summary["cache_hits_by_scope"] = dict(sorted(by_scope.items()))
    return summary


def _split_score(value: float, n: int, low: float, high: float, notes: dict[str, int] | None = None) -> dict[str, Any]:
    return {"value": value, "n": n, "ci_low": low, "ci_high": high, "notes": dict(notes or {})}


def _result_scores(scores: dict[str, Any]) -> dict[str, Any]:
    return {
        s: _split_score(v["value"], v["n"], v["ci_low"], v["ci_high"], v.get("notes"))
        for s, v in scores.items()
        if s in SPLIT_NAMES
    }


def _artifact_scores(scores: dict[str, Any]) -> dict[str, Any]:
    out = {}
    for split, block in (scores or {}).items():
        low, high = (block.get("ci95") or [None, None])[:2]
        out[split] = _split_score(block.get("score"), block.get("n"), low, high, block.get("notes"))
    return out


def _load_artifact_data(record: TaskRecord) -> dict[str, Any] | None:
    """The committed artifact a gate record was checked against, when it can be read."""
    if not record.artifact or not Path(record.artifact).exists():
        return None
    from pytest_opro.errors import OproError
    from pytest_opro.prompts.artifact import load_artifact

    try:
        return load_artifact(record.artifact).data
    except OproError:
        return None


def _relative(path: str, rootpath: Path) -> str | None:
    if not path:
        return None
    try:
        return Path(path).resolve().relative_to(rootpath.resolve()).as_posix()
    except ValueError:
        return Path(path).as_posix()


def task_entry(record: TaskRecord, rootpath: Path, *, allow_no_gain: bool = False) -> dict[str, Any]:
    """One task of the JSON report: scores, gate verdict, usage, run, top candidates and history."""
    entry: dict[str, Any] = {
        "task": record.task,
        "nodeid": record.nodeid,
        "mode": record.mode,
        "status": record.status,
        "ok": task_ok(record.status, allow_no_gain=allow_no_gain),
        "artifact": _relative(record.artifact, rootpath),
        "message": record.message,
        "instruction": record.instruction,
        "baseline_instruction": None,
        "scores": {"baseline": {}, "winner": {}},
        "gate": None,
        "usage": {
            "calls": record.calls,
            "cache_hits": record.cache_hits,
            "retries": record.retries,
            "failures": record.failures,
            "cost_usd": record.cost_usd,
            "seconds": record.seconds,
            "by_model": {},
            "by_role": {},
        },
        "run": None,
        "selection": None,
        "collapse": None,
        "top_candidates": [],
        "steps": [],
        "candidates": [],
        "comparisons": [dict(c) for c in record.comparisons],
    }
    if record.cache_hits_by_scope:  # a scoped Redis cache: hits per trust scope
        entry["usage"]["cache_hits_by_scope"] = dict(sorted(record.cache_hits_by_scope.items()))
    if record.result is not None:
        _fill_from_result(entry, record.result)
    elif record.mode == "gate":
        data = _load_artifact_data(record)
        if data is not None:
            _fill_from_artifact(entry, data)
    if record.decision is not None:
        entry["gate"] = _gate_block(record.decision, record.test_ci)
    return entry


def _fill_from_result(entry: dict[str, Any], result: dict[str, Any]) -> None:
    """An optimisation's entry: everything comes from its result (``Result.to_dict()``)."""
    entry["baseline_instruction"] = result["baseline_instruction"]
    entry["scores"] = {
        "baseline": _result_scores(result["baseline_scores"]),
        "winner": _result_scores(result["scores"]),
    }
    entry["usage"]["by_model"] = result.get("usage", {})
    entry["usage"]["by_role"] = result.get("usage_by_role") or {}
    entry["run"] = _run_block(
        result["steps_run"],
        result["best_step"],
        result["stop_reason"],
        result["rejections"],
        result.get("settings", {}),
        result.get("scorer"),
        result.get("optimizer"),
        proposal_counts(result["trajectory"]),
        result.get("reports", []),
    )
    entry["candidates"] = [
        {
            **{
                k: c.get(k)
                for k in (
                    "step",
                    "text",
                    "train",
                    "validation",
                    "rejection",
                    "train_n",
                    "validation_n",
                    "partial_train",
                )
            },
            "top_answer": top_answer(c),
            "proposer": proposer_of(c.get("proposer"), c.get("step")),
        }
        for c in result["trajectory"]
    ]
    entry["selection"] = result.get("selection")
    entry["collapse"] = result.get("collapse")
    entry["steps"] = list(result.get("reports", []))
    entry["top_candidates"] = _top_from_trajectory(result["trajectory"])


def _fill_from_artifact(entry: dict[str, Any], data: dict[str, Any]) -> None:
    """A gate's entry: what the committed artifact recorded of its optimisation."""
    baseline = data.get("baseline") or {}
    run = data.get("run") or {}
    entry["baseline_instruction"] = baseline.get("instruction")
    entry["scores"] = {
        "baseline": _artifact_scores(baseline.get("scores", {})),
        "winner": _artifact_scores(data.get("scores", {})),
    }
    entry["run"] = _run_block(
        run.get("steps_run"),
        run.get("best_step"),
        run.get("stop_reason"),
        run.get("rejections") or {},
        data.get("optimizer_settings") or {},
        data.get("scorer"),
        data.get("optimizer"),
        run.get("proposals") or {},
    )
    entry["top_candidates"] = [
        {
            "rank": i + 1,
            **{k: c.get(k) for k in ("step", "text", "train", "validation", "top_answer", "train_n", "validation_n")},
        }
        for i, c in enumerate((data.get("top_candidates") or [])[:TOP_CANDIDATES])
    ]
    entry["selection"] = data.get("selection")
    entry["collapse"] = data.get("collapse")
    base_scores = entry["scores"]["baseline"]
    baseline_point = {
        "step": 0,
        "text": baseline.get("instruction") or "",
        "train": (base_scores.get("train") or {}).get("value"),
        "validation": (base_scores.get("validation") or {}).get("value"),
        "rejection": None,
        "proposer": INITIAL,
    }
    entry["candidates"] = [baseline_point] if baseline_point["train"] is not None else []
    entry["candidates"] += [
        {
            **{k: c.get(k) for k in ("step", "text", "train", "validation")},
            "rejection": None,
            "proposer": proposer_of(c.get("proposer"), c.get("step")),
        }
        for c in data.get("top_candidates") or []
    ]


def _gate_block(d: dict[str, Any], test_ci: Any) -> dict[str, Any]:
    """The gate's verdict and the test behind it."""
    return {
        "verdict": d["verdict"],
        "passed": d["passed"],
        "recorded": d["recorded"],
        "now": d["now"],
        "now_ci": list(test_ci) if test_ci else None,
        "delta": d["delta"],
        "p_value": d["p_value"],
        "n": d["n"],
        "tolerance": d["tolerance"],
        "alpha": d["alpha"],
        "floor": d["floor"],
        "worse_ids": list(d["worse_ids"]),
        "better_ids": list(d["better_ids"]),
        "test": d.get("test", "sign"),
        "resamples": d.get("resamples", 0),
        "notes": dict(d.get("notes") or {}),
        "collapse": d.get("collapse"),
        "samples": d.get("samples", 1),
        "aggregate": d.get("aggregate", "mean"),
    }


def _run_block(
    steps_run: Any,
    best_step: Any,
    stop_reason: Any,
    rejections: dict[str, int],
    settings: dict[str, Any],
    scorer: Any,
    optimizer: Any,
    proposals: dict[str, int],
    reports: Sequence[dict[str, Any]] | None = None,
) -> dict[str, Any]:
    reason = stop_reason or ""
    racing = racing_totals(reports) if reports is not None else None
    return {
        "steps_run": steps_run,
        "best_step": best_step,
        "stop_reason": reason,
        "early_stopped": reason == StopReason.NO_GAIN.text(settings.get("patience")),
        "rejections": dict(rejections),
        "proposals": dict(proposals),
        "patience": settings.get("patience"),
        "max_steps": settings.get("max_steps"),
        "scorer_model": (scorer or {}).get("model"),
        "optimizer_model": (optimizer or {}).get("model"),
        "screening": settings.get("screening"),
        "screened_out": None if racing is None else racing["screened_out"],
        "not_validated": None if racing is None else racing["not_validated"],
        "calls_saved": None if racing is None else racing["calls_saved"],
    }


def _top_from_trajectory(trajectory: list[dict[str, Any]], k: int = TOP_CANDIDATES) -> list[dict[str, Any]]:
    """Best distinct scored candidates, best first: validation, then train, then earlier step."""
    best = best_distinct((Candidate.from_dict(c) for c in trajectory), k)
    return [
        {
            "rank": i,
            "step": c.step,
            "text": c.text,
            "train": c.train,
            "validation": c.validation,
            "top_answer": top_answer(c.to_dict()),
            "train_n": c.train_n,
            "validation_n": c.validation_n,
        }
        for i, c in enumerate(best, 1)
    ]


# -- writing -----------------------------------------------------------------------------------
def write_report(report: dict[str, Any], path: Path) -> None:
    """Write `report` to `path`: ``.json`` machine-readable, anything else markdown."""
    if path.suffix == ".json":
        write_text_atomic(path, json.dumps(report, indent=2, ensure_ascii=False) + "\n")
    else:
        from pytest_opro.reporting.markdown import markdown_from_report

        write_text_atomic(path, markdown_from_report(report))
