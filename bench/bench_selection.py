"""Selection benchmark: how often does each winner rule ship an instruction that is truly worse?

A simulated world, no model: every instruction has a known true accuracy, and its outcome on each
example is drawn with realistic correlation. Examples have an easiness u_j ~ N(0, 1); instruction i
gets example j right when  sqrt(rho) * u_j + sqrt(1 - rho) * e_ij > -Phi^-1(acc_i), with e_ij ~ N(0, 1)
its own idiosyncrasy on that example. So every instruction's true accuracy is exactly acc_i, two
instructions' outcomes are correlated through the shared easiness (latent correlation rho), and an
instruction "shifts" how hard the examples are. Outcomes are fixed per (instruction, example), as
with a scorer at temperature 0.

A scripted optimizer proposes `steps` x `candidates` instructions whose true accuracies are chosen by
the scenario; the loop's screen is reproduced: every proposal is scored on train, the best
`validate_top` of each step (by train) on validation. The rules then pick the shipped instruction
on the same worlds:

- **paper**: the best train score among the baseline and all proposals (OPRO as published: no validation);
- **old**: the best validation score, shipped when it beats the baseline by more than `min_delta`;
- **Holm**: :func:`pytest_opro.opro.selection.select` with ``rule="holm"``, the earlier rule: paired
  one-sided test on validation, Holm-corrected over every candidate compared;
- **default**: ``select`` as the loop calls it: the same tests, alpha shared by a weighted Holm
  procedure with 80% of it on the candidate best on train;
- the other designs compared (a fixed sequence in train order, one finalist chosen on train, Holm over
  the finalists above the baseline on train, alpha spent over steps) and the one-test ceiling, printed
  beside each row.

Reported per rule: false-ship rate (the shipped instruction is truly worse than the baseline),
ship-better rate (truly better), mean true gain of the shipped instruction over the baseline,
regret (best true accuracy among baseline and proposals minus the shipped one) and scorer calls.

    python bench/bench_selection.py                 # the table in bench/RESULTS.md (a few seconds a world)
    python bench/bench_selection.py --seeds 100     # quicker
"""

from __future__ import annotations

import argparse
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from statistics import NormalDist
from typing import Callable

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from pytest_opro.opro.collapse import distribution, rejection, target_share  # noqa: E402
from pytest_opro.opro.selection import Rule, holm, select  # noqa: E402
from pytest_opro.opro.stats import paired_test  # noqa: E402

ORACLE = "ceiling: oracle, one exact test of the truly best at 0.05"
HOLM = "Holm over every candidate validated (the earlier rule), alpha 0.05"
SEQUENCE = "fixed sequence in train order, 0.05"
FINALIST = "one finalist (best on train), one test at 0.05"
BEATERS = "Holm over the finalists above the baseline on train, 0.05"
SPENDING = "alpha spent over steps (0.05 / 2^step), 0.05"

BASE_ACC = 0.60
_PHI_INV = NormalDist().inv_cdf


@dataclass
class World:
    """One scenario: the proposals' true gains over the baseline, in points."""

    name: str
    gains: Callable[[np.random.Generator, int], np.ndarray]
    better_exists: bool


def _all(value: float) -> Callable[[np.random.Generator, int], np.ndarray]:
    return lambda rng, p: np.full(p, value)


def _one(best: float, rest: float) -> Callable[[np.random.Generator, int], np.ndarray]:
    def gains(rng: np.random.Generator, p: int) -> np.ndarray:
        out = np.full(p, rest)
        out[rng.integers(p)] = best
        return out

    return gains


def _spread(rng: np.random.Generator, p: int) -> np.ndarray:
    return rng.normal(-5.0, 6.0, p)


WORLDS = [
    World("all -1", _all(-1.0), False),
    World("all -2", _all(-2.0), False),
    World("all -5", _all(-5.0), False),
    World("one +10, rest -2", _one(10.0, -2.0), True),
    World("one +20, rest -2", _one(20.0, -2.0), True),
    World("mixed N(-5, 6)", _spread, True),  # a truly better proposal exists in most seeds, not all
]
NULL_WORLDS = [w.name for w in WORLDS if not w.better_exists]


