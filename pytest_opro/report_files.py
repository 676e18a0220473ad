"""End-of-run work: report files (``--opro-report``), plots (``--opro-plot``), obsolete artifacts, exit status.

The JSON report is the source of truth: :func:`task_entry` turns one :class:`TaskRecord` into the
documented, versioned shape of ``docs/report-schema.md``; the markdown report and the plots are
rendered from those entries, so the three never disagree.
"""

from __future__ import annotations

import datetime as _dt
import json
import re
from pathlib import Path
from typing import Any

import pytest

from .atomic import write_text_atomic
from .session import OproSession, TaskRecord

REPORT_SCHEMA = "pytest-opro-report"
REPORT_SCHEMA_VERSION = 1
TOP_CANDIDATES = 5
SPLITS = ("train", "validation", "test")
OK_STATUSES = ("written", "passed")


# -- the machine-readable report ---------------------------------------------------------------
def json_report(session: OproSession) -> dict[str, Any]:
    """The whole report as plain data (see ``docs/report-schema.md``)."""
    from . import __version__

    tasks = [task_entry(r, session.rootpath, allow_no_gain=bool(session.options.allow_no_gain)) for r in session.records]
    return {
        "schema": REPORT_SCHEMA,
        "schema_version": REPORT_SCHEMA_VERSION,
        "plugin_version": __version__,
        "created": _dt.datetime.now(_dt.timezone.utc).replace(microsecond=0).isoformat(),
        "mode": "optimize" if session.options.optimize else "gate",
        "settings": {"tolerance": session.options.tolerance / 100.0, "alpha": session.options.alpha},
        "summary": _summary(tasks),
        "tasks": tasks,
    }


def _summary(tasks: list[dict[str, Any]]) -> dict[str, Any]:
    statuses: dict[str, int] = {}
    for t in tasks:
        statuses[t["status"]] = statuses.get(t["status"], 0) + 1
    return {
        "tasks": len(tasks),
        "ok": sum(1 for t in tasks if t["ok"]),
        "not_ok": sum(1 for t in tasks if not t["ok"]),
        "statuses": statuses,
        "calls": sum(t["usage"]["calls"] for t in tasks),
        "cache_hits": sum(t["usage"]["cache_hits"] for t in tasks),
        "cost_usd": sum(t["usage"]["cost_usd"] for t in tasks),
        "seconds": sum(t["usage"]["seconds"] for t in tasks),
    }


def _split_score(value: float, n: int, low: float, high: float) -> dict[str, Any]:
    return {"value": value, "n": n, "ci_low": low, "ci_high": high}


def _result_scores(scores: dict[str, Any]) -> dict[str, Any]:
    return {s: _split_score(v["value"], v["n"], v["ci_low"], v["ci_high"]) for s, v in scores.items() if s in SPLITS}


def _artifact_scores(scores: dict[str, Any]) -> dict[str, Any]:
    out = {}
    for split, block in (scores or {}).items():
        low, high = (block.get("ci95") or [None, None])[:2]
        out[split] = _split_score(block.get("score"), block.get("n"), low, high)
    return out


