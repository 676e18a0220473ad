"""Plots of optimisation runs (``--opro-plot DIR``): one PNG per task, score per step.

Each image shows the train and validation score of every scored candidate as points, the best
score so far on each split as lines, the baseline instruction's validation score as a horizontal
line, the winner, and the step where the run stopped (early stopping in red). Plots are drawn from
task entries of the JSON report (``docs/report-schema.md``), so a saved report can be re-plotted::

    python -m pytest_opro.reporting plot report.json plots/

matplotlib is an optional extra: ``pip install "pytest-opro[plot]"``. It is imported only when a
plot is drawn, and without pyplot (no GUI backend, no global state).
"""

from __future__ import annotations

import importlib.util
import re
from pathlib import Path
from typing import Any

INSTALL_HINT = 'pip install "pytest-opro[plot]"'
FIGSIZE = (8.0, 4.5)  # inches
DPI = 120
SIZE = (int(FIGSIZE[0] * DPI), int(FIGSIZE[1] * DPI))  # pixels: (960, 540)

TRAIN_COLOR = "#1f5fa8"
VALIDATION_COLOR = "#d9650b"
BASELINE_COLOR = "#6b6b6b"
STOP_COLOR = "#c0392b"
WINNER_COLOR = "#f2c200"
SUBTITLE_CHARS = 105


def missing_requirement() -> str | None:
    """Why plots cannot be drawn here (matplotlib missing), with the install command; None when they can."""
    if importlib.util.find_spec("matplotlib") is None:
        return f"--opro-plot needs matplotlib, which is not installed; install it with: {INSTALL_HINT}"
    return None


def plot_filename(task: str, used: set[str]) -> str:
    """A file name for `task`'s plot, unique within `used` (which it updates)."""
    stem = re.sub(r"[^A-Za-z0-9._-]+", "_", task).strip("._") or "task"
    name, n = f"{stem}.png", 2
    while name in used:
        name, n = f"{stem}-{n}.png", n + 1
    used.add(name)
    return name


def _best_so_far(points: list[tuple[int, float]], steps: list[int]) -> list[float | None]:
    best: float | None = None
    out: list[float | None] = []
    ordered = sorted(points)
    i = 0
    for step in steps:
        while i < len(ordered) and ordered[i][0] <= step:
            best = ordered[i][1] if best is None else max(best, ordered[i][1])
            i += 1
        out.append(best)
    return out


def _levels(steps: list[int], values: list[float | None]) -> tuple[list[float], list[float]]:
    """A staircase holding each step's value over that step's whole fan of points, rising between steps."""
    xs: list[float] = []
    ys: list[float] = []
    for step, value in zip(steps, values):
        level = float("nan") if value is None else value
        xs += [step - 0.5, step + 0.5]
        ys += [level, level]
    if xs:
        xs[0], xs[-1] = steps[0] - 0.45, steps[-1] + 0.45
    return xs, ys


def _spread(candidates: list[dict[str, Any]]) -> list[float]:
    """x positions: each step's candidates fanned out a little around the step number."""
    by_step: dict[int, list[int]] = {}
    for i, c in enumerate(candidates):
        by_step.setdefault(int(c["step"]), []).append(i)
    xs = [0.0] * len(candidates)
    for step, idx in by_step.items():
        width = min(0.5, 0.1 * (len(idx) - 1))
        for j, i in enumerate(idx):
            xs[i] = step + (width * (j / (len(idx) - 1) - 0.5) if len(idx) > 1 else 0.0)
    return xs


def _title(entry: dict[str, Any]) -> tuple[str, str]:
    base = (entry["scores"].get("baseline") or {}).get("validation") or {}
    win = (entry["scores"].get("winner") or {}).get("validation") or {}
    title = entry["task"] if len(entry["task"]) <= 40 else entry["task"][:39] + "…"
    if base.get("value") is not None and win.get("value") is not None:
        title += f": validation {base['value']:.0%} (baseline) → {win['value']:.0%} (winner)"
    run = entry.get("run") or {}
    parts = []
    if run.get("optimizer_model"):
        parts.append(f"{run['optimizer_model']} → {run['scorer_model']}")
    if run.get("steps_run") is not None:
        calls = f", {entry['usage']['calls']} calls" if entry["mode"] == "optimize" else ""
        parts.append(f"{run['steps_run']} steps{calls}")
    if run.get("stop_reason"):
        parts.append(str(run["stop_reason"]))
    gate = entry.get("gate")
    if gate is not None:
        word = "PASS" if gate["passed"] else "FAIL"
        parts.append(f"gate {word}: test {gate['recorded']:.0%} → {gate['now']:.0%}, p={gate['p_value']:.2g}")
    if entry["mode"] == "gate":
        parts.append("points: the top candidates kept in the artifact")
    lines: list[str] = []
    for part in parts:  # as many parts per line as fit the figure's width
        if lines and len(lines[-1]) + 3 + len(part) <= SUBTITLE_CHARS:
            lines[-1] += " · " + part
        else:
            lines.append(part if len(part) <= SUBTITLE_CHARS else part[: SUBTITLE_CHARS - 1] + "…")
    return title, "\n".join(lines)