@dataclass
class Setup:
    n_train: int = 20
    n_val: int = 40
    steps: int = 4
    candidates: int = 8
    validate_top: int = 2
    rho: float = 0.8
    min_delta: float = 0.0
    old_min_delta: tuple[float, ...] = (0.0, 0.1)
    alphas: tuple[float, ...] = (0.05,)


@dataclass
class _C:
    step: int
    call: int
    acc: float
    train: float
    validation: float | None = None
    outcomes: dict[str, float] | None = None


@dataclass
class Tally:
    runs: int = 0
    worse: int = 0
    better: int = 0
    gain: float = 0.0
    regret: float = 0.0
    calls: int = 0
    better_runs: int = 0  # runs where a truly better proposal existed
    gain_when_better: float = 0.0
    shipped_better_when_exists: int = 0
    extra: dict = field(default_factory=dict)

    def add(self, shipped_acc: float, best_acc: float, calls: int, better_exists: bool) -> None:
        self.runs += 1
        delta = shipped_acc - BASE_ACC
        self.worse += delta < -1e-9
        self.better += delta > 1e-9
        self.gain += delta
        self.regret += best_acc - shipped_acc
        self.calls += calls
        if better_exists:
            self.better_runs += 1
            self.gain_when_better += delta
            self.shipped_better_when_exists += delta > 1e-9


def outcomes(rng: np.random.Generator, accs: np.ndarray, n: int, rho: float) -> np.ndarray:
    """0/1 outcomes, shape (instructions, n): correlated through each example's easiness."""
    u = rng.standard_normal(n)
    e = rng.standard_normal((len(accs), n))
    latent = np.sqrt(rho) * u[None, :] + np.sqrt(1 - rho) * e
    thresholds = np.array([-_PHI_INV(min(max(a, 1e-6), 1 - 1e-6)) for a in accs])
    return (latent > thresholds[:, None]).astype(float)


def _adjusted(rule: str, p_values: list[float], train: list[float], steps: list[int], base_train: float) -> list[float]:
    """Adjusted p-values of the designs compared with the default (the library implements the
    default and Holm; these are the other designs the README's choice was made against)."""
    m = len(p_values)
    order = sorted(range(m), key=lambda i: -train[i])  # stable: ties keep the earlier candidate
    if rule == FINALIST:
        return [p_values[i] if i == order[0] else 1.0 for i in range(m)]
    if rule == BEATERS:
        beat = [i for i in range(m) if train[i] > base_train + 1e-12]
        adjusted = [1.0] * m
        for i, adj in zip(beat, holm([p_values[i] for i in beat])):
            adjusted[i] = adj
        return adjusted
    if rule == SPENDING:  # step s spends alpha / 2^s, shared by the step's candidates (Bonferroni)
        per_step = {s: steps.count(s) for s in steps}
        return [min(1.0, p_values[i] * 2.0 ** steps[i] * per_step[steps[i]]) for i in range(m)]
    raise ValueError(rule)


def draw(rng: np.random.Generator, world: World, setup: Setup) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """One world's true accuracies of the proposals, and the train and validation outcomes of the
    baseline (row 0) and every proposal."""
    p = setup.steps * setup.candidates
    accs = np.clip(BASE_ACC + world.gains(rng, p) / 100.0, 0.01, 0.99)
    out = outcomes(rng, np.concatenate([[BASE_ACC], accs]), setup.n_train + setup.n_val, setup.rho)
    return accs, out[:, : setup.n_train], out[:, setup.n_train :]


def screened(train: np.ndarray, setup: Setup) -> list[int]:
    """The proposals (rows of `train`) the loop validates: the best `validate_top` of each step on train."""
    chosen: list[int] = []
    for step in range(setup.steps):
        members = range(1 + step * setup.candidates, 1 + (step + 1) * setup.candidates)
        chosen += sorted(members, key=lambda k: (-train[k].mean(), k))[: setup.validate_top]
    return chosen


