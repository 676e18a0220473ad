"""``python -m pytest_opro.reporting`` (or ``pytest-opro``): work with a saved JSON report.

- ``markdown REPORT.json [OUT.md]``: the markdown report (to standard output without OUT.md, e.g.
  ``>> "$GITHUB_STEP_SUMMARY"``).
- ``comment REPORT.json [OUT.md]``: the short pull request comment (per-task table, failure messages
  folded, a link to the run with ``--run-url``); the GitHub Action posts it.
- ``plot REPORT.json DIR``: one PNG per task with an optimisation history.
- ``merge A.json B.json ... -o OUT.json [--markdown OUT.md]``: one report from the JSON reports of
  sharded jobs (``pytest --opro-shard K/N --opro-report shard-K.json``), same schema; ``--markdown -``
  writes the markdown to standard output.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any, Sequence

from pytest_opro.opro.atomic import write_text_atomic
from pytest_opro.reporting.json_report import REPORT_SCHEMA, REPORT_SCHEMA_VERSION

PROG = "python -m pytest_opro.reporting"


class ReportError(Exception):
    """The file is not a report this version can read."""


def load_report(path: str | Path) -> dict[str, Any]:
    """A saved JSON report, checked to be one this version reads."""
    try:
        report = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ReportError(f"{path}: cannot read a JSON report ({exc})") from None
    version = report.get("schema_version") if isinstance(report, dict) else None
    if (
        not isinstance(report, dict)
        or report.get("schema") != REPORT_SCHEMA
        or not isinstance(version, int)
        or version > REPORT_SCHEMA_VERSION
    ):
        raise ReportError(
            f"{path}: not a pytest-opro report this version reads (schema_version {version!r}); "
            "upgrade with: pip install -U pytest-opro"
        )
    return report


def _markdown(args: argparse.Namespace) -> int:
    from pytest_opro.reporting.markdown import markdown_from_report

    text = markdown_from_report(load_report(args.report))
    if args.out:
        write_text_atomic(Path(args.out), text)
    else:
        sys.stdout.write(text)
    return 0


def _comment(args: argparse.Namespace) -> int:
    from pytest_opro.reporting.markdown import comment_from_report

    text = comment_from_report(
        load_report(args.report), run_url=args.run_url, commit=args.commit, artifact=args.artifact
    )
    if args.out:
        write_text_atomic(Path(args.out), text)
    else:
        sys.stdout.write(text)
    return 0


def _plot(args: argparse.Namespace) -> int:
    from pytest_opro.reporting.plot import missing_requirement, plot_report

    report = load_report(args.report)
    problem = missing_requirement()
    if problem:
        print(problem.replace("--opro-plot", "plotting"), file=sys.stderr)
        return 1
    for written in plot_report(report, args.directory):
        print(written)
    return 0


def _merge(args: argparse.Namespace) -> int:
    from pytest_opro.reporting.json_report import write_report
    from pytest_opro.reporting.markdown import markdown_from_report
    from pytest_opro.reporting.merge import MergeError, merge_reports

    if not args.out and not args.markdown:
        print(f"{PROG} merge: give -o OUT.json and/or --markdown OUT.md", file=sys.stderr)
        return 2
    reports = [load_report(path) for path in args.reports]
    try:
        merged = merge_reports(reports, [str(p) for p in args.reports], allow_missing=args.allow_missing)
    except MergeError as exc:
        raise ReportError(f"cannot merge: {exc}") from None
    if merged["merged"]["missing_shards"]:
        missing = ", ".join(str(k) for k in merged["merged"]["missing_shards"])
        print(
            f"warning: shard(s) {missing} of {merged['merged']['shard_count']} missing from the merged report",
            file=sys.stderr,
        )
    if args.out:
        write_report(merged, Path(args.out))
    if args.markdown == "-":
        sys.stdout.write(markdown_from_report(merged))
    elif args.markdown:
        write_text_atomic(Path(args.markdown), markdown_from_report(merged))
    summary = merged["summary"]
    print(
        f"merged {len(reports)} reports: {summary['tasks']} tasks, {summary['ok']} ok, {summary['not_ok']} not ok",
        file=sys.stderr,
    )
    return 0


def parser() -> argparse.ArgumentParser:
    """The command line's arguments."""
    top = argparse.ArgumentParser(prog=PROG, description="Work with a saved pytest-opro JSON report.")
    commands = top.add_subparsers(dest="command", required=True)
    md = commands.add_parser("markdown", help="write the markdown report")
    md.add_argument("report", help="the JSON report (pytest --opro-report report.json)")
    md.add_argument("out", nargs="?", help="where to write the markdown (default: standard output)")
    md.set_defaults(run=_markdown)
    cm = commands.add_parser("comment", help="write the pull request comment")
    cm.add_argument("report", help="the JSON report")
    cm.add_argument("out", nargs="?", help="where to write the markdown (default: standard output)")
    cm.add_argument(
        "--run-url",
        help="link to the workflow run, e.g. $GITHUB_SERVER_URL/$GITHUB_REPOSITORY/actions/runs/$GITHUB_RUN_ID",
    )
    cm.add_argument("--commit", help="the commit the report is about")
    cm.add_argument("--artifact", help="name of the artifact holding the JSON report and plots")
    cm.set_defaults(run=_comment)
    pl = commands.add_parser("plot", help="draw one PNG per task")
    pl.add_argument("report", help="the JSON report")
    pl.add_argument("directory", help="where to write the plots")
    pl.set_defaults(run=_plot)
    mg = commands.add_parser("merge", help="combine the JSON reports of sharded jobs into one")
    mg.add_argument("reports", nargs="+", help="the shards' JSON reports (pytest --opro-shard K/N --opro-report ...)")
    mg.add_argument("-o", "--out", help="where to write the combined JSON report")
    mg.add_argument("--markdown", metavar="OUT.md", help="also write the markdown report ('-': standard output)")
    mg.add_argument(
        "--allow-missing", action="store_true", help="merge even when some of the N shards' reports are missing (warns)"
    )
    mg.set_defaults(run=_merge)
    return top


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit status (2 for usage errors, 1 for unreadable reports)."""
    args = parser().parse_args(argv)
    try:
        status: int = args.run(args)
    except ReportError as exc:
        print(exc, file=sys.stderr)
        return 1
    return status
