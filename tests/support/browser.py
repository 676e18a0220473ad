"""Debian's chromium, driven headless through Playwright's Python API, for tests of the HTML report.

No browser is downloaded: Playwright's wheel carries only its driver, and the tests point it at the
system ``chromium`` (``apt-get install chromium``; ``.ci/run`` installs it). Without the binary or
without playwright the tests that need them skip, except under ``CI`` (the variable set), where
either missing is a failure.

    def test_page(chromium):
        tab = chromium()                        # or chromium(javascript=False)
        page = tab.open(path)                   # file:// URL; every request is recorded
        tab.requests                            # URLs the page asked for
        tab.console_errors                      # console messages of type "error" and page errors
"""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator

import pytest

#: Where Debian puts the browser; `chromium` on PATH is used first.
CANDIDATES = ("/usr/bin/chromium", "/usr/bin/chromium-browser")
#: Headless, and nothing that talks to the network on its own.
ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]


def _missing(message: str) -> None:
    if os.environ.get("CI"):
        pytest.fail(f"{message}; CI is set, so a missing browser is a failure", pytrace=False)
    pytest.skip(message)


def chromium_binary() -> str:
    """The chromium path; skips the test without one, fails it under CI."""
    found = shutil.which("chromium") or next((p for p in CANDIDATES if os.path.exists(p)), None)
    if found is None:
        _missing("chromium is not installed (apt-get install chromium; bash .ci/run installs it)")
    return str(found)


@dataclass
class BrowserPage:
    """One headless chromium tab that records every request and console error."""

    page: Any
    requests: list[str] = field(default_factory=list)
    console_errors: list[str] = field(default_factory=list)

    def open(self, path: Path) -> Any:
        url = path.resolve().as_uri()
        self.page.goto(url, wait_until="load")
        return self.page


def new_tab(browser: Any, javascript: bool = True) -> BrowserPage:
    """A recording tab: every request is routed, recorded, and only file:// ones continue."""
    context = browser.new_context(java_script_enabled=javascript, viewport={"width": 1400, "height": 1000})
    tab = BrowserPage(context.new_page())

    def route(handle: Any) -> None:
        tab.requests.append(handle.request.url)
        if handle.request.url.startswith("file://"):
            handle.continue_()
        else:
            handle.abort()

    context.route("**/*", route)
    tab.page.on("console", lambda msg: tab.console_errors.append(msg.text) if msg.type == "error" else None)
    tab.page.on("pageerror", lambda exc: tab.console_errors.append(str(exc)))
    return tab


def launch(playwright: Any) -> Any:
    """Headless system chromium."""
    return playwright.chromium.launch(executable_path=chromium_binary(), args=ARGS, headless=True)


@pytest.fixture
def chromium() -> Iterator[Callable[..., BrowserPage]]:
    """A factory of headless chromium tabs for one test; see the module docstring."""
    chromium_binary()
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        _missing("playwright is not installed (pip install playwright; it is in the test extra)")
    with sync_playwright() as playwright:
        browser = launch(playwright)
        try:
            yield lambda javascript=True: new_tab(browser, javascript)
        finally:
            browser.close()
