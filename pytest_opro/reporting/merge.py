"""Combine the JSON reports of sharded jobs (``pytest --opro-shard K/N --opro-report shard-K.json``)
into one report of the same schema, for the markdown a pull request reads.

The merge refuses what would make the combined report lie: reports of different modes or gate
settings, a task reported by two shards (the shards overlap), and, unless asked to go on, a shard of
the N that is missing (a job that crashed before writing its report).
"""

from __future__ import annotations

from typing import Any, Sequence

from pytest_opro.reporting.json_report import summarize


class MergeError(Exception):
    """The reports cannot be combined into one truthful report."""


def merge_reports(
    reports: Sequence[dict[str, Any]], names: Sequence[str] | None = None, *, allow_missing: bool = False
) -> dict[str, Any]:
    """One report with every task of `reports` (already loaded and schema-checked)."""
    if not reports:
        raise MergeError("no report to merge")
    names = list(names or [f"report {i + 1}" for i in range(len(reports))])
    first = reports[0]
    for report, name in zip(reports[1:], names[1:]):
        if report.get("mode") != first.get("mode"):
            raise MergeError(
                f"{names[0]} is a {first.get('mode')} report but {name} is a {report.get('mode')} "
                "report: merge the reports of one run"
            )
        if report.get("settings") != first.get("settings"):
            raise MergeError(
                f"{names[0]} and {name} were gated with different settings "
                f"({first.get('settings')} vs {report.get('settings')}): merge the reports of one run"
            )

    shards: list[Any] = [r.get("shard") for r in reports]
    missing: list[int] = []
    count = None
    order = list(range(len(reports)))
    if any(s is not None for s in shards):
        unsharded = [n for n, s in zip(names, shards) if s is None]
        if unsharded:
            raise MergeError(f"{', '.join(unsharded)}: not the report of an --opro-shard job, unlike the others")
        counts = {int(s["count"]) for s in shards}
        if len(counts) != 1:
            raise MergeError(f"the reports come from different shard counts ({', '.join(map(str, sorted(counts)))})")
        count = counts.pop()
        seen: dict[int, str] = {}
        for s, name in zip(shards, names):
            index = int(s["index"])
            if index in seen:
                raise MergeError(f"{seen[index]} and {name} are both shard {index}/{count}")
            seen[index] = name
        missing = [k for k in range(1, count + 1) if k not in seen]
        if missing and not allow_missing:
            raise MergeError(
                f"shard(s) {', '.join(f'{k}/{count}' for k in missing)} missing: the merged report "
                "would leave out their tasks (pass --allow-missing to merge anyway)"
            )
        order.sort(key=lambda i: int(shards[i]["index"]))

    tasks: list[dict[str, Any]] = []
    owner: dict[tuple[str, str], str] = {}
    for i in order:
        for entry in reports[i].get("tasks") or []:
            ident = (str(entry.get("nodeid")), str(entry.get("task")))
            if ident in owner:
                raise MergeError(
                    f"task {ident[1]!r} ({ident[0]}) is in both {owner[ident]} and {names[i]}: "
                    "the shards overlap (did every job collect the same tests?)"
                )
            owner[ident] = names[i]
            tasks.append(entry)

    merged = {
        "schema": first["schema"],
        "schema_version": max(int(r["schema_version"]) for r in reports),
        "plugin_version": first.get("plugin_version"),
        "created": max(str(r.get("created") or "") for r in reports) or None,
        "mode": first.get("mode"),
        "settings": first.get("settings"),
        "summary": summarize(tasks),
        "tasks": tasks,
        "merged": {"reports": len(reports), "shard_count": count, "missing_shards": missing},
    }
    return merged
