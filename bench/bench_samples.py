"""Repeated samples benchmark: the gate on a nondeterministic scorer, with k = 1, 3 and 5 samples.

A scripted scorer, no model: example j is answered right with probability p_j, drawn afresh for
every call from a hash of (world seed, run, example, sample index). So the same sample index of
the same run always gives the same answer (as the cache replays it), and a new run (a CI job
without the cache, another machine) draws new answers. The examples are a realistic mix for a
reasoning model at temperature > 0: half are easy (p = 0.95), 30% harder (0.75) and 20% a coin
toss (0.5); the mean per-call accuracy is 0.80.

For each world seed the artifact is recorded from one run and the gate re-scores the committed
instruction in another run, both through the plugin's real scoring (``score_instructions``: k
calls per example with sample indices 0..k-1, graded and aggregated) and its real decision
(``decide``: the paired sign test on 0/1 outcomes, the sign-flip permutation test on graded
means, tolerance 2 points, alpha 0.05).

- **false fail**: the scorer did not change; how often does the gate fail? (target <= alpha)
- **power**: every example lost 15 points of per-call accuracy (mean 0.80 -> 0.65); how often
  does the gate catch it?

    python bench/bench_samples.py                  # the table in bench/RESULTS.md
    python bench/bench_samples.py --seeds 200 --n 40
"""

from __future__ import annotations

import argparse
import hashlib
import sys
import time
from pathlib import Path
from typing import Any, Sequence

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from pytest_opro import PromptTask  # noqa: E402
from pytest_opro.errors import ProviderError  # noqa: E402
from pytest_opro.models.client import run_sync  # noqa: E402
from pytest_opro.models.config import ModelConfig  # noqa: E402
from pytest_opro.models.usage import Completion  # noqa: E402
from pytest_opro.prompts.examples import examples_from_records  # noqa: E402
from pytest_opro.prompts.gate import decide  # noqa: E402
from pytest_opro.prompts.instruction_problem import score_instructions  # noqa: E402

SCORER = ModelConfig("scripted/noisy", params={"temperature": 1.0})
MIX = ((0.5, 0.95), (0.3, 0.75), (0.2, 0.5))  # (share of examples, per-call accuracy)
DROP = 0.15


class NoisyScorer:
    """A Completer whose answer to (example, sample index) is right with that example's probability."""

    def __init__(self, seed: int, run: str, accuracy: dict[str, float]) -> None:
        self.seed, self.run, self.accuracy = seed, run, accuracy

    def _right(self, ex_id: str, sample: int) -> bool:
        digest = hashlib.sha256(f"{self.seed}:{self.run}:{ex_id}:{sample}".encode()).digest()
        return int.from_bytes(digest[:8], "big") / 2**64 < self.accuracy[ex_id]

    async def complete_many(
        self, model: Any, requests: Sequence[tuple[list[dict[str, Any]], int]], /, *, role: str | None = None
    ) -> list[Completion | ProviderError]:
        out: list[Completion | ProviderError] = []
        for messages, sample in requests:
            ex_id = messages[-1]["content"].split("#", 1)[1].split(":", 1)[0]
            out.append(Completion(text="yes" if self._right(ex_id, sample) else "no"))
        return out


def make_task(n: int) -> tuple[PromptTask, dict[str, float]]:
    records = [{"id": f"e{j:03d}", "input": f"Item #e{j:03d}: is it so?", "target": "yes"} for j in range(n)]
    task = PromptTask(name="noisy", examples=examples_from_records(records), metric="exact", counts=(0, 0, n))
    accuracy: dict[str, float] = {}
    j = 0
    for share, p in MIX:
        for _ in range(round(share * n)):
            if j < n:
                accuracy[f"e{j:03d}"] = p
                j += 1
    while j < n:
        accuracy[f"e{j:03d}"] = MIX[0][1]
        j += 1
    return task, accuracy


def outcomes(task: PromptTask, scorer: NoisyScorer, k: int, aggregate: str) -> dict[str, float]:
    (score,) = run_sync(
        score_instructions(
            task, scorer, SCORER, ["Answer yes or no."], task.splits.test, samples=k, aggregate=aggregate
        )  # type: ignore[arg-type]
    )
    return dict(score.outcomes or {})


def rates(n: int, k: int, aggregate: str, seeds: int, tolerance: float, alpha: float) -> dict[str, float]:
    task, accuracy = make_task(n)
    dropped = {i: max(0.0, p - DROP) for i, p in accuracy.items()}
    false_fail = caught = 0
    tests: set[str] = set()
    for seed in range(seeds):
        recorded = outcomes(task, NoisyScorer(seed, "record", accuracy), k, aggregate)
        same, worse = (
            decide(
                recorded,
                outcomes(task, NoisyScorer(seed, "gate", world), k, aggregate),
                tolerance=tolerance,
                alpha=alpha,
                samples=k,
                aggregate=aggregate,
            )
            for world in (accuracy, dropped)
        )
        false_fail += not same.passed
        caught += not worse.passed
        tests.add(same.test)
    return {"false_fail": false_fail / seeds, "power": caught / seeds, "test": "/".join(sorted(tests))}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seeds", type=int, default=1000)
    parser.add_argument("--n", type=int, nargs="+", default=[60])
    parser.add_argument("--k", type=int, nargs="+", default=[1, 3, 5])
    parser.add_argument("--aggregate", nargs="+", default=["mean", "majority", "all"])
    parser.add_argument("--tolerance", type=float, default=0.02)
    parser.add_argument("--alpha", type=float, default=0.05)
    args = parser.parse_args(argv)
    print(
        f"seeds {args.seeds}; per-call accuracy mix {MIX} (mean 0.80); drop {DROP * 100:g} points per call; "
        f"tolerance {args.tolerance * 100:g} points, alpha {args.alpha:g}"
    )
    print("| n | k | aggregate | test | gate calls | false fail (unchanged) | power (15-point drop) |")
    print("|---:|---:|---|---|---:|---:|---:|")
    for n in args.n:
        for aggregate in args.aggregate:
            for k in args.k:
                if k == 1 and aggregate != args.aggregate[0]:
                    continue  # one sample: every aggregate is the sample itself
                started = time.monotonic()
                r = rates(n, k, aggregate, args.seeds, args.tolerance, args.alpha)
                print(
                    f"| {n} | {k} | {aggregate if k > 1 else '-'} | {r['test']} | {n * k} | "
                    f"{r['false_fail']:.3f} | {r['power']:.3f} |  <!-- {time.monotonic() - started:.0f}s -->",
                    flush=True,
                )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
