"""The markdown report: a JSON report mapping (see ``docs/report-schema.md``) rendered for humans.

Everything here reads the plain data :func:`pytest_opro.reporting.json_report.json_report` builds, so the
markdown never says anything the JSON report does not.
"""

from __future__ import annotations

import html
import re
from typing import Any

from pytest_opro.prompts.splits import SPLIT_NAMES
from pytest_opro.reporting.outcome import collapse_notes, scope_hits
from pytest_opro.reporting.terminal import describe_racing

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
        "no gain": "optimised, the baseline was kept",
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
        row = (
            f"| {split} | {n if n is not None else '–'} | {_score_cell(b, interval=split == 'test')} "
            f"| {_score_cell(w, interval=split == 'test')} |"
        )
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
        graded = gate.get("test", "sign") == "permutation"
        down, up, test = ("lower", "higher", "permutation") if graded else ("right→wrong", "wrong→right", "sign")
        return (
            f"**Gate: {word}** ({gate['verdict']}). Test score {_pct(gate['recorded'])} → {_pct(gate['now'])}, "
            f"{gate['delta'] * 100:+.1f} points on n={gate['n']}; {len(gate['worse_ids'])} {down}, "
            f"{len(gate['better_ids'])} {up}; paired {test} test p={gate['p_value']:.3g}. "
            f"Fails when p < {gate['alpha']:g} and the drop exceeds {gate['tolerance'] * 100:g} points"
            + (f", or under the floor {gate['floor']:.0%}." if gate.get("floor") is not None else ".")
        )
    if entry["mode"] == "optimize":
        val_b = _score_cell(entry["scores"]["baseline"].get("validation"))
        val_w = _score_cell(entry["scores"]["winner"].get("validation"))
        where = f" `{entry['artifact']}`" if entry["artifact"] else ""
        reason = (entry.get("selection") or {}).get("reason")
        how = f" Selection: {md_text(reason)}." if reason else ""
        if entry["status"] == "written":
            return (
                f"**{word}**: the winner beat the baseline on validation ({val_b} → {val_w}) and was written "
                f"to{where}. No gate runs under --opro-optimize; plain `pytest` gates against it from now on.{how}"
            )
        if entry["status"] == "no gain":
            allowed = "accepted with --opro-allow-no-gain" if entry["ok"] else "the test fails"
            return (
                f"**{word}**: no candidate was significantly better than the baseline on validation ({val_b}); "
                f"the baseline was written to{where} ({allowed}).{how}"
            )
    return f"**{word}**: {_headline(entry)}."


def _run_line(entry: dict[str, Any]) -> str:
    u, run = entry["usage"], entry["run"]
    parts = [
        f"Calls {u['calls']} ({u['cache_hits']} cached"
        + (f": {md_text(scope_hits(u['cache_hits_by_scope']))})" if u.get("cache_hits_by_scope") else ")"),
        f"cost ${u['cost_usd']:.4f}",
        f"time {u['seconds']:.1f} s",
    ]
    if u["retries"] or u["failures"]:
        parts.append(f"{u['retries']} retries, {u['failures']} failed calls")
    line = " · ".join(parts)
    if run is not None and run.get("steps_run") is not None:
        rejected = sum(run["rejections"].values())
        proposals = run.get("proposals") or {}
        line += (
            f"  \nOptimisation: {run['steps_run']} steps, stopped: {md_text(run['stop_reason'])}; "
            f"winner from step {run['best_step']}"
            + (
                f"; {sum(proposals.values())} proposals ({md_text(', '.join(f'{k} {v}' for k, v in proposals.items()))})"
                if proposals
                else ""
            )
            + (
                f"; {rejected} candidates rejected ({md_text(', '.join(f'{k} {v}' for k, v in run['rejections'].items()))})"
                if rejected
                else ""
            )
            + (f"; racing: {describe_racing(run)}" if run.get("screened_out") or run.get("not_validated") else "")
            + (
                f"; optimizer {md_text(run['optimizer_model'])} → scorer {md_text(run['scorer_model'])}"
                if run.get("scorer_model")
                else ""
            )
            + "."
        )
    return line


