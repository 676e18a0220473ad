"""The HTML report of scripted runs (the yes/no suite of tests/reporting/test_reports.py), opened in
headless chromium: what it shows, its filters, no console error and no request beyond the file.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Callable

import pytest

from tests.reporting.test_reports import (
    CONFTEST,
    KEYWORDS,
    REPO,
    SCRIPT,
    TEST_FILE,
    WINNER,
)
from tests.support.browser import BrowserPage

#: Inner pytest runs happen in this process: pytest-opro, litellm and their lazy imports load first.
pytestmark = pytest.mark.usefixtures("inline_ready")

TEST_N = 30  # examples in the suite's test split


@pytest.fixture
def suite(pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> pytest.Pytester:
    pytester.makeconftest(CONFTEST.format(repo=str(REPO)))
    pytester.makepyfile(test_yesno=TEST_FILE)
    monkeypatch.setenv("OPRO_FAKE_KEYWORDS", KEYWORDS)
    monkeypatch.setenv("OPRO_FAKE_SCRIPT", json.dumps(SCRIPT))
    return pytester


def run(pytester: pytest.Pytester, *args: str) -> pytest.RunResult:
    return pytester.runpytest("-p", "no:cacheprovider", *args)


def rows(page: Any, task: int = 0) -> list[str]:
    """Ids of the example rows the page shows now."""
    return page.eval_on_selector_all(
        f'[data-task="{task}"] tbody tr:not([hidden]) td.id', "cells => cells.map(c => c.firstChild.textContent)"
    )


def check_clean(tab: BrowserPage, path: Path) -> None:
    assert tab.console_errors == []
    assert tab.requests == [path.resolve().as_uri()]  # the file itself, nothing else


def test_optimise_then_failing_gate_in_the_browser(
    suite: pytest.Pytester, monkeypatch: pytest.MonkeyPatch, chromium: Callable[..., BrowserPage], tmp_path: Path
) -> None:
    result = run(suite, "--opro-optimize", "--opro-html=optimize.html")
    result.assert_outcomes(passed=1)
    result.stdout.fnmatch_lines(["opro: HTML report written to optimize.html"])

    tab = chromium()
    page = tab.open(suite.path / "optimize.html")
    assert page.inner_text("nav").split() == ["improved", "yesno"]
    assert WINNER in page.inner_text("#task-yesno .pair")
    assert page.locator("#task-yesno svg.plot .winner").count() == 1
    assert page.locator("#task-yesno svg.plot rect.val").count() >= 11  # the baseline and two finalists a step
    assert len(rows(page)) == TEST_N  # every test example
    check_clean(tab, suite.path / "optimize.html")

    # the provider changed under the committed prompt: "think" no longer helps. A new scorer name
    # (gated anyway) keeps the recorded replies in the response cache apart from today's.
    monkeypatch.setenv("OPRO_FAKE_KEYWORDS", KEYWORDS.replace("think", "zebra"))
    failed = run(
        suite, "--opro-model=fake/scorer-b", "--opro-allow-stale", "--opro-html=gate.html", "--opro-report=gate.json"
    )
    failed.assert_outcomes(failed=1)
    gate = json.loads(suite.path.joinpath("gate.json").read_text(encoding="utf-8"))["tasks"][0]["gate"]
    assert gate["verdict"] == "regression" and gate["worse_ids"]

    tab = chromium()
    page = tab.open(suite.path / "gate.html")
    assert page.inner_text("#task-yesno h2").split() == ["fail", "yesno"]
    assert "opro gate FAILED for task 'yesno'" in page.inner_text("#task-yesno pre.message")
    headers = page.eval_on_selector_all("#task-yesno table.rows thead th", "ths => ths.map(t => t.textContent)")
    assert headers == ["id", "input", "target", "recorded", "now"]
    page.click('#task-yesno button[data-filter="worse"]')
    assert sorted(rows(page)) == sorted(gate["worse_ids"])
    for row in page.locator("#task-yesno table.rows tbody tr:not([hidden])").all():
        recorded, now = row.locator(".mark").all_inner_texts()
        assert (recorded, now) == ("✓ right", "✗ wrong")
        assert "not in the response cache" not in row.inner_text()  # the recorded reply came from the cache
    page.click('#task-yesno button[data-filter="better"]')
    assert rows(page) == []
    page.click('#task-yesno button[data-filter="all"]')
    page.fill("#task-yesno input[type=search]", gate["worse_ids"][0])
    assert rows(page) == [gate["worse_ids"][0]]
    page.fill("#task-yesno input[type=search]", "")
    assert len(rows(page)) == TEST_N
    page.screenshot(path=str(tmp_path / "gate.png"), full_page=True)
    assert (tmp_path / "gate.png").stat().st_size > 10_000
    check_clean(tab, suite.path / "gate.html")


def test_readable_without_javascript(suite: pytest.Pytester, chromium: Callable[..., BrowserPage]) -> None:
    run(suite, "--opro-optimize", "--opro-html=r.html").assert_outcomes(passed=1)
    tab = chromium(javascript=False)
    page = tab.open(suite.path / "r.html")
    assert len(rows(page)) == TEST_N  # every row, no filter applied
    assert not page.is_visible("#task-yesno .controls")  # the filters need the script: hidden without it
    assert WINNER in page.inner_text("#task-yesno")
    check_clean(tab, suite.path / "r.html")


def test_hostile_replies_stay_text_in_the_browser(suite: pytest.Pytester, chromium: Callable[..., BrowserPage]) -> None:
    from tests.reporting.test_html import BIG, HOSTILE

    reply = "\n".join(HOSTILE)
    suite.makeconftest(
        CONFTEST.format(repo=str(REPO))
        + f"""

