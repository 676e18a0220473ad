"""What one pytest run does with prompt tasks: optimise and write, or gate against the artifact.

The plugin module only wires hooks to an :class:`OproSession`; everything with behaviour is here.
Every pytest run imports this module, so the optimizer, the prompt tasks and the model client are
imported inside the methods that need them: a run without a prompt task never loads them.
"""

from __future__ import annotations

import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping

import pytest

from pytest_opro import __version__
from pytest_opro.errors import OproError
from pytest_opro.models.usage import usage_totals
from pytest_opro.plugin.options import Options
from pytest_opro.plugin.progress import step_line
from pytest_opro.reporting.outcome import (
    RECORD_USAGE,
    TaskRecord,
    TaskStatus,
    add_scope_hits,
    describe_cache_hits,
)

OPTIMIZE_COMMAND = "pytest --opro-optimize"


@dataclass
class OproSession:
    """State of prompt tasks in one pytest run (lives in ``config.stash``)."""

    options: Options
    rootpath: Path
    hook: Any = None
    write_line: Callable[[str], None] = print
    #: Told how far each batch of model calls is (the live scoring line); None: nothing shown.
    scoring_progress: Callable[[Any], None] | None = None
    records: list[TaskRecord] = field(default_factory=list)
    artifact_dirs: set[str] = field(default_factory=set)
    narrowed: bool = False  # the command line named files or test ids, not whole directories
    used: bool = False
    shard_collected: int = 0  # tests collected before --opro-shard kept its share
    worker: bool = False  # a pytest-xdist worker (the controller checked the shared cache at start-up)
    _cache: Any = None
    _cache_checked: bool = False  # the shared cache answered at start-up
    _cache_lost: bool = False
    _router_config: Any = None
    _router: Any = None

    # -- shared resources ----------------------------------------------------------------------
    def check_start(self, *, open_shared: bool = True) -> None:
        """Start-up checks: the router file parses; a Redis cache answers (one clear error if not).

        Raises pytest.UsageError naming the file or the URL (never its password).
        """
        opts = self.options
        if opts.router:
            from pytest_opro.models.router import RouterConfig

            try:
                self._router_config = RouterConfig.load(opts.router)
            except OproError as exc:
                raise pytest.UsageError(f"--opro-router: {exc}") from None
        if open_shared and opts.cache_url and opts.cache != "off":
            try:
                self.cache()
            except OproError as exc:
                raise pytest.UsageError(f"--opro-cache-url: {exc}") from None
            self._cache_checked = True

    def cache(self) -> Any:
        """The response cache shared by every task in this process (None when off).

        SQLite in the cache directory, or Redis with ``--opro-cache-url``: the client cannot tell.
        """
        if self._cache is None and self.options.cache != "off" and not self._cache_lost:
            from pytest_opro.models.cache import open_cache

            opts = self.options
            try:
                self._cache = open_cache(
                    opts.cache_dir,
                    opts.cache,
                    url=opts.cache_url,
                    ttl=opts.cache_ttl,
                    scope=opts.cache_scope,
                    trust=opts.cache_trust,
                )
            except OproError as exc:
                if not (self._cache_checked or self.worker):
                    raise
                # it answered at start-up (here or in the xdist controller): lost since, go on without it
                self._cache_lost = True
                warnings.warn(f"pytest-opro: {exc}; continuing without the cache", RuntimeWarning, stacklevel=2)
        return self._cache

    def router(self) -> Any:
        """The litellm Router of ``--opro-router`` for this process (None without one)."""
        if self._router is None and self.options.router:
            from pytest_opro.models.router import RouterBridge, RouterConfig

            config = self._router_config or RouterConfig.load(self.options.router)
            self._router = RouterBridge(config)
        return self._router

    def close(self) -> None:
        if self._cache is not None:
            self._cache.close()
            self._cache = None
        if self._router is not None:
            self._router.close()
            self._router = None

    def needs_finish(self) -> bool:
        """Whether the end of the run has anything to say or write (most runs use no prompt task)."""
        opts = self.options
        return bool(self.records or self.used or opts.optimize or opts.report or opts.plot or opts.shard or opts.html)

    def client(self) -> Any:
        """A model client on the shared cache, with this run's budget (one per task run)."""
        from pytest_opro.models.client import LLMClient
        from pytest_opro.models.config import Budget

        self.used = True

        budget = Budget(
            max_calls=self.options.max_calls,
            max_tokens=self.options.max_tokens,
            max_cost_usd=self.options.max_cost,
        )
        return LLMClient(
            cache=self.cache(),
            concurrency=self.options.concurrency,
            budget=budget,
            router=self.router(),
            on_progress=self.scoring_progress,
        )

    # -- settings with precedence CLI > task > ini > default ----------------------------------
    def model(self, task: Any, role: str) -> Any:
        cli = self.options.cli("model" if role == "scorer" else "optimizer_model")
        if cli is not None:
            return cli
        own = task.scorer if role == "scorer" else task.optimizer
        if own is not None:
            return own
        return self.options.model if role == "scorer" else self.options.optimizer_model

    def settings(self, task: Any) -> Any:
        from pytest_opro.prompts.optimization import build_settings

        names = {
            "steps": "max_steps",
            "candidates": "candidates",
            "patience": "patience",
            "seed": "seed",
            "select_alpha": "select_alpha",
            "proposers": "proposers",
            "screening": "screening",
            "collapse": "collapse",
            "samples": "samples",
            "aggregate": "aggregate",
        }
        ini = {target: getattr(self.options, opt) for opt, target in names.items()}
        cli = {target: self.options.cli(opt) for opt, target in names.items()}
        return build_settings(ini, task.settings, cli, origin=f"task {task.name!r}")

    def tolerance(self, task: Any) -> float:
        """The gate's tolerated drop as a fraction; settings are in points (2 = two points)."""
        if self.options.cli("tolerance") is None and task.tolerance is not None:
            return float(task.tolerance) / 100.0
        return self.options.tolerance / 100.0

    # -- paths ---------------------------------------------------------------------------------
    def artifact_path(self, module_path: Path, task: Any) -> Path:
        directory = module_path.parent / self.options.dir
        self.artifact_dirs.add(str(directory))
        return directory / f"{task.name}.yaml"

    def checkpoint_path(self, task: Any) -> Path:
        return Path(self.options.cache_dir) / "checkpoints" / f"{task.name}.json"

    # -- the two modes -------------------------------------------------------------------------
    def optimize(self, task: Any, module_path: Path, nodeid: str) -> TaskRecord:
        """Run OPRO for `task`, write its artifact and return the record (status "written" / "no gain")."""
        path = self.artifact_path(module_path, task)
        settings = self.settings(task)
        scorer = task.scorer_config(self.model(task, "scorer"))
        optimizer = task.optimizer_config(self.model(task, "optimizer"))
        self._announce(task, settings, scorer, optimizer)
        client = self.client()
        result = self._run_optimizer(task, settings, scorer, optimizer, client)
        self._note_test_replies(task, result)
        self._write_artifact(task, path, result)
        record = self._optimize_record(task, nodeid, path, result, client.ledger.hits_by_scope)
        self.records.append(record)
        return record

    def _announce(self, task: Any, settings: Any, scorer: Any, optimizer: Any) -> None:
        """The line that opens a task's optimisation: the models and the estimated calls and cost."""
        from pytest_opro.prompts.optimization import estimate

        guess = estimate(task, settings, scorer, optimizer)
        samples = f", {settings.samples} samples per example ({settings.aggregate})" if settings.samples > 1 else ""
        self.write_line(
            f"opro {task.name}: optimising with {optimizer.model} -> scorer {scorer.model}{samples}; {guess.describe()}"
        )

    def _run_optimizer(self, task: Any, settings: Any, scorer: Any, optimizer: Any, client: Any) -> Any:
        """The OPRO loop on `task`, with a progress line and the step and candidate hooks after each step."""
        from pytest_opro.models.client import run_sync
        from pytest_opro.prompts.optimization import optimize_async

        def on_step(report: Any) -> None:
            self.write_line(step_line(task.name, report))
            if self.hook is not None:
                self.hook.pytest_opro_step(task=task, report=report)

        def on_candidate(candidate: Any) -> None:
            if self.hook is not None:
                self.hook.pytest_opro_candidate(task=task, candidate=candidate)

        return run_sync(
            optimize_async(
                task,
                scorer=scorer,
                optimizer=optimizer,
                settings=settings,
                client=client,
                checkpoint=self.checkpoint_path(task),
                on_step=on_step,
                on_candidate=on_candidate,
            )
        )

    def _note_test_replies(self, task: Any, result: Any) -> None:
        """What the test replies of the baseline and the winner had to say, e.g. how many were not JSON."""
        won, base = result.scores["test"], result.baseline_scores["test"]
        if won.notes or base.notes:
            self.write_line(
                f"opro {task.name}: test replies of the baseline: {base.describe_notes() or 'no notes'}; "
                f"of the winner: {won.describe_notes() or 'no notes'}"
            )

    def _write_artifact(self, task: Any, path: Path, result: Any) -> None:
        from pytest_opro.prompts.artifact import artifact_from_result, write_artifact

        top = [c.to_dict() for c in result.top_candidates(10)]
        write_artifact(path, artifact_from_result(result.to_dict(), __version__, top))
        if self.hook is not None:
            self.hook.pytest_opro_artifact_written(task=task, path=path, result=result)

    def _optimize_record(
        self, task: Any, nodeid: str, path: Path, result: Any, hits_by_scope: Mapping[str, int]
    ) -> TaskRecord:
        """The record of an optimisation, with the advice a run without a gain needs; `hits_by_scope`:
        the cache hits per trust scope of a scoped Redis cache."""
        data = result.to_dict()
        test = result.scores["test"]
        record = TaskRecord(
            task=task.name,
            mode="optimize",
            nodeid=nodeid,
            artifact=str(path),
            status=TaskStatus.WRITTEN if result.improved else TaskStatus.NO_GAIN,
            instruction=result.instruction,
            baseline_test=result.baseline_scores["test"].value,
            test=test.value,
            test_ci=(test.ci_low, test.ci_high),
            seconds=result.wall_seconds,
            stop_reason=result.stop_reason,
            steps_run=result.steps_run,
            result=data,
            cache_hits_by_scope=dict(hits_by_scope),
            **usage_totals(data["usage"], RECORD_USAGE),
        )
        if self.options.html:
            from pytest_opro.reporting.html import Side, example_table

            base_test = result.baseline_scores["test"]
            record.examples = example_table(
                task.splits.test,
                "test",
                Side("baseline", base_test.outcomes, base_test.outputs),
                Side("shipped", test.outcomes, test.outputs),
                cap=self.options.html_rows,
            )
        if not result.improved:
            why = (result.selection or {}).get("reason") or (
                f"no candidate beat the baseline on validation ({result.baseline_scores['validation'].value:.1%})"
            )
            record.message = (
                f"opro {task.name}: {why}; artifact written with the baseline. "
                "Pass --opro-allow-no-gain to accept, or try more --opro-steps, more validation examples or another model."
            )
        return record

    def gate(self, task: Any, module_path: Path, nodeid: str) -> TaskRecord:
        """Score the committed instruction on test and decide; the record's status says how it went."""
        started = time.monotonic()
        path = self.artifact_path(module_path, task)
        record = TaskRecord(task=task.name, mode="gate", nodeid=nodeid, artifact=str(path), status=TaskStatus.PASSED)
        self.records.append(record)
        try:
            self._gate(task, path, nodeid, record)
        except OproError as exc:  # a corrupt artifact, a provider that cannot be reached, ...
            record.status, record.message = TaskStatus.ERROR, f"opro {task.name}: {exc}"
        record.seconds = time.monotonic() - started
        return record

    def _gate(self, task: Any, path: Path, nodeid: str, record: TaskRecord) -> None:
        from pytest_opro.prompts.artifact import load_artifact
        from pytest_opro.prompts.gate import decide, stale_for
        from pytest_opro.prompts.optimization import fingerprint

        if not path.exists():
            record.status = TaskStatus.MISSING
            record.message = (
                f"opro {task.name}: no artifact at {path}. Create it with:\n"
                f"  {OPTIMIZE_COMMAND} {nodeid}\nthen commit {path.parent.name}/{path.name}"
            )
            return
        artifact = load_artifact(path)
        record.instruction = artifact.instruction
        scorer = task.scorer_config(self.model(task, "scorer"))
        settings = self.settings(task)
        changed = stale_for(task, artifact.fingerprint, lambda t: fingerprint(t, scorer, settings))
        if changed and not self._gate_stale(task, path, nodeid, changed, record):
            return
        client = self.client()
        now = self._score_committed(task, artifact, scorer, settings, client, record)
        if now.failures:
            record.status = TaskStatus.ERROR
            record.message = (
                f"opro {task.name}: {now.failures} of {now.failures + now.n} answers could not be scored "
                f"(a scorer or judge call failed after retries, or a judge gave no readable grade; first: {now.error}); "
                "the gate cannot decide. Check the provider and run again."
            )
            return
        decision = decide(
            artifact.test_outcomes,
            now.outcomes or {},
            tolerance=self.tolerance(task),
            alpha=self.options.alpha,
            floor=task.floor,
            samples=settings.samples,
            aggregate=settings.aggregate,
        )
        if now.answers:
            from pytest_opro.opro.collapse import collapse

            found = collapse(now.answers, now.n, settings.collapse_share)
            decision.collapse = found.to_dict() if found else None
        if self.hook is not None:
            self.hook.pytest_opro_gate(task=task, decision=decision)
        self._record_decision(task, path, nodeid, record, decision, now, client)
        if self.options.compare_models:
            self._compare(task, artifact, scorer, settings, record)

    def _gate_stale(self, task: Any, path: Path, nodeid: str, changed: list[str], record: TaskRecord) -> bool:
        """Say what changed since the artifact was written; whether to gate anyway (``--opro-allow-stale``)."""
        from pytest_opro.prompts.gate import FINGERPRINT_LABELS

        why = ""
        if any(part.startswith(FINGERPRINT_LABELS["split_rule"]) for part in changed):
            why = (
                " The split rule changed: the examples are now divided into train, validation and test "
                "another way, so the recorded test outcomes are not on the task's test split."
            )
        if any(part.startswith((FINGERPRINT_LABELS["samples"], FINGERPRINT_LABELS["aggregate"])) for part in changed):
            why += (
                " The samples per example or their aggregate changed: the recorded test outcomes were "
                "combined from another number of scorer calls, so they cannot be paired with today's."
            )
        text = (
            f"opro {task.name}: artifact {path.name} is stale: changed since it was written: "
            f"{', '.join(changed)}.{why} Re-run {OPTIMIZE_COMMAND} {nodeid} and commit the artifact"
        )
        if not self.options.allow_stale:
            record.status, record.message = TaskStatus.STALE, text + " (or pass --opro-allow-stale to gate anyway)."
            return False
        warnings.warn(text + "; gating anyway (--opro-allow-stale).", stacklevel=3)
        return True

    def _score_committed(
        self, task: Any, artifact: Any, scorer: Any, settings: Any, client: Any, record: TaskRecord
    ) -> Any:
        """The committed instruction scored on test now (with ``--opro-html``, its replies beside the recorded ones)."""
        from pytest_opro.models.client import run_sync
        from pytest_opro.prompts.optimization import score_instruction_async

        recorded_replies: dict[str, str] | None = None
        if self.options.html:  # read before scoring, so a cold cache shows nothing rather than today's replies
            from pytest_opro.prompts.instruction_problem import cached_replies

            recorded_replies = cached_replies(
                client.cache, task, scorer, artifact.instruction, task.splits.test, artifact.data.get("scorer")
            )
        now = run_sync(
            score_instruction_async(
                task,
                artifact.instruction,
                "test",
                client=client,
                scorer=scorer,
                samples=settings.samples,
                aggregate=settings.aggregate,
            )
        )
        if self.options.html:
            from pytest_opro.reporting.html import Side, example_table

            record.examples = example_table(
                task.splits.test,
                "test",
                Side("recorded", artifact.test_outcomes, recorded_replies),
                Side("now", now.outcomes, now.outputs),
                cap=self.options.html_rows,
            )
        return now

    def _record_decision(
        self, task: Any, path: Path, nodeid: str, record: TaskRecord, decision: Any, now: Any, client: Any
    ) -> None:
        """The gate's verdict, scores and usage on the task's record."""
        for key, value in usage_totals(client.ledger.to_dict(), RECORD_USAGE).items():
            setattr(record, key, value)
        record.cache_hits_by_scope = dict(client.ledger.hits_by_scope)
        record.status = TaskStatus.PASSED if decision.passed else TaskStatus.FAILED
        record.verdict = decision.verdict.value
        record.recorded, record.test, record.delta = decision.recorded, decision.now, decision.delta
        record.test_ci = (now.ci_low, now.ci_high)
        record.p_value = decision.p_value
        record.message = decision.message(
            task.name, rerun=f"{OPTIMIZE_COMMAND} {nodeid}", artifact=f"{path.parent.name}/{path.name}"
        )
        if now.notes:  # e.g. "3 of 24 replies: not JSON"
            record.message += f"\n  now: {now.describe_notes()}"
        record.decision = {**decision.to_dict(), "notes": dict(now.notes or {})}

    def _compare(self, task: Any, artifact: Any, scorer: Any, settings: Any, record: TaskRecord) -> None:
        """Score the committed instruction with each ``--opro-compare-model`` and pair it with the
        recorded outcomes; with ``--opro-compare-fail`` a drop the gate would fail fails the task."""
        from pytest_opro.models.client import run_sync
        from pytest_opro.prompts.compare import compare_model_async

        for model in self.options.compare_models:
            found = run_sync(
                compare_model_async(
                    task,
                    artifact,
                    model,
                    client=self.client(),
                    current=scorer,
                    samples=settings.samples,
                    aggregate=settings.aggregate,
                    tolerance=self.tolerance(task),
                    alpha=self.options.alpha,
                )
            )
            record.comparisons.append(found.to_dict())
            self.write_line(f"opro compare {found.describe()}")
            if self.options.compare_fail and found.failed:
                record.status = TaskStatus.FAILED
                record.message = (record.message + "\n" if record.message else "") + found.message()

    def error(self, task_name: str, nodeid: str, exc: OproError, artifact: str = "") -> TaskRecord:
        record = TaskRecord(
            task=task_name, mode="error", nodeid=nodeid, artifact=artifact, status=TaskStatus.ERROR, message=str(exc)
        )
        self.records.append(record)
        return record

    # -- end of run ----------------------------------------------------------------------------
    def obsolete_artifacts(self) -> list[Path]:
        """Artifacts in directories this run used whose task was not checked.

        None when the run was narrowed to files or test ids: tasks of other modules sharing the
        directory did not run, so their artifacts would look obsolete.
        """
        if self.narrowed:
            return []
        known = {Path(r.artifact) for r in self.records if r.artifact}
        found: list[Path] = []
        for directory in sorted(self.artifact_dirs):
            for path in sorted(Path(directory).glob("*.yaml")):
                if path not in known:
                    found.append(path)
        return found

    def report(self) -> dict[str, Any]:
        """This run's report as plain data (see ``docs/report-schema.md``)."""
        from pytest_opro.reporting.json_report import json_report

        opts = self.options
        return json_report(
            self.records,
            self.rootpath,
            optimize=bool(opts.optimize),
            tolerance=opts.tolerance,
            alpha=opts.alpha,
            allow_no_gain=bool(opts.allow_no_gain),
            shard=opts.shard,
        )

    def finish(self, deselected: int) -> tuple[list[str], int | None]:
        """Notes for the terminal summary and an exit status to set (None: leave pytest's)."""
        notes: list[str] = []
        status: int | None = None
        if self.options.shard and self.shard_collected and not self.records:
            k, n = self.options.shard
            notes.append(f"opro: shard {k}/{n} holds no prompt task ({self.shard_collected} tests collected in all)")
        elif self.options.optimize and not self.records and not self.used:
            notes.append("opro: --opro-optimize ran but no test called opro.check(task): no prompt task was selected")
            status = pytest.ExitCode.NO_TESTS_COLLECTED
        by_scope: dict[str, int] = {}
        for record in self.records:
            add_scope_hits(by_scope, record.cache_hits_by_scope)
        if by_scope:  # a scoped Redis cache: where this run's answers came from
            notes.append(f"opro: {describe_cache_hits(sum(r.cache_hits for r in self.records), by_scope)}")
        if deselected == 0 and self.records:
            for path in self.obsolete_artifacts():
                notes.append(f"opro: obsolete artifact {path}: no task of that name ran; delete it if the task is gone")
        if self.options.report:
            from pytest_opro.reporting.json_report import write_report

            path = Path(self.options.report)
            write_report(self.report(), path)
            notes.append(f"opro: report written to {path}")
        if self.options.html:
            from pytest_opro.reporting.html import write_html

            path = Path(self.options.html)
            write_html(self.report(), [r.examples for r in self.records], path)
            notes.append(f"opro: HTML report written to {path}")
        if self.options.plot:
            from pytest_opro.reporting.plot import plot_report

            directory = Path(self.options.plot)
            written = plot_report(self.report(), directory)
            if written:
                notes.append(f"opro: {len(written)} plot{'s' if len(written) != 1 else ''} written to {directory}")
            else:
                notes.append(f"opro: no plot written to {directory}: no task had an optimisation history")
        return notes, status
