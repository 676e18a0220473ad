"""``--opro-shard K/N`` (disjoint shards whose union is every test) and the merge of the shards' reports."""

from __future__ import annotations

import json
import re

import pytest

from pytest_opro.plugin.shard import parse_shard
from pytest_opro.reporting.cli import main as report_main
from tests.support.loop_brain import run_pytest as run
from tests.support.loop_brain import write_project
from tests.support.loopback import LoopbackServer


@pytest.mark.parametrize("text, expected", [("1/1", (1, 1)), ("2/4", (2, 4)), (" 3 / 3 ", (3, 3))])
def test_parse_shard(text, expected):
    assert parse_shard(text) == expected


@pytest.mark.parametrize("text", ["0/3", "4/3", "1/0", "2", "a/b", "1/2/3"])
def test_parse_shard_rejects(text):
    with pytest.raises(ValueError, match="K/N"):
        parse_shard(text)


PROMPTS = """
import pytest

@pytest.mark.parametrize("n", range(7))
def test_prompt(opro, n):
    pass
"""

UNITS = """
import pytest

@pytest.mark.parametrize("n", range(5))
def test_unit(n):
    pass
"""


def collected(pytester: pytest.Pytester, *args: str) -> list[str]:
    result = pytester.runpytest_inprocess("--collect-only", "-q", "-p", "no:randomly", *args)
    return [line for line in result.stdout.lines if "::" in line]


def test_shards_are_disjoint_balanced_and_cover_every_test(pytester, inline_ready):
    pytester.makepyfile(test_prompts=PROMPTS, test_units=UNITS)
    everything = set(collected(pytester))
    assert len(everything) == 12
    shards = [collected(pytester, f"--opro-shard={k}/3") for k in (1, 2, 3)]
    assert set().union(*shards) == everything
    assert sum(len(s) for s in shards) == len(everything)  # disjoint
    prompt_counts = [sum("test_prompt" in t for t in s) for s in shards]
    assert max(prompt_counts) - min(prompt_counts) <= 1 and sum(prompt_counts) == 7
    assert collected(pytester, "--opro-shard=2/3") == shards[1]  # the same every time


def test_sharding_combines_with_xdist_and_an_empty_shard_passes(pytester, inline_ready):
    pytester.makepyfile(test_prompts=PROMPTS.replace("range(7)", "range(3)"))
    plain = pytester.runpytest_inprocess("-p", "no:randomly", "--opro-shard=2/2", "-v")
    xdist = pytester.runpytest_inprocess("-p", "no:randomly", "--opro-shard=2/2", "-n", "2", "-v")
    ran = lambda r: sorted(
        re.findall(
            r"test_prompt\[\d\]",
            " ".join(  # noqa: E731
                line for line in r.stdout.lines if "PASSED" in line
            ),
        )
    )
    assert plain.ret == xdist.ret == 0
    assert len(ran(plain)) == 1 and ran(plain) == ran(xdist)
    empty = pytester.runpytest_inprocess("-p", "no:randomly", "--opro-shard=5/5")
    assert empty.ret == 0
    assert "shard 5/5 holds no prompt task (3 tests collected in all)" in empty.stdout.str()
    empty_x = pytester.runpytest_inprocess("-p", "no:randomly", "--opro-shard=5/5", "-n", "2")
    assert empty_x.ret == 0
    bad = pytester.runpytest_inprocess("--opro-shard=3/2")
    assert bad.ret == pytest.ExitCode.USAGE_ERROR and "--opro-shard='3/2' must be K/N" in bad.stderr.str()