def _load_artifact_data(record: TaskRecord) -> dict[str, Any] | None:
    """The committed artifact a gate record was checked against, when it can be read."""
    if not record.artifact or not Path(record.artifact).exists():
        return None
    from .artifact import load_artifact
    from .errors import OproError

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
        "ok": record.status in OK_STATUSES or (record.status == "no gain" and allow_no_gain),
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
        },
        "run": None,
        "top_candidates": [],
        "steps": [],
        "candidates": [],
    }
    result = record.result
    if result is not None:
        entry["baseline_instruction"] = result["baseline_instruction"]
        entry["scores"] = {
            "baseline": _result_scores(result["baseline_scores"]),
            "winner": _result_scores(result["scores"]),
        }
        entry["usage"]["by_model"] = result.get("usage", {})
        entry["run"] = _run_block(result["steps_run"], result["best_step"], result["stop_reason"], result["rejections"],
                                  result.get("settings", {}), result.get("scorer"), result.get("optimizer"))
        entry["candidates"] = [
            {k: c.get(k) for k in ("step", "text", "train", "validation", "rejection")} for c in result["trajectory"]
        ]
        entry["steps"] = list(result.get("reports", []))
        entry["top_candidates"] = _top_from_trajectory(result["trajectory"])
    elif record.mode == "gate":
        data = _load_artifact_data(record)
        if data is not None:
            baseline = data.get("baseline") or {}
            run = data.get("run") or {}
            entry["baseline_instruction"] = baseline.get("instruction")
            entry["scores"] = {
                "baseline": _artifact_scores(baseline.get("scores", {})),
                "winner": _artifact_scores(data.get("scores", {})),
            }
            entry["run"] = _run_block(run.get("steps_run"), run.get("best_step"), run.get("stop_reason"),
                                      run.get("rejections") or {}, data.get("optimizer_settings") or {},
                                      data.get("scorer"), data.get("optimizer"))
            entry["top_candidates"] = [
                {"rank": i + 1, **{k: c.get(k) for k in ("step", "text", "train", "validation")}}
                for i, c in enumerate((data.get("top_candidates") or [])[:TOP_CANDIDATES])
            ]
            base_scores = entry["scores"]["baseline"]
            baseline_point = {
                "step": 0,
                "text": baseline.get("instruction") or "",
                "train": (base_scores.get("train") or {}).get("value"),
                "validation": (base_scores.get("validation") or {}).get("value"),
                "rejection": None,
            }
            entry["candidates"] = [baseline_point] if baseline_point["train"] is not None else []
            entry["candidates"] += [
                {**{k: c.get(k) for k in ("step", "text", "train", "validation")}, "rejection": None}
                for c in data.get("top_candidates") or []
            ]
    if record.decision is not None:
        d = record.decision
        entry["gate"] = {
            "verdict": d["verdict"],
            "passed": d["passed"],
            "recorded": d["recorded"],
            "now": d["now"],
            "now_ci": list(record.test_ci) if record.test_ci else None,
            "delta": d["delta"],
            "p_value": d["p_value"],
            "n": d["n"],
            "tolerance": d["tolerance"],
            "alpha": d["alpha"],
            "floor": d["floor"],
            "worse_ids": list(d["worse_ids"]),
            "better_ids": list(d["better_ids"]),
        }
    return entry


def _run_block(steps_run: Any, best_step: Any, stop_reason: Any, rejections: dict[str, int], settings: dict[str, Any],
               scorer: Any, optimizer: Any) -> dict[str, Any]:
    reason = stop_reason or ""
    return {
        "steps_run": steps_run,
        "best_step": best_step,
        "stop_reason": reason,
        "early_stopped": reason.startswith("early stop"),
        "rejections": dict(rejections),
        "patience": settings.get("patience"),
        "max_steps": settings.get("max_steps"),
        "scorer_model": (scorer or {}).get("model"),
        "optimizer_model": (optimizer or {}).get("model"),
    }


def _top_from_trajectory(trajectory: list[dict[str, Any]], k: int = TOP_CANDIDATES) -> list[dict[str, Any]]:
    """Best distinct scored candidates, best first: validation, then train, then earlier step."""
    scored = [c for c in trajectory if c.get("rejection") is None and c.get("train") is not None]
    scored.sort(key=lambda c: (-(c["validation"] if c.get("validation") is not None else -1.0), -c["train"], c["step"]))
    out: list[dict[str, Any]] = []
    seen: set[str] = set()
    for c in scored:
        key = " ".join(c["text"].split()).casefold()
        if key in seen:
            continue
        seen.add(key)
        out.append({"rank": len(out) + 1, **{k2: c.get(k2) for k2 in ("step", "text", "train", "validation")}})
        if len(out) == k:
            break
    return out


# -- markdown ----------------------------------------------------------------------------------
_MD_ESCAPE = re.compile(r"([\\`*_{}\[\]()<>#+!|~])")


def md_text(text: str, width: int | None = None) -> str:
    """`text` on one line, safe inside markdown and table cells: no links, images, HTML or pipes."""
    flat = " ".join(str(text).split()) or "(empty)"
    if width is not None and len(flat) > width:
        flat = flat[: width - 1] + "…"
    return _MD_ESCAPE.sub(r"\\\1", flat.replace("&", "&amp;"))


