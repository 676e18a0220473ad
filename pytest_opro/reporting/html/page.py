"""The HTML report: one self-contained page (inline CSS, JS and SVG) per run, rendered from the JSON
report's task entries and each task's example table.

Everything that came from a task or a model (inputs, targets, replies, instructions, messages) is a
variable of a Jinja2 template with autoescape on; it is never template source. The data the page's
script reads is embedded as JSON with ``<``, ``>`` and ``&`` escaped, so no text can close the
script element or open a comment. The page makes no request: no CDN, no web font, no image file.
"""

from __future__ import annotations

import base64
import hashlib
import json
import math
import re
from importlib import resources
from pathlib import Path
from typing import Any, Sequence

import jinja2
from markupsafe import Markup

from pytest_opro.opro.atomic import write_text_atomic
from pytest_opro.prompts.splits import SPLIT_NAMES
from pytest_opro.reporting.outcome import collapse_notes
from pytest_opro.reporting.terminal import describe_racing

#: Replies and inputs longer than this (characters) are folded behind their first line.
FOLD_OVER = 400
#: The trajectory plot's size in SVG units.
PLOT_W, PLOT_H, PLOT_PAD = 720, 240, 40
#: Blocks that later report fields add to a task entry, shown as key/value tables when present.
EXTRA_SECTIONS = {"samples": "Repeated samples", "comparison": "Model comparison"}
_SELECTION_KNOWN = ("kept_baseline", "reason", "split", "comparisons", "alpha", "correction", "min_delta")
_CHOSEN_KEYS = ("step", "score", "gain", "better", "worse", "n", "p_value", "adjusted_p", "method")


def json_for_script(data: Any) -> Markup:
    """`data` as JSON that is safe inside ``<script type="application/json">``: no ``</``, no ``<!--``."""
    text = json.dumps(data, ensure_ascii=False, allow_nan=False, default=str)
    for raw, escaped in (
        ("&", "\\u0026"),
        ("<", "\\u003c"),
        (">", "\\u003e"),
        ("\u2028", "\\u2028"),
        ("\u2029", "\\u2029"),
    ):
        text = text.replace(raw, escaped)
    return Markup(text)


def fold(text: Any, limit: int = FOLD_OVER) -> Markup:
    """`text` in a ``<pre>``; past `limit` characters, folded behind its start (``<details>``, no JS needed)."""
    text = str(text)
    if len(text) <= limit:
        return Markup('<pre class="out">{}</pre>').format(text)
    head = text[:160].split("\n", 1)[0]
    return Markup(
        '<details class="fold"><summary><span>{}</span> … ({:,} characters)</summary><pre class="out">{}</pre></details>'
    ).format(head, len(text), text)


def csp_hash(text: str) -> str:
    """The Content-Security-Policy source that allows exactly this inline script or style."""
    return "'sha256-" + base64.b64encode(hashlib.sha256(text.encode("utf-8")).digest()).decode("ascii") + "'"


def _asset(name: str) -> str:
    return resources.files(__package__).joinpath(name).read_text(encoding="utf-8")


def _environment() -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.FunctionLoader(lambda name: _asset(name)),
        autoescape=True,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters["pct"] = _pct
    env.filters["num"] = _num
    return env


def _pct(value: Any, digits: int = 1) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "–"
    return f"{float(value):.{digits}%}"


def _num(value: Any) -> str:
    if value is None:
        return "–"
    if isinstance(value, float):
        return f"{value:.3g}"
    return str(value)


def status_word(entry: dict[str, Any]) -> str:
    """pass / fail / improved / no gain / stale / missing / error: what happened to the task, in a word."""
    gate, status = entry.get("gate"), entry["status"]
    if gate is not None:
        return "improved" if gate["verdict"] == "improved" else ("pass" if gate["passed"] else "fail")
    return {"written": "improved", "no gain": "no gain", "passed": "pass", "failed": "fail"}.get(status, status)


def _score_rows(entry: dict[str, Any]) -> list[dict[str, Any]]:
    scores, gate = entry["scores"], entry.get("gate")
    rows = []
    for split in SPLIT_NAMES:
        base, win = scores["baseline"].get(split), scores["winner"].get(split)
        if base or win:
            rows.append({"split": split, "baseline": base, "winner": win})
    if gate is not None:
        low, high = gate.get("now_ci") or (None, None)
        rows.append(
            {
                "split": "test, now",
                "baseline": None,
                "winner": {"value": gate["now"], "n": gate["n"], "ci_low": low, "ci_high": high},
            }
        )
    return rows


def _selection(selection: dict[str, Any] | None) -> dict[str, Any] | None:
    if not selection:
        return None
    rows = []
    for who in ("chosen", "best"):
        block = selection.get(who)
        if block:
            rows.append({"who": who, **{k: block.get(k) for k in _CHOSEN_KEYS}})
    extra = {
        k: v
        for k, v in selection.items()
        if k not in _SELECTION_KNOWN and k not in ("chosen", "best") and not isinstance(v, (dict, list))
    }
    rule = (
        f"paired test on {selection.get('split', 'validation')}, {selection.get('correction') or 'no'} correction "
        f"over {selection.get('comparisons')} compared, alpha {selection.get('alpha')}"
    )
    if selection.get("min_delta"):
        rule += f", smallest gain {_pct(selection['min_delta'])}"
    return {
        "kept_baseline": selection.get("kept_baseline"),
        "reason": selection.get("reason") or "",
        "rule": rule,
        "rows": rows,
        "extra": extra,
    }