def plot_task(entry: dict[str, Any], path: str | Path) -> Path:
    """Draw one task entry of the JSON report to a PNG of :data:`SIZE` pixels at `path`."""
    from matplotlib.figure import Figure

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    candidates = [c for c in entry["candidates"] if c.get("rejection") is None and c.get("train") is not None]
    run = entry.get("run") or {}
    last_step = max([int(run.get("steps_run") or 0)] + [int(c["step"]) for c in candidates])

    fig = Figure(figsize=FIGSIZE, dpi=DPI, layout="constrained")
    ax = fig.add_subplot()
    xs = _spread(candidates)
    handles, values = _draw_candidates(ax, candidates, xs, list(range(0, last_step + 1)))
    baseline = (entry["scores"].get("baseline") or {}).get("validation") or {}
    if baseline.get("value") is not None:
        ax.axhline(baseline["value"], color=BASELINE_COLOR, linestyle="--", linewidth=1.5, zorder=1)
        label = f"baseline instruction, validation ({baseline['value']:.0%})"
        handles.append(_key(label, color=BASELINE_COLOR, linestyle="--", linewidth=1.5))
    values.append(baseline.get("value") or 0.0)
    winner = (entry["scores"].get("winner") or {}).get("validation") or {}
    if winner.get("value") is not None and run.get("best_step") is not None:
        at = [x for x, c in zip(xs, candidates) if c["step"] == run["best_step"] and c["text"] == entry["instruction"]]
        ax.scatter(
            at[:1] or [run["best_step"]],
            [winner["value"]],
            s=240,
            marker="*",
            color=WINNER_COLOR,
            edgecolors="black",
            linewidths=0.8,
            zorder=5,
        )
        label = f"winner (step {run['best_step']})"
        style = {"markerfacecolor": WINNER_COLOR, "markeredgecolor": "black", "markersize": 13}
        handles.append(_key(label, marker="*", linestyle="none", **style))
    if run.get("steps_run"):
        early = bool(run.get("early_stopped"))
        color = STOP_COLOR if early else BASELINE_COLOR
        ax.axvline(run["steps_run"], color=color, linestyle=":", linewidth=2, zorder=1)
        label = f"early stop (step {run['steps_run']})" if early else f"last step ({run['steps_run']})"
        handles.append(_key(label, color=color, linestyle=":", linewidth=2))

    _style_axes(ax, values, last_step)
    title, subtitle = _title(entry)
    fig.suptitle(title, fontsize=13, fontweight="bold")
    ax.set_title(subtitle, fontsize=9.5, color="#444444")
    fig.legend(
        handles=handles,
        loc="outside lower center",
        ncols=3,
        fontsize=9,
        frameon=False,
        columnspacing=1.2,
        handlelength=1.8,
    )
    fig.savefig(path, format="png", dpi=DPI)
    return path


def _key(label: str, **style: Any) -> Any:
    """A legend entry drawn in `style` (a matplotlib ``Line2D`` with no data)."""
    from matplotlib.lines import Line2D

    return Line2D([], [], label=label, **style)


def _draw_candidates(
    ax: Any, candidates: list[dict[str, Any]], xs: list[float], steps: list[int]
) -> tuple[list[Any], list[float]]:
    """Every candidate's train score, the validated ones' validation score, and the best of each so
    far; returns their legend entries and the values drawn."""
    ax.scatter(
        xs, [c["train"] for c in candidates], s=34, facecolors="none", edgecolors=TRAIN_COLOR, linewidths=1.3, zorder=3
    )
    val = [(x, c["validation"]) for x, c in zip(xs, candidates) if c.get("validation") is not None]
    if val:
        val_x, val_y = zip(*val)
        ax.scatter(val_x, val_y, s=30, marker="s", color=VALIDATION_COLOR, zorder=4)
    train_best = _best_so_far([(int(c["step"]), c["train"]) for c in candidates], steps)
    val_best = _best_so_far(
        [(int(c["step"]), c["validation"]) for c in candidates if c.get("validation") is not None], steps
    )
    ax.plot(*_levels(steps, train_best), color=TRAIN_COLOR, linewidth=2, zorder=2)
    ax.plot(*_levels(steps, val_best), color=VALIDATION_COLOR, linewidth=2, zorder=2)
    handles = [
        _key(
            "train, each candidate",
            marker="o",
            linestyle="none",
            markerfacecolor="none",
            markeredgecolor=TRAIN_COLOR,
            markersize=7,
        ),
        _key("validation, best of each step", marker="s", linestyle="none", color=VALIDATION_COLOR, markersize=6),
        _key("best train so far", color=TRAIN_COLOR, linewidth=2),
        _key("best validation so far", color=VALIDATION_COLOR, linewidth=2),
    ]
    return handles, [c["train"] for c in candidates] + [v for _, v in val]


def _style_axes(ax: Any, values: list[float], last_step: int) -> None:
    """Percent scale when every value drawn is a share, integer steps, labels and grid."""
    from matplotlib.ticker import MaxNLocator, PercentFormatter

    if all(0.0 <= v <= 1.0 for v in values):
        ax.set_ylim(-0.03, 1.05)
        ax.yaxis.set_major_formatter(PercentFormatter(1.0))
    ax.set_xlim(-0.5, last_step + 0.5)
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlabel("optimisation step (0 = baseline instruction)", fontsize=11)
    ax.set_ylabel("score (mean of the metric)", fontsize=11)
    ax.grid(True, alpha=0.3)
    ax.tick_params(labelsize=10)


def plot_report(report: dict[str, Any], directory: str | Path) -> list[Path]:
    """Plot every task with a history in a JSON report mapping; returns the files written."""
    used: set[str] = set()
    directory = Path(directory)
    return [plot_task(e, directory / plot_filename(e["task"], used)) for e in report["tasks"] if e["candidates"]]