import re

REPLY, BIG = {reply!r}, {BIG!r}


@pytest.fixture(autouse=True)
def _hostile_scorer(yesno_task):
    from tests.support.fake_provider import fake_handler

    def answer(messages):  # the even questions get the 100 kB reply too
        number = int(re.search(r"Question q(\\d+)", messages[-1]["content"]).group(1))
        return REPLY + ("\\n" + BIG if number % 2 == 0 else "")

    fake_handler().brain.scorer = answer
"""
    )
    result = run(suite, "--opro-optimize", "--opro-allow-no-gain", "--opro-html=r.html", "--opro-steps=1")
    result.assert_outcomes(passed=1)
    tab = chromium()
    page = tab.open(suite.path / "r.html")
    assert page.evaluate("() => window.pwned") is None  # no reply ran as code
    assert page.locator("main img, main textarea").count() == 0  # and none became markup
    outputs = page.eval_on_selector_all(
        "#task-yesno table.rows td:nth-child(4) pre.out", "ps => ps.map(p => p.textContent)"
    )
    assert len(outputs) == TEST_N
    assert set(outputs) == {reply, reply + "\n" + BIG}  # every reply in full, the long ones folded
    assert (
        page.locator("#task-yesno table.rows td:nth-child(4) details.fold").count()
        == outputs.count(reply + "\n" + BIG)
        > 0
    )
    check_clean(tab, suite.path / "r.html")


def test_pytest_html_rows_link_to_the_page(suite: pytest.Pytester) -> None:
    pytest.importorskip("pytest_html", reason="pytest-html is in the test extra")
    result = run(
        suite, "--opro-optimize", "--opro-html=out/opro.html", "--html=ph/report.html", "--self-contained-html"
    )
    result.assert_outcomes(passed=1)
    import html
    import re

    page = suite.path.joinpath("ph/report.html").read_text(encoding="utf-8")
    blob = re.search(r'data-jsonblob="([^"]*)"', page)
    assert blob is not None
    [row] = json.loads(html.unescape(blob.group(1)))["tests"]["test_yesno.py::test_yesno"]
    summary, link = row["extras"]
    assert summary["format_type"] == "html" and link["format_type"] == "url"
    assert summary["content"].startswith('<div class="opro-summary">opro yesno: written · test ')
    assert "right→wrong" in summary["content"]
    assert link["content"] == "../out/opro.html#task-yesno" and link["name"] == "opro yesno"
    assert 'href="../out/opro.html#task-yesno"' in summary["content"]


def test_no_api_key_and_no_redis_password_in_the_page(
    suite: pytest.Pytester, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    from tests.support.redis_server import RedisServer

    key, password = "sk-SECRETscorer-4f2a9c7e1b", "redis-SECRET-pass-8d3e"
    monkeypatch.setenv("OPRO_TEST_KEY", key)
    monkeypatch.setenv("OPENAI_API_KEY", key)
    suite.makeconftest(
        CONFTEST.format(repo=str(REPO)).replace(
            'scorer="fake/scorer"', 'scorer=ModelConfig("fake/scorer", api_key=os.environ["OPRO_TEST_KEY"])'
        )
        + "\nfrom pytest_opro import ModelConfig\n"
    )
    with RedisServer(tmp_path / "redis", password=password) as server:
        url = f"redis://:{password}@127.0.0.1:{server.port}/0"
        run(suite, "--opro-optimize", f"--opro-cache-url={url}", "--opro-html=optimize.html").assert_outcomes(passed=1)
        run(suite, f"--opro-cache-url={url}", "--opro-html=gate.html").assert_outcomes(passed=1)
    for name in ("optimize.html", "gate.html"):
        page = suite.path.joinpath(name).read_text(encoding="utf-8")
        assert "fake/scorer" in page  # the page is there and names the model, not its key
        assert key not in page and key[6:18] not in page
        assert password not in page and "SECRET" not in page
    gate = suite.path.joinpath("gate.html").read_text(encoding="utf-8")
    assert "not in the response cache" not in gate  # the recorded replies came from Redis


def test_xdist_workers_send_their_example_tables(suite: pytest.Pytester) -> None:
    pytest.importorskip("xdist")
    result = run(suite, "--opro-optimize", "-n", "2", "--opro-html=r.html")
    result.assert_outcomes(passed=1)
    page = suite.path.joinpath("r.html").read_text(encoding="utf-8")
    assert page.count('<td class="id">') == TEST_N  # the worker's table reached the controller's page
    assert WINNER in page