def trajectory_plot(entry: dict[str, Any]) -> dict[str, Any] | None:
    """Points of the inline SVG: every candidate's train and validation score per step, winner marked."""
    candidates = [
        c for c in entry.get("candidates") or [] if c.get("train") is not None or c.get("validation") is not None
    ]
    if not candidates:
        return None
    last = max(int(c.get("step") or 0) for c in candidates)
    span = max(last, 1)
    inner_w, inner_h = PLOT_W - 2 * PLOT_PAD, PLOT_H - 2 * PLOT_PAD

    def x(step: int, offset: float = 0.0) -> float:
        return round(PLOT_PAD + inner_w * step / span + offset, 1)

    def y(value: float) -> float:
        return round(PLOT_PAD + inner_h * (1 - value), 1)

    run = entry.get("run") or {}
    best_step = run.get("best_step")
    winner_text = entry.get("instruction") or ""
    per_step: dict[int, int] = {}
    points = []
    winner = None
    for c in candidates:
        step = int(c.get("step") or 0)
        slot = per_step.get(step, 0)
        per_step[step] = slot + 1
        offset = ((slot % 9) - 4) * 2.0
        label = (
            f"step {step} · {c.get('proposer') or ''} · train {_pct(c.get('train'))} · "
            f"validation {_pct(c.get('validation'))}\n{c.get('text') or ''}"
        )
        point: dict[str, Any] = {"label": label}
        if c.get("train") is not None:
            point["train"] = (x(step, offset), y(float(c["train"])))
        if c.get("validation") is not None:
            point["validation"] = (x(step, offset), y(float(c["validation"])))
        points.append(point)
        if winner is None and c.get("text") == winner_text and (best_step is None or step == best_step):
            if "validation" in point or "train" in point:
                winner = {**point, "at": point.get("validation") or point.get("train")}
    ticks = sorted({0, last} | set(range(0, last + 1, max(1, math.ceil(span / 10)))))
    return {
        "w": PLOT_W,
        "h": PLOT_H,
        "pad": PLOT_PAD,
        "points": points,
        "winner": winner,
        "xticks": [(x(t), t) for t in ticks],
        "yticks": [(y(v / 100), v) for v in (0, 25, 50, 75, 100)],
        "right": PLOT_W - PLOT_PAD,
        "bottom": PLOT_H - PLOT_PAD,
    }


def _counts(mapping: dict[str, Any] | None) -> list[tuple[str, Any]]:
    return sorted((mapping or {}).items(), key=lambda kv: (-(kv[1] or 0), kv[0]))


def _table_view(table: dict[str, Any] | None) -> dict[str, Any] | None:
    if not table:
        return None
    return {**table, "fold": FOLD_OVER}


def anchor(task: str) -> str:
    """The page's element id of a task's section (links from pytest-html and the Action point here)."""
    return "task-" + (re.sub(r"[^A-Za-z0-9_.-]+", "-", task).strip("-") or "unnamed")


def task_view(entry: dict[str, Any], table: dict[str, Any] | None, index: int) -> dict[str, Any]:
    """Everything the template shows for one task."""
    run = entry.get("run") or {}
    result_collapse = entry.get("collapse")
    selection = entry.get("selection") or {}
    notes = collapse_notes(
        result_collapse, kept_baseline=selection.get("kept_baseline"), gate=(entry.get("gate") or {}).get("collapse")
    )
    racing = None
    if run.get("screened_out") or run.get("not_validated"):
        racing = describe_racing({k: int(run.get(k) or 0) for k in ("screened_out", "not_validated", "calls_saved")})
    extras = [(title, entry[key]) for key, title in EXTRA_SECTIONS.items() if entry.get(key)]
    return {
        "index": index,
        "anchor": anchor(entry["task"]),
        "entry": entry,
        "status": status_word(entry),
        "ok": entry["ok"],
        "scores": _score_rows(entry),
        "selection": _selection(entry.get("selection")),
        "collapse": notes,
        "racing": racing,
        "proposals": _counts(run.get("proposals")),
        "rejections": _counts(run.get("rejections")),
        "plot": trajectory_plot(entry),
        "table": _table_view(table),
        "extras": extras,
        "gate_mode": entry.get("gate") is not None,
        "rejected": sum(1 for c in entry.get("candidates") or [] if c.get("rejection")),
        "comparisons": list(entry.get("comparisons") or []),  # --opro-compare-model, its own table
    }


def render_page(report: dict[str, Any], tables: Sequence[dict[str, Any] | None]) -> str:
    """The page for `report` (a JSON report mapping); `tables[i]` is task i's example table or None."""
    tasks = [task_view(entry, tables[i] if i < len(tables) else None, i) for i, entry in enumerate(report["tasks"])]
    seen: dict[str, int] = {}
    for t in tasks:  # two tasks of one name (in different directories) keep distinct ids
        seen[t["anchor"]] = seen.get(t["anchor"], 0) + 1
        if seen[t["anchor"]] > 1:
            t["anchor"] += f"-{seen[t['anchor']]}"
    script_data = {
        "mode": report.get("mode"),
        "tasks": [
            {"task": t["entry"]["task"], "anchor": t["anchor"], "counts": (t["table"] or {}).get("counts")}
            for t in tasks
        ],
    }
    css, js = _asset("page.css"), _asset("page.js")
    env = _environment()
    return env.get_template("page.html.j2").render(
        report=report,
        tasks=tasks,
        css=Markup(css),
        js=Markup(js),
        csp_style=Markup(csp_hash(css)),
        csp_script=Markup(csp_hash(js)),
        data=json_for_script(script_data),
        fold=fold,
    )


def write_html(report: dict[str, Any], tables: Sequence[dict[str, Any] | None], path: str | Path) -> Path:
    """Write the page to `path` atomically and return the path."""
    path = Path(path)
    write_text_atomic(path, render_page(report, tables))
    return path
