"""pytest-html integration: a prompt test's row in the pytest-html report carries a short opro summary
and a link to the HTML report's section of its task (``extras``; used only when both are active)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from markupsafe import escape

from pytest_opro.reporting.outcome import TaskRecord


def summary(record: TaskRecord) -> str:
    """One line: the task, how it ended and its test score."""

    def pct(value: float | None) -> str:
        return "–" if value is None else f"{value:.1%}"

    if record.mode == "gate" and record.verdict:
        score = f"recorded {pct(record.recorded)} → now {pct(record.test)}"
    elif record.mode == "optimize":
        score = f"test {pct(record.baseline_test)} → {pct(record.test)}"
    else:
        score = ""
    table = record.examples or {}
    counts = table.get("counts") or {}
    flips = f"{counts.get('worse', 0)} right→wrong, {counts.get('better', 0)} wrong→right" if counts else ""
    return " · ".join(part for part in (f"opro {record.task}: {record.verdict or record.status}", score, flips) if part)


def add_extras(item: Any, report: Any, records: list[TaskRecord], page: str | Path) -> None:
    """Attach the summary and the link of each task this test checked to its pytest-html row."""
    mine = [r for r in records if r.nodeid == item.nodeid]
    if not mine:
        return
    from pytest_html import extras as html_extras

    from pytest_opro.reporting.html.page import anchor

    html_path = getattr(item.config.option, "htmlpath", None)
    base = Path(html_path).resolve().parent if html_path else Path.cwd()
    link = Path(os.path.relpath(Path(page).resolve(), base)).as_posix()
    found = list(getattr(report, "extras", []))
    for record in mine:
        target = f"{link}#{anchor(record.task)}"
        found.append(
            html_extras.html(
                f'<div class="opro-summary">{escape(summary(record))} · <a href="{escape(target)}">outputs side by side</a></div>'
            )
        )
        found.append(html_extras.url(target, name=f"opro {record.task}"))
    report.extras = found
