"""The OPRO loop over any :class:`Problem`: propose with a meta-prompt, score, keep the best.

The loop knows nothing about prompts. A Problem describes itself to the meta-prompt, parses
solutions out of optimizer text and scores batches of solutions; instructions, regression
coefficients and tours all fit.
"""

from __future__ import annotations

import dataclasses
import random
import time
from dataclasses import asdict, dataclass, field
from typing import Any, Callable

from pytest_opro.errors import BudgetExhausted, ProviderError
from pytest_opro.opro.checkpoint import Checkpoint
from pytest_opro.opro.collapse import distribution, rejection, target_share
from pytest_opro.opro.meta_prompt import build_meta_prompt
from pytest_opro.opro.mix import DEFAULT_PROPOSER, INITIAL
from pytest_opro.opro.problem import (
    Completer,
    Parsed,
    Problem,
    Reply,
    Score,
    check_failure_rate,
    score_sign,
    supports_example_scoring,
)
from pytest_opro.opro.proposers import ProposerPlan, allocate, parse_mix, repeats_prompt
from pytest_opro.opro.racing import RaceStats, race, stratified_order
from pytest_opro.opro.selection import Selection, select
from pytest_opro.opro.settings import OptimizerSettings
from pytest_opro.opro.stopping import EarlyStopping, StopReason
from pytest_opro.opro.trajectory import Candidate, LoopSplit, Trajectory, normalise


@dataclass
class StepReport:
    """What one step did, for progress lines and plots."""

    step: int
    max_steps: int
    proposed: int
    accepted: int
    step_best_train: float | None
    step_best_validation: float | None
    best_train: float | None
    best_validation: float | None
    calls: int
    cache_hits: int
    cost_usd: float
    elapsed: float
    #: Candidates of this step scored on validation whose answers collapsed onto one value.
    collapsed: list[dict[str, Any]] = field(default_factory=list)
    # Racing: candidates stopped early on train, train scorer calls made, finalists not validated
    # because they scored below the best earlier candidate on train, and the scorer calls (train and
    # validation) saved against full scoring (0 and the full train count with screening="off").
    screened_out: int = 0
    train_calls: int = 0
    calls_saved: int = 0
    not_validated: int = 0

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class LoopResult:
    """Everything the loop learnt: the winner, the trajectory, why it stopped."""

    best: Candidate
    baseline: list[Candidate]
    trajectory: Trajectory
    steps_run: int
    #: Why it stopped, as shown to people (``stopped.text(...)``).
    stop_reason: str
    reports: list[StepReport] = field(default_factory=list)
    best_step: int = 0
    selection: Selection | None = None
    #: Why it stopped, for code.
    stopped: StopReason = StopReason.MAX_STEPS

    @property
    def rejections(self) -> dict[str, int]:
        return dict(self.trajectory.rejections())

    @property
    def proposals(self) -> dict[str, int]:
        return dict(self.trajectory.proposals())


@dataclass(frozen=True)
class _Text:
    """A model-free proposal, judged like an optimizer reply."""

    text: str


StepCallback = Callable[[StepReport], None]
CandidateCallback = Callable[[Candidate], None]