def md_fence(text: str, info: str = "text") -> str:
    """A fenced block that `text` cannot break out of (the fence outgrows any backtick run inside)."""
    longest = max((len(m) for m in re.findall(r"`+", text)), default=0)
    fence = "`" * max(3, longest + 1)
    return f"{fence}{info}\n{text if text else '(empty)'}\n{fence}"


def _pct(value: float | None) -> str:
    return "–" if value is None else f"{value:.1%}"


def _score_cell(score: dict[str, Any] | None, *, interval: bool = False) -> str:
    if not score or score.get("value") is None:
        return "–"
    text = _pct(score["value"])
    if interval and score.get("ci_low") is not None:
        text += f" ({score['ci_low']:.0%}–{score['ci_high']:.0%})"
    return text


def verdict_word(entry: dict[str, Any]) -> str:
    """PASS or FAIL: whether this task's test passed."""
    return "PASS" if entry["ok"] else "FAIL"


def _headline(entry: dict[str, Any]) -> str:
    gate, status = entry["gate"], entry["status"]
    if gate is not None:
        return {
            "regression": "accuracy dropped",
            "below floor": "score under the floor",
            "improved": "accuracy improved",
            "pass": "no significant change",
        }.get(gate["verdict"], gate["verdict"])
    return {
        "written": "optimised, artifact written",
        "no gain": "optimised, no candidate beat the baseline",
        "missing": "no committed artifact",
        "stale": "artifact is stale",
        "error": "error",
    }.get(status, status)


def _change_cell(entry: dict[str, Any]) -> str:
    scores, gate = entry["scores"], entry["gate"]
    if gate is not None:
        return f"{_pct(gate['recorded'])} → {_pct(gate['now'])} ({gate['delta'] * 100:+.1f} pts)"
    base, win = scores["baseline"].get("test"), scores["winner"].get("test")
    if base and win:
        return f"{_pct(base['value'])} → {_pct(win['value'])}"
    return "–"


def _summary_table(entries: list[dict[str, Any]], mode: str) -> list[str]:
    change = "test: recorded → now" if mode == "gate" else "test: baseline → winner"
    lines = [
        f"| task | verdict | {change} | p-value | calls | cost | time |",
        "|---|---|---|---:|---:|---:|---:|",
    ]
    for e in entries:
        p = "–" if e["gate"] is None else f"{e['gate']['p_value']:.3g}"
        u = e["usage"]
        lines.append(
            f"| {md_text(e['task'])} | **{verdict_word(e)}** {md_text(_headline(e))} | {_change_cell(e)} | {p} "
            f"| {u['calls']} | ${u['cost_usd']:.4f} | {u['seconds']:.1f} s |"
        )
    return lines


def _scores_table(entry: dict[str, Any]) -> list[str]:
    base, win, gate = entry["scores"]["baseline"], entry["scores"]["winner"], entry["gate"]
    if not base and not win:
        return []
    winner = "committed (recorded)" if entry["mode"] == "gate" else "winner"
    head = f"| split | n | baseline | {winner} |" + (" now |" if gate else "")
    rule = "|---|---:|---:|---:|" + ("---:|" if gate else "")
    lines = [head, rule]
    for split in SPLITS:
        b, w = base.get(split), win.get(split)
        if not b and not w:
            continue
        n = (w or b).get("n")
        row = f"| {split} | {n if n is not None else '–'} | {_score_cell(b, interval=split == 'test')} " \
              f"| {_score_cell(w, interval=split == 'test')} |"
        if gate:
            now = "–"
            if split == "test":
                ci = gate.get("now_ci")
                now = _pct(gate["now"]) + (f" ({ci[0]:.0%}–{ci[1]:.0%})" if ci else "")
            row += f" {now} |"
        lines.append(row)
    return lines


