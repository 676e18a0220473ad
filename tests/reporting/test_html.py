"""The HTML report's parts without a run: the example table, escaping, the embedded data, the plot."""

from __future__ import annotations

import json
import re
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pytest

from pytest_opro.prompts.examples import examples_from_records
from pytest_opro.reporting.html import Side, example_table, render_page, write_html
from pytest_opro.reporting.html.page import json_for_script, status_word, trajectory_plot

HOSTILE = [
    "<script>window.pwned = 1</script>",
    "</textarea><img src=x onerror=window.pwned=2>",
    "{{ 7*7 }}{% raw %}",
    "</script><!-- <script>",
    "&amp; &lt;b&gt; \u2028 ]]>",
]
BIG = "x" * 50_000 + "<script>window.pwned = 3</script>" + "y" * 50_000  # a 100 kB reply


def examples(n: int) -> Any:
    return examples_from_records(
        [{"id": f"e{i}", "input": f"Question {i}?", "target": "yes" if i % 2 else "no"} for i in range(n)], source="t"
    )


def entry(**over: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "task": "t",
        "nodeid": "test_t.py::test_t",
        "mode": "optimize",
        "status": "written",
        "ok": True,
        "artifact": "__opro__/t.yaml",
        "message": "",
        "instruction": "Think.",
        "baseline_instruction": "",
        "scores": {"baseline": {}, "winner": {}},
        "gate": None,
        "usage": {},
        "run": None,
        "selection": None,
        "collapse": None,
        "candidates": [],
    }
    return {**base, **over}


def report(*entries: dict[str, Any]) -> dict[str, Any]:
    return {
        "mode": "optimize",
        "created": "2026-01-01T00:00:00+00:00",
        "plugin_version": "0",
        "summary": {
            "tasks": len(entries),
            "ok": 1,
            "not_ok": 0,
            "calls": 0,
            "cache_hits": 0,
            "cost_usd": 0,
            "seconds": 0,
        },
        "tasks": list(entries),
    }


class Scripts(HTMLParser):
    """The page's script elements: their attributes and text."""

    def __init__(self) -> None:
        super().__init__()
        self.scripts: list[tuple[dict[str, str | None], str]] = []
        self._open: dict[str, str | None] | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "script":
            self._open = dict(attrs)
            self.scripts.append((self._open, ""))

    def handle_data(self, data: str) -> None:
        if self._open is not None:
            attrs, text = self.scripts[-1]
            self.scripts[-1] = (attrs, text + data)

    def handle_endtag(self, tag: str) -> None:
        if tag == "script":
            self._open = None


# -- the example table -------------------------------------------------------------------------


def test_rows_are_told_apart_by_how_the_second_side_differs() -> None:
    exs = examples(5)
    first = Side("baseline", {"e0": 1, "e1": 0, "e2": 1, "e3": 0, "e4": 1}, {f"e{i}": "a" for i in range(5)})
    second = Side(
        "shipped", {"e0": 0, "e1": 1, "e2": 1, "e3": 0, "e4": 1}, {"e0": "b", "e1": "b", "e2": "a", "e3": "c"}
    )
    table = example_table(exs, "test", first, second)
    assert [r["kind"] for r in table["rows"]] == ["worse", "better", "same", "changed", "same"]
    assert table["counts"] == {"worse": 1, "better": 1, "changed": 1, "same": 2}
    assert [(r["a"]["mark"], r["b"]["mark"]) for r in table["rows"]][:2] == [("right", "wrong"), ("wrong", "right")]
    assert table["rows"][4]["b"]["output"] is None  # no reply: shown as such, not as an empty string
    assert table["columns"] == ["baseline", "shipped"] and table["omitted"] == {} and table["total"] == 5


def test_rows_past_the_cap_are_counted_and_flips_are_kept_first() -> None:
    exs = examples(10)
    first = Side("recorded", {f"e{i}": 1.0 for i in range(10)}, None)
    second = Side("now", {f"e{i}": 0.0 if i in (7, 9) else 1.0 for i in range(10)}, None)
    table = example_table(exs, "test", first, second, cap=4)
    assert [r["id"] for r in table["rows"]] == ["e0", "e1", "e7", "e9"]  # split order, the flips kept
    assert table["omitted"] == {"same": 6} and table["total"] == 10
    page = render_page(report(entry()), [table])
    assert "6 more examples not shown (at most 4 rows a task; flipped and changed rows first): 6 unchanged." in page


def test_graded_outcomes_show_their_score() -> None:
    table = example_table(examples(1), "test", Side("a", {"e0": 0.25}, None), Side("b", {"e0": 0.75}, None))
    assert table["rows"][0]["a"]["mark"] == "0.25" and table["rows"][0]["kind"] == "better"


# -- escaping ----------------------------------------------------------------------------------


