"""The HTML report (``--opro-html PATH``): one self-contained page with every example's outputs."""

from pytest_opro.reporting.html.examples import DEFAULT_ROW_CAP, Side, example_table
from pytest_opro.reporting.html.page import render_page, write_html

__all__ = ["DEFAULT_ROW_CAP", "Side", "example_table", "render_page", "write_html"]