def _verdict_line(entry: dict[str, Any]) -> str:
    gate = entry["gate"]
    word = verdict_word(entry)
    if gate is not None:
        return (
            f"**Gate: {word}** ({gate['verdict']}). Test score {_pct(gate['recorded'])} → {_pct(gate['now'])}, "
            f"{gate['delta'] * 100:+.1f} points on n={gate['n']}; {len(gate['worse_ids'])} right→wrong, "
            f"{len(gate['better_ids'])} wrong→right; paired sign test p={gate['p_value']:.3g}. "
            f"Fails when p < {gate['alpha']:g} and the drop exceeds {gate['tolerance'] * 100:g} points"
            + (f", or under the floor {gate['floor']:.0%}." if gate.get("floor") is not None else ".")
        )
    if entry["mode"] == "optimize":
        val_b = _score_cell(entry["scores"]["baseline"].get("validation"))
        val_w = _score_cell(entry["scores"]["winner"].get("validation"))
        where = f" `{entry['artifact']}`" if entry["artifact"] else ""
        if entry["status"] == "written":
            return (f"**{word}**: the winner beat the baseline on validation ({val_b} → {val_w}) and was written "
                    f"to{where}. No gate runs under --opro-optimize; plain `pytest` gates against it from now on.")
        if entry["status"] == "no gain":
            allowed = "accepted with --opro-allow-no-gain" if entry["ok"] else "the test fails"
            return (f"**{word}**: no candidate beat the baseline on validation ({val_b}); the baseline was written "
                    f"to{where} ({allowed}).")
    return f"**{word}**: {_headline(entry)}."


def _run_line(entry: dict[str, Any]) -> str:
    u, run = entry["usage"], entry["run"]
    parts = [f"Calls {u['calls']} ({u['cache_hits']} cached)", f"cost ${u['cost_usd']:.4f}", f"time {u['seconds']:.1f} s"]
    if u["retries"] or u["failures"]:
        parts.append(f"{u['retries']} retries, {u['failures']} failed calls")
    line = " · ".join(parts)
    if run is not None and run.get("steps_run") is not None:
        rejected = sum(run["rejections"].values())
        line += (
            f"  \nOptimisation: {run['steps_run']} steps, stopped: {md_text(run['stop_reason'])}; "
            f"winner from step {run['best_step']}"
            + (f"; {rejected} candidates rejected ({md_text(', '.join(f'{k} {v}' for k, v in run['rejections'].items()))})"
               if rejected else "")
            + (f"; optimizer {md_text(run['optimizer_model'])} → scorer {md_text(run['scorer_model'])}"
               if run.get("scorer_model") else "")
            + "."
        )
    return line


def _candidates_table(entry: dict[str, Any]) -> list[str]:
    top = entry["top_candidates"]
    if not top:
        return []
    lines = ["| # | step | train | validation | instruction |", "|---:|---:|---:|---:|---|"]
    for c in top:
        lines.append(
            f"| {c['rank']} | {c['step']} | {_pct(c['train'])} | {_pct(c['validation'])} | {md_text(c['text'], 100)} |"
        )
    return lines


def task_markdown(entry: dict[str, Any]) -> str:
    """One task's section: verdict, scores, usage, the failure message, the instruction and top candidates."""
    out = [f"### {verdict_word(entry)} · {md_text(entry['task'])}: {md_text(_headline(entry))}", "", _verdict_line(entry), ""]
    table = _scores_table(entry)
    if table:
        out += table + [""]
    out += [_run_line(entry), ""]
    if not entry["ok"] and entry["message"]:
        out += ["The failed test says:", "", md_fence(entry["message"]), ""]
    label = "Committed instruction" if entry["mode"] == "gate" else "Winning instruction"
    if entry["instruction"] or entry["mode"] != "error":
        where = f" (`{entry['artifact']}`)" if entry["artifact"] else ""
        if entry["status"] not in ("missing",):
            out += [f"{label}{where}:", "", md_fence(entry["instruction"]), ""]
    cands = _candidates_table(entry)
    if cands:
        source = " (kept in the artifact)" if entry["mode"] == "gate" else ""
        out += [f"<details><summary>Top {len(entry['top_candidates'])} candidates{source}</summary>", ""] + cands + ["", "</details>", ""]
    return "\n".join(out)