def test_everything_from_a_task_or_a_model_is_text(tmp_path: Path) -> None:
    exs = examples_from_records(
        [{"id": f"h{i}", "input": text, "target": text} for i, text in enumerate(HOSTILE)], source="t"
    )
    outs = {ex.id: ex.input for ex in exs}
    outs["h0"] = BIG
    table = example_table(exs, "test", Side("baseline", {}, outs), Side("shipped", {}, outs))
    hostile_entry = entry(
        task=HOSTILE[0],
        instruction=HOSTILE[1],
        baseline_instruction=HOSTILE[2],
        message=HOSTILE[3],
        candidates=[{"step": 1, "text": HOSTILE[3], "train": 0.5, "validation": 0.5, "proposer": HOSTILE[0]}],
        run={"rejections": {HOSTILE[0]: 1}, "proposals": {HOSTILE[1]: 2}},
    )
    page = write_html(report(hostile_entry), [table], tmp_path / "r.html").read_text(encoding="utf-8")

    # no markup came from the data: the only tags are ours
    assert "window.pwned" in page  # the text is there ...
    assert "<script>window.pwned" not in page and "<img" not in page and "</textarea>" not in page  # ... as text
    assert "{{ 7*7 }}" in page and ">49<" not in page  # never rendered as a template
    assert page.count("<script") == 2  # the data block and the page script
    assert BIG[:50_000] in page and len(page) > 200_000  # the 100 kB reply is there in full (twice), folded
    assert "(100,033 characters)" in page

    parser = Scripts()
    parser.feed(page)
    (data_attrs, data_text), (code_attrs, _) = parser.scripts
    assert data_attrs == {"type": "application/json", "id": "opro-data"} and code_attrs == {}
    assert "</" not in data_text and "<!--" not in data_text
    assert json.loads(data_text)["tasks"][0]["task"] == HOSTILE[0]


def test_json_for_script_cannot_close_the_element() -> None:
    text = str(json_for_script({"a": "</script><!-- & \u2028"}))
    assert "<" not in text and ">" not in text and "&" not in text and "\u2028" not in text
    assert json.loads(text) == {"a": "</script><!-- & \u2028"}


def test_the_page_allows_only_its_own_inline_script_and_style() -> None:
    page = render_page(report(entry()), [None])
    policy = re.search(r'http-equiv="Content-Security-Policy" content="([^"]+)"', page)
    assert policy is not None
    rules = dict(part.strip().split(" ", 1) for part in policy.group(1).split(";"))
    assert rules["default-src"] == "'none'"
    assert re.fullmatch(r"'sha256-[A-Za-z0-9+/=]+'", rules["script-src"])
    assert re.fullmatch(r"'sha256-[A-Za-z0-9+/=]+'", rules["style-src"])
    assert not re.search(r"(src|href)=\"(https?:)?//", page)  # nothing to fetch


# -- the per-task view -------------------------------------------------------------------------


@pytest.mark.parametrize(
    "status, gate, word",
    [
        ("written", None, "improved"),
        ("no gain", None, "no gain"),
        ("stale", None, "stale"),
        ("error", None, "error"),
        ("passed", {"verdict": "pass", "passed": True}, "pass"),
        ("passed", {"verdict": "improved", "passed": True}, "improved"),
        ("failed", {"verdict": "regression", "passed": False}, "fail"),
    ],
)
def test_status_word(status: str, gate: dict[str, Any] | None, word: str) -> None:
    assert status_word(entry(status=status, gate=gate)) == word


def test_the_plot_has_every_scored_candidate_and_marks_the_winner() -> None:
    candidates = [
        {"step": 0, "text": "", "train": 0.5, "validation": 0.5},
        {"step": 1, "text": "A", "train": 0.7, "validation": None},
        {"step": 1, "text": "Think.", "train": 0.8, "validation": 0.75},
        {"step": 2, "text": "B", "train": None, "validation": None, "rejection": "duplicate"},
    ]
    plot = trajectory_plot(entry(candidates=candidates, run={"best_step": 1}))
    assert plot is not None
    assert len(plot["points"]) == 3
    assert sum("validation" in p for p in plot["points"]) == 2
    assert plot["winner"] is not None and plot["winner"]["at"] == plot["points"][2]["validation"]
    assert trajectory_plot(entry(candidates=[])) is None


def test_later_report_blocks_have_a_place() -> None:
    page = render_page(report(entry(comparison={"model": "openai/other", "delta": -0.05})), [None])
    assert "<h3>Model comparison</h3>" in page and "openai/other" in page


def test_a_score_rounded_by_the_artifact_is_no_change() -> None:
    """Artifacts keep 4 places: a graded 2/3 recorded as 0.6667 is the same as 2/3 today."""
    table = example_table(examples(1), "test", Side("recorded", {"e0": 0.6667}, None), Side("now", {"e0": 2 / 3}, None))
    assert table["rows"][0]["kind"] == "same"


def test_every_candidate_is_listed_with_its_rejection() -> None:
    candidates = [
        {"step": 0, "text": "", "train": 0.5, "validation": 0.5, "proposer": "initial"},
        {"step": 1, "text": "Say no.", "train": None, "validation": None, "rejection": "duplicate", "proposer": "opro"},
    ]
    page = render_page(report(entry(candidates=candidates)), [None])
    assert "<summary>Every candidate (2, 1 rejected)</summary>" in page
    assert '<span class="mark mark-wrong">rejected: duplicate</span><pre class="out">Say no.</pre>' in page


def test_model_comparisons_have_their_own_table() -> None:
    from pytest_opro.prompts.compare import ModelComparison

    drop = ModelComparison(
        "t", "fake/a", "fake/b <i>", recorded=0.9, now=0.7, delta=-0.2, p_value=0.004, n=20, flipped=["x"] * 4
    )
    drop.verdict, drop.significant_drop = "regression", True
    broken = ModelComparison("t", "fake/a", "fake/c", error="model fake/c: this model was retired")
    page = render_page(report(entry(comparisons=[drop.to_dict(), broken.to_dict()])), [None])
    assert "<h3>Model comparison</h3>" in page
    assert "fake/a → fake/b &lt;i&gt;" in page  # escaped
    assert "90.0% → 70.0%" in page and "-20.0 points" in page and "4 of 20" in page
    assert "regression (significant drop)" in page
    assert "not compared: model fake/c: this model was retired" in page
