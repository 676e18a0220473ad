"""The terminal summary section "opro" (the JSON report is in json_report.py, markdown in markdown.py)."""

from __future__ import annotations

from typing import Iterable

from pytest_opro.reporting.outcome import TaskRecord, collapse_notes, describe_cache_hits


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{value:.1%}"


def shorten(text: str, width: int = 48) -> str:
    """One line of at most `width` characters."""
    flat = " ".join(text.split()) or "(empty)"
    return flat if len(flat) <= width else flat[: width - 1] + "…"


def racing_totals(reports: Iterable[dict]) -> dict[str, int]:
    """Candidates screened out on train, finalists not validated, train scorer calls made and scorer
    calls saved by racing, over a run's steps."""
    reports = list(reports)
    return {
        key: sum(int(r.get(key) or 0) for r in reports)
        for key in ("screened_out", "not_validated", "train_calls", "calls_saved")
    }


def describe_racing(totals: dict[str, int]) -> str:
    """ "12 candidates screened out, 3 not validated, 270 scorer calls saved"."""
    not_validated = f"{totals['not_validated']} not validated, " if totals.get("not_validated") else ""
    return (
        f"{totals['screened_out']} candidates screened out, {not_validated}{totals['calls_saved']} scorer calls saved"
    )


def summary_lines(records: Iterable[TaskRecord]) -> list[str]:
    """Rows of the terminal summary, one per task, grouped by mode."""
    records = list(records)
    lines: list[str] = []
    optimized = [r for r in records if r.mode == "optimize"]
    gated = [r for r in records if r.mode == "gate"]
    errors = [r for r in records if r.mode == "error"]
    if optimized:
        lines.append(
            f"{'task':<16} {'baseline->winner (test)':<24} {'95% CI':<14} {'calls':>6} {'cost':>8} {'time':>7}  stop / instruction"
        )
        for r in optimized:
            ci = f"[{r.test_ci[0]:.0%}, {r.test_ci[1]:.0%}]" if r.test_ci else "-"
            lines.append(
                f"{r.task:<16} {_pct(r.baseline_test) + ' -> ' + _pct(r.test):<24} {ci:<14} {r.calls:>6} "
                f"{'$' + format(r.cost_usd, '.4f'):>8} {r.seconds:>6.1f}s  {r.status}: {r.stop_reason}"
            )
            lines.append(f"{'':<16} instruction: {shorten(r.instruction, 90)}")
            result = r.result or {}
            selection = result.get("selection") or {}
            if selection.get("reason"):
                lines.append(f"{'':<16} {selection['reason']}")
            for note in collapse_notes(result.get("collapse"), kept_baseline=selection.get("kept_baseline")):
                lines.append(f"{'':<16} {note}")
            if r.retries or r.failures:
                lines.append(f"{'':<16} provider: {r.retries} retries, {r.failures} failed calls")
            racing = racing_totals((r.result or {}).get("reports") or [])
            if racing["screened_out"] or racing["not_validated"]:
                lines.append(f"{'':<16} racing: {describe_racing(racing)}")
            if r.cache_hits_by_scope:
                lines.append(f"{'':<16} {describe_cache_hits(r.cache_hits, r.cache_hits_by_scope)}")
    if gated:
        lines.append(f"{'task':<16} {'recorded -> now (test)':<24} {'delta':>7} {'p':>7} {'calls':>6}  verdict")
        for r in gated:
            delta = "-" if r.delta is None else f"{r.delta * 100:+.1f}"
            if r.p_value is None:
                p_value = "-"
            else:  # a tiny p stays visible instead of printing as 0.000
                p_value = f"{r.p_value:.3f}" if r.p_value >= 0.001 else f"{r.p_value:.0e}"
            verdict = r.verdict or r.status
            lines.append(
                f"{r.task:<16} {_pct(r.recorded) + ' -> ' + _pct(r.test):<24} {delta:>7} {p_value:>7} {r.calls:>6}  {verdict}"
            )
            for note in collapse_notes(None, gate=(r.decision or {}).get("collapse")):
                lines.append(f"{'':<16} {note}")
            if r.cache_hits_by_scope:
                lines.append(f"{'':<16} {describe_cache_hits(r.cache_hits, r.cache_hits_by_scope)}")
    compared = [(r, c) for r in gated for c in r.comparisons]
    if compared:
        lines.extend(comparison_lines(compared))
    for r in errors:
        lines.append(f"{r.task:<16} error: {shorten(r.message, 100)}")
    return lines


def comparison_lines(compared: Iterable[tuple[TaskRecord, dict]]) -> list[str]:
    """The model comparison table: recorded model -> compared model, scores, delta, p, flips, cost."""
    lines = [
        f"{'task':<16} {'model comparison':<56} {'score (test)':<18} {'delta':>7} {'p':>7} {'flipped':>8} {'cost':>8}  verdict"
    ]
    for r, c in compared:
        models = shorten(f"{c['recorded_model']} -> {c['model']}", 56)
        if c.get("error") is not None:
            lines.append(f"{r.task:<16} {models:<56} not compared: {shorten(c['error'], 80)}")
            continue
        p = c["p_value"]
        p_value = f"{p:.3f}" if p >= 0.001 else f"{p:.0e}"
        verdict = c["verdict"] + (" (significant drop)" if c.get("significant_drop") else "")
        lines.append(
            f"{r.task:<16} {models:<56} {_pct(c['recorded']) + ' -> ' + _pct(c['now']):<18} "
            f"{c['delta'] * 100:>+7.1f} {p_value:>7} {len(c['flipped']):>8} {'$' + format(c['cost_usd'], '.4f'):>8}  {verdict}"
        )
    return lines