def _candidates_table(entry: dict[str, Any]) -> list[str]:
    top = entry["top_candidates"]
    if not top:
        return []
    answers = any(c.get("top_answer") for c in top)
    lines = [
        "| # | step | train | validation | instruction |" + (" most common answer (validation) |" if answers else ""),
        "|---:|---:|---:|---:|---|" + ("---|" if answers else ""),
    ]
    for c in top:
        a = c.get("top_answer")
        answer = (f" {md_text(a['answer'], 30)} {a['count']}/{a['n']} |" if a else " – |") if answers else ""
        lines.append(
            f"| {c['rank']} | {c['step']} | {_pct(c['train'])} | {_pct(c['validation'])} | {md_text(c['text'], 100)} |"
            + answer
        )
    return lines


def task_markdown(entry: dict[str, Any]) -> str:
    """One task's section: verdict, scores, usage, the failure message, the instruction and top candidates."""
    out = [
        f"### {verdict_word(entry)} · {md_text(entry['task'])}: {md_text(_headline(entry))}",
        "",
        _verdict_line(entry),
        "",
    ]
    table = _scores_table(entry)
    if table:
        out += table + [""]
    out += [_run_line(entry), ""]
    kept = (entry.get("selection") or {}).get("kept_baseline")
    notes = collapse_notes(entry.get("collapse"), kept_baseline=kept, gate=(entry["gate"] or {}).get("collapse"))
    if notes:
        out += [f"- **{md_text(note.split(': ', 1)[0])}**: {md_text(note.split(': ', 1)[1])}" for note in notes] + [""]
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
        out += (
            [f"<details><summary>Top {len(entry['top_candidates'])} candidates{source}</summary>", ""]
            + cands
            + ["", "</details>", ""]
        )
    return "\n".join(out)


def comparison_table(entries: list[dict[str, Any]]) -> list[str]:
    """The model comparison (``--opro-compare-model``): one row per task and compared model, with the
    recorded model, both scores, the delta, the paired test's p-value, flipped examples and cost."""
    rows = [(e, c) for e in entries for c in e.get("comparisons") or []]
    if not rows:
        return []
    out = [
        "### Model comparison",
        "",
        "The committed instruction re-scored on the test split with another scorer model, paired with the "
        "recorded outcomes (the gate's test, tolerance and floor).",
        "",
        "| task | recorded model → model | test: recorded → now | delta | p-value | flipped | cost | verdict |",
        "|---|---|---|---:|---:|---:|---:|---|",
    ]
    for e, c in rows:
        models = f"{md_text(c['recorded_model'])} → {md_text(c['model'])}"
        if c.get("error") is not None:
            out.append(
                f"| {md_text(e['task'])} | {models} | – | – | – | – | ${c['cost_usd']:.4f} | "
                f"**error**: {md_text(c['error'], 200)} |"
            )
            continue
        verdict = ("**significant drop** " if c.get("significant_drop") else "") + md_text(str(c["verdict"]))
        out.append(
            f"| {md_text(e['task'])} | {models} | {_pct(c['recorded'])} → {_pct(c['now'])} | "
            f"{c['delta'] * 100:+.1f} pts | {c['p_value']:.3g} | {len(c['flipped'])} of {c['n']} | "
            f"${c['cost_usd']:.4f} | {verdict} |"
        )
    return out + [""]


def report_headline(report: dict[str, Any]) -> str:
    """The report's first line without the heading marks, e.g. ``pytest-opro: PASS, 3 prompt tasks gated``."""
    entries, summary, mode = report["tasks"], report["summary"], report["mode"]
    verb = "gated" if mode == "gate" else "optimised"
    if not entries:
        return f"pytest-opro: no prompt task ran ({mode} mode)"
    if summary["not_ok"]:
        return f"pytest-opro: FAIL, {summary['not_ok']} of {summary['tasks']} prompt tasks {verb} did not pass"
    return f"pytest-opro: PASS, {summary['tasks']} prompt task{'s' if summary['tasks'] != 1 else ''} {verb}"


