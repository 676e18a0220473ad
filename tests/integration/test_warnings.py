"""What a prompt run adds to pytest's warnings summary: nothing of litellm's or pydantic's own."""

from __future__ import annotations

import pytest

from tests.plugin.test_plugin import CONFTEST, OTHER_PLUGINS_OFF, REPO, TEST_SPORTS, example_lines

USER_WARNS = """
import warnings


def test_user_warning():
    warnings.warn("a warning of the project under test", UserWarning)
"""


def test_a_prompt_run_adds_no_third_party_warning(pytester: pytest.Pytester) -> None:
    pytester.makeconftest(CONFTEST.format(repo=str(REPO)))
    pytester.path.joinpath("sports.jsonl").write_text(example_lines(30), encoding="utf-8")
    pytester.makepyfile(test_sports=TEST_SPORTS, test_user=USER_WARNS)
    # a fresh interpreter: litellm is imported (and its types built) inside this run, by the first prompt test
    result = pytester.runpytest_subprocess("--opro-optimize", "-p", "no:randomly", *OTHER_PLUGINS_OFF)
    result.assert_outcomes(passed=2, warnings=1)
    summary = result.stdout.str().split("warnings summary", 1)[1]
    assert "a warning of the project under test" in summary  # other warnings still show
    for noise in ("pydantic", "litellm", "site-packages", "ReadOnly"):
        assert noise not in summary, summary