def markdown_from_report(report: dict[str, Any]) -> str:
    """The markdown report for a JSON report mapping (e.g. for ``$GITHUB_STEP_SUMMARY``)."""
    entries, summary, mode = report["tasks"], report["summary"], report["mode"]
    verb = "gated" if mode == "gate" else "optimised"
    if not entries:
        head = f"## pytest-opro: no prompt task ran ({mode} mode)"
    elif summary["not_ok"]:
        head = f"## pytest-opro: FAIL, {summary['not_ok']} of {summary['tasks']} prompt tasks {verb} did not pass"
    else:
        head = f"## pytest-opro: PASS, {summary['tasks']} prompt task{'s' if summary['tasks'] != 1 else ''} {verb}"
    out = [head, ""]
    if entries:
        out += _summary_table(entries, mode) + [""]
    for entry in entries:
        out.append(task_markdown(entry))
    settings = report.get("settings", {})
    out.append(
        f"<sub>pytest-opro {report['plugin_version']} · {mode} mode · gate tolerance "
        f"{settings.get('tolerance', 0) * 100:g} points, alpha {settings.get('alpha', 0):g} · "
        f"scores are the metric's mean on each split, intervals are 95%.</sub>"
    )
    return "\n".join(out) + "\n"


def markdown_report(session: OproSession) -> str:
    """A markdown report for humans (e.g. ``$GITHUB_STEP_SUMMARY`` or a pull request body)."""
    return markdown_from_report(json_report(session))


# -- writing -----------------------------------------------------------------------------------
def write_report(session: OproSession, path: Path) -> None:
    """Write the report to `path`: ``.json`` machine-readable, anything else markdown."""
    report = json_report(session)
    if path.suffix == ".json":
        write_text_atomic(path, json.dumps(report, indent=2, ensure_ascii=False) + "\n")
    else:
        write_text_atomic(path, markdown_from_report(report))


def finish_run(session: OproSession, deselected: int) -> tuple[list[str], int | None]:
    """Notes for the terminal summary and an exit status to set (None: leave pytest's)."""
    notes: list[str] = []
    status: int | None = None
    if session.options.optimize and not session.records and not session.used:
        notes.append("opro: --opro-optimize ran but no test called opro.check(task): no prompt task was selected")
        status = pytest.ExitCode.NO_TESTS_COLLECTED
    if deselected == 0 and session.records:
        for path in session.obsolete_artifacts():
            notes.append(f"opro: obsolete artifact {path}: no task of that name ran; delete it if the task is gone")
    if session.options.report:
        path = Path(session.options.report)
        write_report(session, path)
        notes.append(f"opro: report written to {path}")
    if session.options.plot:
        from .plot import plot_report

        directory = Path(session.options.plot)
        written = plot_report(json_report(session), directory)
        if written:
            notes.append(f"opro: {len(written)} plot{'s' if len(written) != 1 else ''} written to {directory}")
        else:
            notes.append(f"opro: no plot written to {directory}: no task had an optimisation history")
    return notes, status


def main(argv: list[str] | None = None) -> int:
    """``python -m pytest_opro.report_files REPORT.json [OUT.md]``: markdown from a saved JSON report.

    Without OUT.md the markdown goes to standard output, e.g. ``>> "$GITHUB_STEP_SUMMARY"``.
    """
    import sys

    args = list(sys.argv[1:] if argv is None else argv)
    if len(args) not in (1, 2):
        print("usage: python -m pytest_opro.report_files REPORT.json [OUT.md]", file=sys.stderr)
        return 2
    report = json.loads(Path(args[0]).read_text(encoding="utf-8"))
    version = report.get("schema_version")
    if report.get("schema") != REPORT_SCHEMA or not isinstance(version, int) or version > REPORT_SCHEMA_VERSION:
        print(f"{args[0]}: not a pytest-opro report this version reads (schema_version {version!r}); "
              "upgrade with: pip install -U pytest-opro", file=sys.stderr)
        return 1
    text = markdown_from_report(report)
    if len(args) == 2:
        write_text_atomic(Path(args[1]), text)
    else:
        sys.stdout.write(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