class _Run:
    """State of one loop run; split out so each step reads as a few named phases."""

    def __init__(
        self,
        problem: Problem,
        client: Completer,
        settings: OptimizerSettings,
        on_step: StepCallback | None,
        on_candidate: CandidateCallback | None,
        checkpoint: Checkpoint | None,
    ) -> None:
        self.problem = problem
        self.client = client
        self.settings = settings
        self.on_step = on_step
        self.on_candidate = on_candidate
        self.checkpoint = checkpoint
        self.trajectory = Trajectory(higher_is_better=problem.higher_is_better)
        self.stopper = EarlyStopping(settings.patience, settings.min_delta, problem.higher_is_better)
        self.reports: list[StepReport] = []
        self.step = 0
        self.started = time.monotonic()
        self.elapsed_before = 0.0
        # Per-example train outcomes of the best fully scored candidates: the race's incumbents.
        self.incumbents: dict[str, dict[str, float]] = {}
        self.race_stats = RaceStats()  # this step's racing figures
        self.not_validated = 0  # this step's finalists that lost to the incumbent on train

    # -- phases -----------------------------------------------------------------------------
    async def score_candidates(self, candidates: list[Candidate], split: LoopSplit) -> None:
        if not candidates:
            return
        scores = await self.problem.score([c.text for c in candidates], split)
        for cand, score in zip(candidates, scores):
            if split == "train":
                cand.train, cand.train_failures, cand.train_n = score.value, score.failures, score.n
                self._keep_incumbent(cand, score.outcomes)
            else:
                cand.validation, cand.validation_failures, cand.validation_n = score.value, score.failures, score.n
                if score.outcomes is not None:
                    cand.validation_outcomes = dict(score.outcomes)
                if score.answers is not None:
                    cand.validation_answers = distribution(score.answers.values())
        self._check_failures(scores, split)

    def racing(self) -> bool:
        """Whether this run races candidates (``screening="race"`` on a problem that can score subsets)."""
        return self.settings.screening == "race" and supports_example_scoring(self.problem)

    def split_size(self, split: str) -> int:
        """Examples in `split` of a problem that scores examples one by one (0 for one that cannot)."""
        problem: Any = self.problem  # implements ExampleScoring when supports_example_scoring says so
        return len(problem.example_strata(split)) if supports_example_scoring(problem) else 0

    def worth_validating(self, finalists: list[Candidate], incumbent: Candidate | None) -> list[Candidate]:
        """The race's last rung: with racing, a finalist goes on to validation only when its train score
        is at least the best earlier candidate's (`incumbent`); a finalist below it could win only on
        validation noise, and each extra comparison weakens the winner's Holm-corrected test."""
        if not self.racing() or incumbent is None or incumbent.train is None:
            return finalists
        sign = score_sign(self.problem.higher_is_better)
        bar = sign * incumbent.train
        kept = [c for c in finalists if c.train is not None and sign * c.train >= bar - 1e-12]
        self.not_validated = len(finalists) - len(kept)
        if self.not_validated:
            saved = self.race_stats.calls_saved + self.not_validated * self.split_size("validation")
            self.race_stats = dataclasses.replace(self.race_stats, calls_saved=saved)
        return kept

    async def score_train(self, candidates: list[Candidate]) -> None:
        """Score a step's candidates on train: raced (``screening="race"``) or each on all of it."""
        settings = self.settings
        problem: Any = self.problem  # implements ExampleScoring when supports_example_scoring says so
        if not self.racing() or not candidates:
            await self.score_candidates(candidates, "train")
            self.race_stats = RaceStats(train_calls=len(candidates) * self.split_size("train"))
            return
        order = stratified_order(problem.example_strata("train"), seed=f"{settings.seed}:{self.step}:race")
        best = self.trajectory.top(1)
        incumbent = self.incumbents.get(normalise(best[0].text)) if best else None

        async def score_examples(texts: list[str], ids: list[str]) -> list[Score]:
            return list(await problem.score_examples(texts, "train", ids))

        result = await race(
            [c.text for c in candidates],
            order,
            score_examples,
            first=settings.race_minibatch,
            keep=settings.validate_top,
            rule=settings.race_rule,
            alpha=settings.race_alpha,
            incumbent=incumbent,
            higher_is_better=self.problem.higher_is_better,
            on_rung=lambda scores: self._check_failures(scores, "train"),
        )
        for cand, entrant, done in zip(candidates, result.entrants, result.finished):
            score = entrant.score()
            cand.train_failures, cand.train_n = score.failures, score.n
            if done:
                cand.train = score.value
                self._keep_incumbent(cand, score.outcomes)
            else:
                cand.partial_train = score.value
        self.race_stats = result.stats()

    def _keep_incumbent(self, cand: Candidate, outcomes: dict[str, float] | None) -> None:
        """Remember the train outcomes of the best few fully scored candidates (for racing)."""
        if not outcomes or cand.train is None:
            return
        self.incumbents[normalise(cand.text)] = dict(outcomes)
        keep = {normalise(c.text) for c in self.trajectory.top(3)}
        self.incumbents = {k: v for k, v in self.incumbents.items() if k in keep}

    def _check_failures(self, scores: list[Score], split: str) -> None:
        failed = sum(s.failures for s in scores)
        total = sum(s.n + s.failures for s in scores)
        cause = next((s.error for s in scores if s.error), None)
        check_failure_rate(failed, total, f"scorer calls on {split}", self.settings.max_failure_rate, cause)

    async def propose(self) -> list[Candidate]:
        settings = self.settings
        rng = random.Random(f"{settings.seed}:{self.step}")
        top = self.trajectory.top(settings.top_k)
        variables = dict(self.problem.meta_prompt_variables(self.step, rng))
        variables.update(
            trajectory=self.shown_trajectory(top),
            show_scores=settings.show_scores,
            step=self.step,
        )
        meta = build_meta_prompt(self.problem.meta_prompt, variables)
        messages = [{"role": "user", "content": meta}]
        seen = self.trajectory.seen()
        mix = parse_mix(settings.proposers)
        # The mix draws from its own generator: the exemplars shown stay those of an OPRO-only run.
        plan = ProposerPlan(
            self.problem, variables, messages, top, seen, random.Random(f"{settings.seed}:{self.step}:proposers")
        )
        accepted: list[Candidate] = []
        wanted = settings.candidates
        for attempt in range(settings.reask + 1):
            base = self.step * 10_000 + attempt * settings.candidates
            proposals = [plan.proposal(name) for name in allocate(mix, wanted, plan.rng)]
            requests = [(p.messages, base + i) for i, p in enumerate(proposals) if p.messages is not None]
            asked = [index - base for _, index in requests]
            replies = (
                await self.client.complete_many(self.problem.optimizer, requests, role="optimizer") if requests else []
            )
            failed = sum(isinstance(r, ProviderError) for r in replies)
            # An outage must stop the run, not burn steps whose candidates all "failed".
            check_failure_rate(failed, len(replies), "optimizer calls", settings.max_failure_rate)
            answers: dict[int, Reply | ProviderError] = dict(zip(asked, replies))
            for i, proposal in enumerate(proposals):
                reply = answers.get(i, _Text(proposal.text or ""))
                skeleton = plan.opro_skeleton if proposal.proposer == DEFAULT_PROPOSER else proposal.skeleton
                cand = self._judge(reply, base + i, seen, proposal.proposer, skeleton)
                self.trajectory.add(cand)
                if cand.rejection is None:
                    accepted.append(cand)
                    seen.add(normalise(cand.text))
            wanted = settings.candidates - len(accepted)
            if wanted <= 0:
                break
        return accepted

    def shown_trajectory(self, top: list[Candidate]) -> list[dict[str, Any]]:
        """The instructions and scores the meta-prompt shows, worst first.

        Fully scored candidates only, unless ``race_show_partial``: then the best candidates a race
        stopped early join them, ranked by their partial score and marked with the examples behind it
        (``n`` of ``of``).
        """
        settings = self.settings
        shown: list[tuple[float, Candidate, int | None]] = [(c.train, c, None) for c in top if c.train is not None]
        if settings.race_show_partial and self.racing():
            seen = {normalise(c.text) for c in top}
            stopped: dict[str, Candidate] = {}
            for c in self.trajectory.candidates:
                key = normalise(c.text)
                if (
                    c.partial_train is not None
                    and key not in seen
                    and (key not in stopped or c.partial_train > (stopped[key].partial_train or 0.0))
                ):
                    stopped[key] = c
            shown += [(c.partial_train or 0.0, c, c.train_n) for c in stopped.values()]
            sign = score_sign(self.problem.higher_is_better)
            shown = sorted(shown, key=lambda item: sign * item[0])[-settings.top_k :]
        items: list[dict[str, Any]] = []
        for value, cand, n in shown:
            item: dict[str, Any] = {"text": cand.text, "score": self.problem.format_score(value, settings)}
            if n is not None:
                item.update(n=n, of=self.split_size("train"))
            items.append(item)
        return items

    def _judge(
        self,
        reply: Reply | ProviderError,
        call: int,
        seen: set[str],
        proposer: str = DEFAULT_PROPOSER,
        skeleton: str = "",
    ) -> Candidate:
        def rejected(text: str, reason: str) -> Candidate:
            return Candidate(self.step, text, rejection=reason, call=call, proposer=proposer)

        if isinstance(reply, ProviderError):
            return rejected("", "optimizer call failed")
        # A model-free proposal is already an instruction; optimizer text is parsed.
        parsed = Parsed(reply.text) if isinstance(reply, _Text) else self.problem.parse(reply.text)
        text = (parsed.solution or "").strip()
        if parsed.rejection:
            return rejected(text[: self.settings.max_chars], parsed.rejection)
        if not normalise(text):
            return rejected("", "empty")
        if len(text) > self.settings.max_chars:
            return rejected(text[: self.settings.max_chars] + "…", "too long")
        if normalise(text) in seen:
            return rejected(text, "duplicate")
        if repeats_prompt(text, skeleton):
            return rejected(text, "repeats the meta-prompt")
        screen = getattr(self.problem, "screen", None)
        reason = screen(text) if screen is not None else None
        if reason:
            return rejected(text, reason)
        return Candidate(self.step, text, call=call, proposer=proposer)

    @property
    def decisive(self) -> LoopSplit:
        """The split that decides: validation when the problem has one, else train."""
        return "validation" if self.problem.has_validation else "train"

    def best_so_far(self, split: LoopSplit) -> float | None:
        values = [v for v in (c.score_on(split) for c in self.trajectory.scored()) if v is not None]
        if not values:
            return None
        return max(values) if self.problem.higher_is_better else min(values)

    def _pick(self, candidates: list[Candidate], split: LoopSplit, k: int) -> list[Candidate]:
        """The best `k` of `candidates` on `split` (ties: the earlier call), best first."""
        sign = score_sign(self.problem.higher_is_better)
        scored = [(v, c) for c, v in ((c, c.score_on(split)) for c in candidates) if v is not None]
        ranked = sorted(scored, key=lambda item: (sign * item[0], -item[1].call), reverse=True)
        return [c for _, c in ranked[:k]]

    def winner(self, baseline: list[Candidate]) -> tuple[Candidate, Selection | None]:
        """The winner, and how it was chosen.

        With per-example validation outcomes (prompt tasks), :func:`pytest_opro.opro.selection.select`
        decides: a candidate replaces the best baseline solution only when a paired one-sided test
        on validation says it is better at ``select_alpha``, in a fixed sequence ordered by train
        score, and by more than ``min_delta``; with ``collapse="reject"`` a candidate whose answers
        collapsed (:meth:`collapse_rejection`) is not shipped. Problems without such outcomes (or
        without validation) take the best score, when it beats the baseline by more than ``min_delta``.
        """
        split = self.decisive
        scored = [c for c in self.trajectory.scored() if c.score_on(split) is not None]
        sign = score_sign(self.problem.higher_is_better)

        def value(c: Candidate) -> float:
            score = c.score_on(split)
            assert score is not None  # `scored` holds only candidates scored on `split`
            return score

        def key(c: Candidate) -> tuple[float, float, int, int]:
            return (sign * value(c), sign * (c.train or 0.0), -c.step, -c.call)

        if not scored:
            return baseline[0], None
        base = [c for c in scored if c.step == 0]
        if (
            self.problem.has_validation
            and self.problem.higher_is_better
            and base
            and all(c.validation_outcomes is not None for c in base)
        ):
            base_best = max(base, key=key)
            compared = [c for c in scored if c.step > 0 and c.validation_outcomes is not None]
            chosen, selection = select(
                base_best,
                compared,
                outcomes=lambda c: c.validation_outcomes,
                score=lambda c: c.validation,
                alpha=self.settings.select_alpha,
                min_delta=self.settings.min_delta,
                seed=self.settings.seed,
                order=lambda c: c.train,
                rejected=self.collapse_rejection if self.settings.collapse == "reject" else None,
            )
            k = self.settings.samples
            if k > 1:  # the outcomes compared are aggregates of k samples: say so
                selection.reason += f" (each example scored {k} times, {self.settings.aggregate} of the {k})"
            return chosen, selection
        best = max(scored, key=key)
        if base and best.step > 0:
            base_best = max(base, key=key)
            gain = sign * (value(best) - value(base_best))
            if gain <= self.settings.min_delta:
                return base_best, None
        return best, None

    def collapse_rejection(self, cand: Candidate) -> str | None:
        """Why `cand` may not ship because its validation answers collapsed onto one value while the
        task's targets (train and validation) are less concentrated (:func:`pytest_opro.opro.collapse.rejection`)."""
        if cand.validation_answers is None or cand.validation_outcomes is None:
            return None
        targets = None
        if supports_example_scoring(self.problem):
            problem: Any = self.problem  # implements ExampleScoring: example_strata gives each target
            # the task's targets on train and validation: steadier than validation's alone
            targets = target_share(
                [*problem.example_strata("train").values(), *problem.example_strata("validation").values()]
            )
        return rejection(cand.validation_answers, len(cand.validation_outcomes), targets, self.settings.collapse_share)

    def collapsed(self, candidates: list[Candidate]) -> list[dict[str, Any]]:
        """The answer collapses among `candidates` scored on validation."""
        flagged = []
        for c in candidates:
            found = c.validation_collapse(self.settings.collapse_share)
            if found is not None:
                flagged.append({"step": c.step, "call": c.call, **found.to_dict()})
        return flagged

    def report(self, accepted: list[Candidate]) -> StepReport:
        total = self.client.usage_totals()
        best_train = self._pick(accepted, "train", 1)
        best_val = self._pick(accepted, "validation", 1)
        rep = StepReport(
            step=self.step,
            max_steps=self.settings.max_steps,
            proposed=sum(1 for c in self.trajectory.candidates if c.step == self.step),
            accepted=len(accepted),
            step_best_train=best_train[0].train if best_train else None,
            step_best_validation=best_val[0].validation if best_val else None,
            best_train=self.best_so_far("train"),
            best_validation=self.best_so_far("validation"),
            calls=total.calls,
            cache_hits=total.cache_hits,
            cost_usd=total.cost_usd,
            elapsed=self.elapsed_before + time.monotonic() - self.started,
            collapsed=self.collapsed([c for c in accepted if c.validation is not None]),
            screened_out=self.race_stats.screened_out,
            train_calls=self.race_stats.train_calls,
            calls_saved=self.race_stats.calls_saved,
            not_validated=self.not_validated,
        )
        self.reports.append(rep)
        return rep

    # -- checkpoint ----------------------------------------------------------------------------
    def save(self) -> None:
        if self.checkpoint is None:
            return
        self.checkpoint.save(
            {
                "step": self.step,
                "trajectory": self.trajectory.to_list(),
                "stopper": self.stopper.state(),
                "reports": [r.to_dict() for r in self.reports],
                "ledger": self.client.usage_state(),
                "incumbents": self.incumbents,
                "elapsed": self.elapsed_before + time.monotonic() - self.started,
            }
        )

    def restore(self) -> bool:
        state = self.checkpoint.load() if self.checkpoint is not None else None
        if not state:
            return False
        self.step = int(state["step"])
        self.trajectory.candidates = [Candidate.from_dict(c) for c in state["trajectory"]]
        self.stopper.restore(state["stopper"])
        self.reports = [StepReport(**r) for r in state["reports"]]
        self.client.restore_usage(state["ledger"])
        self.incumbents = {k: dict(v) for k, v in dict(state.get("incumbents") or {}).items()}
        self.elapsed_before = float(state.get("elapsed", 0.0))
        return True

    # -- the loop ------------------------------------------------------------------------------
    async def baseline(self) -> None:
        initial = [
            Candidate(0, text, call=i, proposer=INITIAL) for i, text in enumerate(self.problem.initial_solutions())
        ]
        self.trajectory.extend(initial)
        await self.score_candidates(initial, "train")
        if self.problem.has_validation:
            await self.score_candidates(initial, "validation")
        first = self._pick(initial, self.decisive, 1)
        if first:
            self.stopper.update(first[0].score_on(self.decisive))
        for cand in initial:
            self._emit_candidate(cand)
        self.save()

    def _emit_candidate(self, cand: Candidate) -> None:
        if self.on_candidate is not None:
            self.on_candidate(cand)

    async def one_step(self) -> bool:
        """Run step `self.step`; return True when early stopping says enough."""
        accepted = await self.propose()
        incumbent = next(iter(self.trajectory.top(1)), None)  # the best earlier candidate on train
        self.not_validated = 0
        await self.score_train(accepted)
        if self.problem.has_validation:
            chosen = self.worth_validating(self._pick(accepted, "train", self.settings.validate_top), incumbent)
            await self.score_candidates(chosen, "validation")
        for cand in (c for c in self.trajectory.candidates if c.step == self.step):
            self._emit_candidate(cand)
        step_best = self._pick(accepted, self.decisive, 1)
        if self.decisive == "validation" and not step_best and not self.settings.patience_counts_unvalidated:
            stop = False  # nothing validated (every finalist lost to the incumbent on train): not a stale step
        else:
            stop = self.stopper.update(step_best[0].score_on(self.decisive) if step_best else None)
        rep = self.report(accepted)
        self.save()
        if self.on_step is not None:
            self.on_step(rep)
        return stop

    def reached_optimum(self) -> bool:
        check = getattr(self.problem, "is_optimal", None)
        best = self.best_so_far("train")
        return bool(check and best is not None and check(best))

    async def run(self) -> LoopResult:
        resumed = self.restore()
        if not resumed:
            await self.baseline()
        baseline = [c for c in self.trajectory.candidates if c.step == 0]
        stopped, detail = await self.steps()
        best, selection = self.winner(baseline)
        return LoopResult(
            best=best,
            baseline=baseline,
            trajectory=self.trajectory,
            steps_run=self.step,
            stop_reason=stopped.text(detail),
            reports=self.reports,
            best_step=best.step,
            selection=selection,
            stopped=stopped,
        )

    async def steps(self) -> tuple[StopReason, object]:
        """Run steps until one stop rule holds; return it and the detail its text shows."""
        no_gain = (StopReason.NO_GAIN, self.stopper.patience)
        try:
            while self.step < self.settings.max_steps:
                if self.reached_optimum():
                    return StopReason.OPTIMUM, ""
                if self.stopper.patience and self.stopper.stale_steps >= self.stopper.patience:
                    return no_gain
                self.step += 1
                if await self.one_step():
                    return no_gain
        except BudgetExhausted as exc:
            # Drop the unfinished step: its paid calls are in the response cache.
            self.trajectory.candidates = [c for c in self.trajectory.candidates if c.step < self.step]
            self.step -= 1
            return StopReason.BUDGET, exc
        if self.reached_optimum():
            return StopReason.OPTIMUM, ""
        return StopReason.MAX_STEPS, self.settings.max_steps


async def run_loop(
    problem: Problem,
    client: Completer,
    settings: OptimizerSettings | None = None,
    *,
    on_step: StepCallback | None = None,
    on_candidate: CandidateCallback | None = None,
    checkpoint: Checkpoint | None = None,
) -> LoopResult:
    """Optimise `problem`; stops at max_steps, on early stopping, at the optimum or at a budget."""
    run = _Run(problem, client, settings or OptimizerSettings(), on_step, on_candidate, checkpoint)
    return await run.run()


__all__ = ["CandidateCallback", "LoopResult", "StepCallback", "StepReport", "run_loop"]