def one_run(rng: np.random.Generator, world: World, setup: Setup, tallies: dict[str, Tally]) -> None:
    p = setup.steps * setup.candidates
    accs, train, val = draw(rng, world, setup)
    all_accs = np.concatenate([[BASE_ACC], accs])
    cands = [_C(0, 0, BASE_ACC, float(train[0].mean()))]
    for i in range(p):
        cands.append(_C(1 + i // setup.candidates, i % setup.candidates, float(accs[i]), float(train[i + 1].mean())))
    ids = [f"v{j}" for j in range(setup.n_val)]

    def validate(k: int) -> None:
        cands[k].validation = float(val[k].mean())
        cands[k].outcomes = dict(zip(ids, val[k].tolist()))

    validate(0)
    for k in screened(train, setup):
        validate(k)
    best_acc = float(all_accs.max())
    better_exists = bool((accs > BASE_ACC + 1e-9).any())
    train_calls = (p + 1) * setup.n_train
    val_calls = (1 + setup.steps * setup.validate_top) * setup.n_val

    # paper: best on train (ties to the earlier)
    paper = max(cands, key=lambda c: (c.train, -c.step, -c.call))
    tallies["paper (best on train)"].add(paper.acc, best_acc, train_calls, better_exists)
    validated = [c for c in cands[1:] if c.validation is not None]
    best_val = max(validated, key=lambda c: (c.validation, -c.step, -c.call))
    for md in setup.old_min_delta:
        shipped = best_val if best_val.validation - cands[0].validation > md + 1e-12 else cands[0]
        tallies[f"old (best on val, min_delta {md:g})"].add(
            shipped.acc, best_acc, train_calls + val_calls, better_exists
        )

    def choose(alpha: float, rule: Rule) -> _C:
        winner, _ = select(
            cands[0],
            validated,
            outcomes=lambda c: c.outcomes,
            score=lambda c: c.validation,
            alpha=alpha,
            min_delta=setup.min_delta,
            order=lambda c: c.train,
            rule=rule,
        )
        return winner

    tallies[HOLM].add(choose(0.05, "holm").acc, best_acc, train_calls + val_calls, better_exists)
    for alpha in setup.alphas:
        tallies[_default(alpha)].add(choose(alpha, "weighted").acc, best_acc, train_calls + val_calls, better_exists)
    tallies[SEQUENCE].add(choose(0.05, "sequence").acc, best_acc, train_calls + val_calls, better_exists)
    p_values = [paired_test(val[0].tolist(), list((c.outcomes or {}).values())).p_value for c in validated]
    gains_val = [(c.validation or 0.0) - (cands[0].validation or 0.0) for c in validated]
    for rule in (FINALIST, BEATERS, SPENDING):
        adjusted = _adjusted(rule, p_values, [c.train for c in validated], [c.step for c in validated], cands[0].train)
        confirmed = [i for i in range(len(validated)) if adjusted[i] < 0.05 and gains_val[i] > 1e-12]
        shipped = (
            max((validated[i] for i in confirmed), key=lambda c: (c.validation, -c.step, -c.call))
            if confirmed
            else cands[0]
        )
        tallies[rule].add(shipped.acc, best_acc, train_calls + val_calls, better_exists)
    # The ceiling of any valid test: an oracle that knows which proposal is truly best and runs one
    # exact paired test of it at 0.05 on validation (no train screen, nothing to correct for).
    top = 1 + int(np.argmax(accs))
    test = paired_test(val[0].tolist(), val[top].tolist())
    shipped = cands[top] if test.p_value < 0.05 else cands[0]
    tallies[ORACLE].add(shipped.acc, best_acc, train_calls + val_calls, better_exists)


def _default(alpha: float) -> str:
    return f"Holm weighted by train order, 80% of alpha on the best (default), alpha {alpha:g}"


def rule_names(setup: Setup) -> list[str]:
    return [
        "paper (best on train)",
        *[f"old (best on val, min_delta {md:g})" for md in setup.old_min_delta],
        HOLM,
        *[_default(a) for a in setup.alphas],
        SEQUENCE,
        FINALIST,
        BEATERS,
        SPENDING,
        ORACLE,
    ]


def world_rng(seed: int, world: World, setup: Setup) -> np.random.Generator:
    """The random draws of one seed of `world` at `setup`'s validation size and rho (every table
    of this benchmark sees the same worlds)."""
    salt = sum(ord(ch) * (i + 1) for i, ch in enumerate(world.name))
    return np.random.default_rng([seed, setup.n_val, int(setup.rho * 1000), salt])


def run_world(world: World, setup: Setup, seeds: int) -> dict[str, Tally]:
    tallies = {name: Tally() for name in rule_names(setup)}
    for seed in range(seeds):
        one_run(world_rng(seed, world, setup), world, setup, tallies)
    return tallies


def _pct(x: float) -> str:
    return f"{x:.1%}" if x < 0.1 else f"{x:.0%}"


def summary_table(results: dict[int, dict[str, dict[str, Tally]]], setup: Setup) -> list[str]:
    """One row per validation size and rule: the figures the targets are about."""
    lines = [
        "| validation | rule | false-ship, worst null world | ships better: one +10 (one-test ceiling) "
        "| ships better: one +20 (one-test ceiling) | mean gain when a better one exists (pts) | regret (pts) "
        "| scorer calls |",
        "|---:|---|---:|---:|---:|---:|---:|---:|",
    ]
    for n_val, by_world in results.items():
        ceiling = {
            w: by_world[w][ORACLE].shipped_better_when_exists / by_world[w][ORACLE].better_runs
            for w in ("one +10, rest -2", "one +20, rest -2")
        }
        for rule in rule_names(setup):
            worst = max(by_world[w][rule].worse / by_world[w][rule].runs for w in NULL_WORLDS)
            plus10 = by_world["one +10, rest -2"][rule]
            plus20 = by_world["one +20, rest -2"][rule]
            better = [by_world[w.name][rule] for w in WORLDS if w.better_exists]
            gain = sum(t.gain_when_better for t in better) / sum(t.better_runs for t in better)
            regret = sum(t.regret for t in by_world.values() for t in [t[rule]]) / sum(
                t[rule].runs for t in by_world.values()
            )
            calls = by_world[WORLDS[0].name][rule].calls // by_world[WORLDS[0].name][rule].runs
            lines.append(
                f"| {n_val} | {rule} | {_pct(worst)} "
                f"| {_pct(plus10.shipped_better_when_exists / plus10.better_runs)} ({_pct(ceiling['one +10, rest -2'])}) "
                f"| {_pct(plus20.shipped_better_when_exists / plus20.better_runs)} ({_pct(ceiling['one +20, rest -2'])}) "
                f"| {gain * 100:+.1f} "
                f"| {regret * 100:.1f} | {calls} |"
            )
    return lines


def detail_table(results: dict[int, dict[str, dict[str, Tally]]], setup: Setup) -> list[str]:
    """Every world: false-ship and ship-better rates, mean gain and regret."""
    lines = [
        "| validation | world | rule | false-ship | ships better | mean gain (pts) | regret (pts) |",
        "|---:|---|---|---:|---:|---:|---:|",
    ]
    for n_val, by_world in results.items():
        for world, tallies in by_world.items():
            for rule, t in tallies.items():
                lines.append(
                    f"| {n_val} | {world} | {rule} | {_pct(t.worse / t.runs)} | {_pct(t.better / t.runs)} "
                    f"| {t.gain / t.runs * 100:+.1f} | {t.regret / t.runs * 100:.1f} |"
                )
    return lines


def sensitivity(args: argparse.Namespace) -> None:
    """False-ship (worst null world) and ships-better at +10 / +20, for each rho and validation size."""
    rules = None
    rows: dict[str, list[str]] = {}
    for rho in args.rho:
        for n_val in args.val:
            setup = Setup(n_val=n_val, rho=rho, alphas=tuple(args.alphas))
            rules = [r for r in rule_names(setup) if r != ORACLE]
            by_world = {w.name: run_world(w, setup, args.seeds) for w in WORLDS if w.name != "mixed N(-5, 6)"}
            for rule in rules:
                worst = max(by_world[w][rule].worse / by_world[w][rule].runs for w in NULL_WORLDS)
                p10 = by_world["one +10, rest -2"][rule]
                p20 = by_world["one +20, rest -2"][rule]
                rows.setdefault(rule, []).append(
                    f"{_pct(worst)} / {_pct(p10.shipped_better_when_exists / p10.runs)} / "
                    f"{_pct(p20.shipped_better_when_exists / p20.runs)}"
                )
    head = " | ".join(f"rho {rho:g}, val {n}" for rho in args.rho for n in args.val)
    print("false-ship (worst null world) / ships better with one +10 / with one +20\n")
    print(f"| rule | {head} |")
    print("|---|" + "---:|" * (len(args.rho) * len(args.val)))
    for rule in rules or []:
        print(f"| {rule} | " + " | ".join(rows[rule]) + " |")


#: The collapse world: targets "yes" with this probability; the baseline's replies are unreadable
#: except on COLLAPSE_BASE of the examples (where it is right); "always yes" is right on every yes.
COLLAPSE_YES = 0.6
COLLAPSE_BASE = 0.35
COLLAPSE_VARIED = 0.55  # the truly better proposal: right this often, the other label otherwise


def collapse_run(rng: np.random.Generator, setup: Setup, mode: str) -> str:
    """One collapse world: which instruction shipped ("constant", "varied", "baseline" or "other")."""
    p = setup.steps * setup.candidates
    n = setup.n_train + setup.n_val
    yes = rng.random(n) < COLLAPSE_YES
    accs = np.full(p + 1, COLLAPSE_BASE - 0.02)  # the other proposals: 2 points worse than the baseline
    accs[0] = COLLAPSE_BASE
    constant, varied = 1 + rng.choice(p, size=2, replace=False)
    accs[varied] = COLLAPSE_VARIED
    right = outcomes(rng, accs, n, setup.rho)
    right[constant] = yes.astype(float)
    answers: list[list[str | None]] = []
    for k in range(p + 1):
        if k == constant:
            answers.append(["yes"] * n)
        elif k == 0:  # unreadable unless right
            answers.append([("yes" if yes[j] else "no") if right[0, j] else None for j in range(n)])
        else:  # a label either way: the target when right, the other one when wrong
            answers.append([("yes" if yes[j] == bool(right[k, j]) else "no") for j in range(n)])
    val_ids = [f"v{j}" for j in range(setup.n_val)]
    val = slice(setup.n_train, n)
    cands = [_C(0, 0, float(accs[0]), float(right[0, : setup.n_train].mean()))]
    for i in range(p):
        k = i + 1
        cands.append(
            _C(1 + i // setup.candidates, i % setup.candidates, float(accs[k]), float(right[k, : setup.n_train].mean()))
        )
    validated = [0]
    for step in range(1, setup.steps + 1):
        members = [k for k in range(1, p + 1) if cands[k].step == step]
        members.sort(key=lambda k: (-cands[k].train, cands[k].call))
        validated += members[: setup.validate_top]
    for k in validated:
        cands[k].validation = float(right[k, val].mean())
        cands[k].outcomes = dict(zip(val_ids, right[k, val].tolist()))
    targets = target_share("yes" if y else "no" for y in yes)  # train and validation, as the loop does

    def why(c: _C) -> str | None:
        k = cands.index(c)
        return rejection(distribution(answers[k][val]), setup.n_val, targets)

    winner, _ = select(
        cands[0],
        [c for c in cands[1:] if c.validation is not None],
        outcomes=lambda c: c.outcomes,
        score=lambda c: c.validation,
        alpha=0.05,
        order=lambda c: c.train,
        rejected=why if mode == "reject" else None,
    )
    if winner is cands[0]:
        return "baseline"
    return "constant" if winner is cands[constant] else "varied" if winner is cands[varied] else "other"


def collapse_table(seeds: int, sizes: list[int], rho: float) -> list[str]:
    """How often each proposal of the collapse world ships, with collapse "reject" and "flag"."""
    lines = [
        "| validation | collapse | constant answer ships | varied better one ships | baseline kept | another ships |",
        "|---:|---|---:|---:|---:|---:|",
    ]
    for n_val in sizes:
        for mode in ("reject", "flag"):
            setup = Setup(n_val=n_val, rho=rho)
            shipped = [collapse_run(np.random.default_rng([seed, n_val, 7]), setup, mode) for seed in range(seeds)]
            share = {who: shipped.count(who) / seeds for who in ("constant", "varied", "baseline", "other")}
            lines.append(
                f"| {n_val} | {mode} | {_pct(share['constant'])} | {_pct(share['varied'])} "
                f"| {_pct(share['baseline'])} | {_pct(share['other'])} |"
            )
    return lines


def identification_table(seeds: int, sizes: list[int], rho: float) -> list[str]:
    """Where a truly better proposal is lost before any multiplicity rule acts: how often it is
    validated at all, how often it is also the best on train among those validated (what a rule
    ordered by train bets on), and how often one exact test of it passes. "validated and passes" is
    the ceiling of every rule that validates the loop's finalists and tests at alpha: even a rule
    that paid nothing for multiplicity would ship the better proposal no more often."""
    rows = [
        "| validation | world | validated | best on train among the validated | one exact test at 0.05 passes "
        "| validated and passes (ceiling of any rule) |",
        "|---:|---|---:|---:|---:|---:|",
    ]
    for n_val in sizes:
        setup = Setup(n_val=n_val, rho=rho)
        for world in (w for w in WORLDS if w.name.startswith("one +")):
            validated = first = passes = both = 0
            for seed in range(seeds):
                accs, train, val = draw(world_rng(seed, world, setup), world, setup)
                top = 1 + int(np.argmax(accs))
                chosen = screened(train, setup)
                passed = paired_test(val[0].tolist(), val[top].tolist()).p_value < 0.05
                validated += top in chosen
                first += max(chosen, key=lambda k: (train[k].mean(), -k)) == top
                passes += passed
                both += top in chosen and passed
            rows.append(
                f"| {n_val} | {world.name} | {_pct(validated / seeds)} | {_pct(first / seeds)} | "
                f"{_pct(passes / seeds)} | {_pct(both / seeds)} |"
            )
    return rows


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seeds", type=int, default=500)
    parser.add_argument(
        "--rho",
        type=float,
        nargs="+",
        default=[0.8],
        help="latent correlation between instructions' outcomes (default 0.8)",
    )
    parser.add_argument("--val", type=int, nargs="+", default=[20, 40, 80])
    parser.add_argument("--alphas", type=float, nargs="+", default=[0.05], help="levels of the default rule")
    parser.add_argument("--detail", action="store_true", help="also print every world")
    parser.add_argument("--collapse", action="store_true", help="only the collapse world")
    parser.add_argument(
        "--identification",
        action="store_true",
        help="only where a truly better proposal is lost: screened out, not first on train, or its test",
    )
    parser.add_argument(
        "--sensitivity",
        action="store_true",
        help="only the worst null-world false-ship rate per rule, validation size and rho",
    )
    args = parser.parse_args(argv)
    started = time.perf_counter()
    if args.sensitivity:
        sensitivity(args)
        print(f"\n{time.perf_counter() - started:.1f} s ({time.process_time():.1f} s CPU)")
        return
    if args.identification:
        for rho in args.rho:
            print(f"\n#### rho {rho:g}: {args.seeds} seeds per row\n")
            print("\n".join(identification_table(args.seeds, args.val, rho)))
        print(f"\n{time.perf_counter() - started:.1f} s ({time.process_time():.1f} s CPU)")
        return
    if args.collapse:
        print(
            f"\n#### collapse world: targets {COLLAPSE_YES:.0%} yes; baseline right on {COLLAPSE_BASE:.0%} and "
            f"unreadable elsewhere; one proposal answers yes to everything ({COLLAPSE_YES:.0%}), one varied "
            f"{COLLAPSE_VARIED:.0%}, the rest {COLLAPSE_BASE - 0.02:.0%}; {args.seeds} seeds per row\n"
        )
        for rho in args.rho:
            print("\n".join(collapse_table(args.seeds, args.val, rho)))
        print(f"\n{time.perf_counter() - started:.1f} s ({time.process_time():.1f} s CPU)")
        return
    for rho in args.rho:
        results: dict[int, dict[str, dict[str, Tally]]] = {}
        for n_val in args.val:
            setup = Setup(n_val=n_val, rho=rho, alphas=tuple(args.alphas))
            results[n_val] = {w.name: run_world(w, setup, args.seeds) for w in WORLDS}
        print(
            f"\n#### rho {rho:g}: train {setup.n_train}, {setup.steps} steps x {setup.candidates} candidates, "
            f"{setup.steps * setup.validate_top} validated, baseline {BASE_ACC:.0%}, {args.seeds} seeds per cell\n"
        )
        print("\n".join(summary_table(results, setup)))
        if args.detail:
            print()
            print("\n".join(detail_table(results, setup)))
    print(f"\n{time.perf_counter() - started:.1f} s ({time.process_time():.1f} s CPU)")


if __name__ == "__main__":
    main()
