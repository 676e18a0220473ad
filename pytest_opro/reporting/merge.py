"""Combine the JSON reports of sharded jobs (``pytest --opro-shard K/N --opro-report shard-K.json``)
into one report of the same schema, for the markdown a pull request reads. Jobs of a model matrix
(each gating the same prompts and comparing other models, ``--opro-compare-model``) merge too: one
entry per task with every job's comparisons.

The merge refuses what would make the combined report lie: reports of different modes or gate
settings, a task reported by two shards (the shards overlap) or gated differently by two jobs, and, unless asked to go on, a shard of
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
    at: dict[tuple[str, str], int] = {}
    for i in order:
        for entry in reports[i].get("tasks") or []:
            ident = (str(entry.get("nodeid")), str(entry.get("task")))
            if ident in owner and count is None and _more_comparisons(tasks[at[ident]], entry):
                # the same gate in jobs that compared other models (a model matrix): one entry
                kept = tasks[at[ident]] = dict(tasks[at[ident]])
                kept["comparisons"] = list(kept.get("comparisons") or []) + list(entry.get("comparisons") or [])
                continue
            if ident in owner:
                raise MergeError(
                    f"task {ident[1]!r} ({ident[0]}) is in both {owner[ident]} and {names[i]}: "
                    "the shards overlap (did every job collect the same tests?)"
                )
            owner[ident] = names[i]
            at[ident] = len(tasks)
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


#: What must agree for two reports' entries of one task to be the same gate (matrix jobs).
_GATE_KEYS = ("verdict", "passed", "recorded", "now", "n", "worse_ids", "better_ids")


def _more_comparisons(first: dict[str, Any], other: dict[str, Any]) -> bool:
    """Whether `other` reports the gate of `first` again with comparisons on other models (jobs of a
    model matrix gate the same committed prompts and each compares its own models)."""
    known = {c.get("model") for c in first.get("comparisons") or []}
    new = [c.get("model") for c in other.get("comparisons") or []]
    if not new or known & set(new):
        return False
    if (
        first.get("mode") != "gate"
        or other.get("mode") != "gate"
        or first.get("instruction") != other.get("instruction")
    ):
        return False
    a, b = first.get("gate"), other.get("gate")
    if a is None or b is None:
        return first.get("status") == other.get("status") and a == b
    return all(a.get(k) == b.get(k) for k in _GATE_KEYS)