def test_sharded_gate_and_merged_report_equal_the_unsharded_gate(tmp_path, capsys):
    names = ["alpha", "beta", "gamma"]
    project = tmp_path / "proj"
    brain = write_project(project, names=names, settings={"max_steps": 2, "candidates": 2, "patience": 0})
    with LoopbackServer(answer=brain) as server:
        assert run(project, server.url, "--opro-optimize").returncode == 0
        whole = run(project, server.url, f"--opro-report={tmp_path / 'whole.json'}")
        assert whole.returncode == 0, whole.stdout
        for k in (1, 2):
            shard = run(project, server.url, f"--opro-shard={k}/2", f"--opro-report={tmp_path / f'shard-{k}.json'}")
            assert shard.returncode == 0, shard.stdout + shard.stderr
    shards = [json.loads((tmp_path / f"shard-{k}.json").read_text()) for k in (1, 2)]
    assert [s["shard"] for s in shards] == [{"index": 1, "count": 2}, {"index": 2, "count": 2}]
    assert sorted(len(s["tasks"]) for s in shards) == [1, 2]

    status = report_main(
        [
            "merge",
            str(tmp_path / "shard-2.json"),
            str(tmp_path / "shard-1.json"),
            "-o",
            str(tmp_path / "merged.json"),
            "--markdown",
            str(tmp_path / "merged.md"),
        ]
    )
    assert status == 0
    merged = json.loads((tmp_path / "merged.json").read_text())
    unsharded = json.loads((tmp_path / "whole.json").read_text())
    assert merged["schema"] == unsharded["schema"] and merged["schema_version"] == unsharded["schema_version"]
    assert merged["merged"] == {"reports": 2, "shard_count": 2, "missing_shards": []}
    assert sorted(t["task"] for t in merged["tasks"]) == names
    for key in ("tasks", "ok", "not_ok", "statuses", "calls", "cache_hits"):
        assert merged["summary"][key] == unsharded["summary"][key], key
    strip = lambda t: {k: v for k, v in t.items() if k != "usage"}  # noqa: E731
    by_name = {t["task"]: strip(t) for t in unsharded["tasks"]}
    assert all(strip(t) == by_name[t["task"]] for t in merged["tasks"])
    markdown = (tmp_path / "merged.md").read_text()
    assert all(name in markdown for name in names) and "PASS" in markdown
    assert report_main(["markdown", str(tmp_path / "merged.json")]) == 0  # the merged report reads like any other
    assert capsys.readouterr().out.count("PASS") >= 3

    # refused: a missing shard, a shard twice, different runs
    assert report_main(["merge", str(tmp_path / "shard-1.json"), "-o", str(tmp_path / "part.json")]) == 1
    assert "shard(s) 2/2 missing" in capsys.readouterr().err
    assert (
        report_main(["merge", str(tmp_path / "shard-1.json"), "--allow-missing", "-o", str(tmp_path / "part.json")])
        == 0
    )
    assert json.loads((tmp_path / "part.json").read_text())["merged"]["missing_shards"] == [2]
    assert (
        report_main(
            ["merge", str(tmp_path / "shard-1.json"), str(tmp_path / "shard-1.json"), "-o", str(tmp_path / "x.json")]
        )
        == 1
    )
    assert "are both shard 1/2" in capsys.readouterr().err
    assert (
        report_main(
            ["merge", str(tmp_path / "whole.json"), str(tmp_path / "whole.json"), "-o", str(tmp_path / "x.json")]
        )
        == 1
    )
    assert "the shards overlap" in capsys.readouterr().err
    assert (
        report_main(
            ["merge", str(tmp_path / "whole.json"), str(tmp_path / "shard-1.json"), "-o", str(tmp_path / "x.json")]
        )
        == 1
    )
    assert "not the report of an --opro-shard job" in capsys.readouterr().err
    assert report_main(["merge", str(tmp_path / "shard-1.json")]) == 2


def test_shards_divide_what_k_selected(pytester, inline_ready):
    pytester.makepyfile(test_prompts=PROMPTS, test_units=UNITS)
    selected = set(collected(pytester, "-k", "test_prompt"))
    shards = [collected(pytester, "-k", "test_prompt", f"--opro-shard={k}/2") for k in (1, 2)]
    assert sorted(len(s) for s in shards) == [3, 4] and set(shards[0]) | set(shards[1]) == selected