def _settings_note(report: dict[str, Any]) -> str:
    settings = report.get("settings", {})
    return (
        f"pytest-opro {report['plugin_version']} · {report['mode']} mode · gate tolerance "
        f"{settings.get('tolerance', 0) * 100:g} points, alpha {settings.get('alpha', 0):g}"
    )


def markdown_from_report(report: dict[str, Any]) -> str:
    """The markdown report for a JSON report mapping (e.g. for ``$GITHUB_STEP_SUMMARY``)."""
    entries, mode = report["tasks"], report["mode"]
    out = [f"## {report_headline(report)}", ""]
    if entries:
        out += _summary_table(entries, mode) + [""]
    out += comparison_table(entries)
    for entry in entries:
        out.append(task_markdown(entry))
    out.append(f"<sub>{_settings_note(report)} · scores are the metric's mean on each split, intervals are 95%.</sub>")
    return "\n".join(out) + "\n"


#: GitHub refuses comments over 65,536 characters; the comment stays well under it.
COMMENT_LIMIT = 60_000
#: Longest failure message shown in full in a comment (the job summary always has all of it).
COMMENT_MESSAGE_LIMIT = 4_000
#: Most task rows in a comment's table; beyond it, only the tasks that did not pass are listed.
COMMENT_ROWS = 100


def _comment_row(entry: dict[str, Any]) -> str:
    p = "–" if entry["gate"] is None else f"{entry['gate']['p_value']:.3g}"
    return f"| {md_text(entry['task'])} | {_change_cell(entry)} | {p} | **{verdict_word(entry)}** {md_text(_headline(entry))} |"


def _comment_details(entry: dict[str, Any]) -> str:
    message = entry["message"] or "(the test gave no message)"
    if len(message) > COMMENT_MESSAGE_LIMIT:
        message = message[: COMMENT_MESSAGE_LIMIT - 1] + "…"
    summary = html.escape(f"{verdict_word(entry)} · {entry['task']}: {_headline(entry)}", quote=False)
    return "\n".join([f"<details><summary>{summary}</summary>", "", md_fence(message), "", "</details>", ""])


def comment_from_report(
    report: dict[str, Any], *, run_url: str | None = None, commit: str | None = None, artifact: str | None = None
) -> str:
    """The pull request comment for a JSON report mapping: the headline, one row per task (recorded → now,
    p-value, verdict), the failed tests' messages folded under ``<details>``, and a link to the run.

    Short by design: the full markdown report (:func:`markdown_from_report`) goes to the job summary.
    """
    entries, mode = report["tasks"], report["mode"]
    failed = [e for e in entries if not e["ok"]]
    out = [f"## {report_headline(report)}", ""]
    if entries:
        change = "test: recorded → now" if mode == "gate" else "test: baseline → winner"
        shown = entries if len(entries) <= COMMENT_ROWS else failed[:COMMENT_ROWS]
        if shown:
            out += [f"| task | {change} | p-value | verdict |", "|---|---|---:|---|"]
            out += [_comment_row(e) for e in shown] + [""]
        if len(shown) < len(entries):
            more = len(entries) - len(shown)
            out += [f"{more} {'more ' if shown else ''}tasks are listed in the job summary only.", ""]
        out += comparison_table(entries)
    tail = []
    where = []
    if commit:
        where.append(f"commit {md_text(commit[:12])}")
    if run_url:
        link = f"[workflow run]({run_url.replace(')', '%29').replace(' ', '%20')})"
        where.append(
            f"{link}: full report in its job summary"
            + (f", JSON report and plots in its artifact {md_text(artifact)}" if artifact else "")
        )
    if where:
        verb = "Gated" if mode == "gate" else "Optimised"
        tail += [f"{verb} {', '.join(where)}.", ""]
    tail.append(f"<sub>{_settings_note(report)}.</sub>")
    size = sum(len(line) + 1 for line in out + tail)
    for i, entry in enumerate(failed):
        block = _comment_details(entry)
        if size + len(block) > COMMENT_LIMIT:
            out += [f"{len(failed) - i} more failures: their messages are in the job summary.", ""]
            break
        out.append(block)
        size += len(block) + 1
    return "\n".join(out + tail) + "\n"
