"""The markdown report: a JSON report mapping (see ``docs/report-schema.md``) rendered for humans.

Everything here reads the plain data :func:`pytest_opro.reporting.json_report.json_report` builds, so the
markdown never says anything the JSON report does not.
"""

from __future__ import annotations

import re
from typing import Any

from pytest_opro.prompts.examples import SPLIT_NAMES

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
    for split in SPLIT_NAMES:
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
