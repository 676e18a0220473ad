"""A 100-example choice task optimised with default settings on the embedded model: how long?

The task declares only what a new user must (template, metric, examples, ``local/smollm2`` as
scorer and optimizer); steps, candidates, splits, racing and the models' parameters are the
defaults. Prints the estimate, scorer and optimizer calls, racing's savings and the wall time of a
cold-cache run (a fresh cache directory per run)::

    python bench/bench_embedded_defaults.py --data sports   # or navigate; --screening off to compare
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from pytest_opro import PromptTask, load_examples, metrics, optimize  # noqa: E402
from pytest_opro.prompts.optimization import estimate, settings_for  # noqa: E402

DATA = {
    "sports": (
        ROOT / "bench" / "data" / "sports_understanding_100.jsonl",
        'Sentence: "{{ input }}"\nIs this sentence plausible or implausible?',
        "Q_begin",
    ),
    "navigate": (
        ROOT / "bench" / "data" / "navigate_100.jsonl",
        "If you follow these instructions, do you return to the starting point? Answer True or False.\n{{ input }}",
        "Q_begin",
    ),
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", choices=sorted(DATA), default="sports")
    parser.add_argument(
        "--screening",
        choices=("race", "off"),
        default=None,
        help="override the default screening (to compare racing with full scoring)",
    )
    args = parser.parse_args()
    path, template, position = DATA[args.data]
    task = PromptTask(
        name=f"{args.data}_100",
        template=template,
        position=position,
        examples=load_examples(path),
        metric=metrics.choice,
        scorer="local/smollm2",
        optimizer="local/smollm2",
    )
    settings = settings_for(task, {"screening": args.screening} if args.screening else None)
    splits = task.splits
    est = estimate(task, settings, task.scorer_config(), task.optimizer_config())
    print(
        f"{args.data}: {len(task.examples)} examples, splits train {len(splits.train)} / "
        f"validation {len(splits.validation)} / test {len(splits.test)}"
    )
    print(
        f"settings: {settings.max_steps} steps x {settings.candidates} candidates, screening "
        f"{settings.screening}, minibatch {settings.race_minibatch}; scorer params "
        f"{dict(task.scorer_config().params)}; optimizer params {dict(task.optimizer_config().params)}"
    )
    print(f"estimate: {est.describe()}")
    with tempfile.TemporaryDirectory() as cache:
        started = time.monotonic()
        result = optimize(
            task,
            settings=settings,
            cache=cache,
            on_step=lambda r: print(
                f"  step {r.step}: {r.accepted} accepted, screened out {r.screened_out}, "
                f"{time.monotonic() - started:.0f} s",
                flush=True,
            ),
        )
        wall = time.monotonic() - started
    print(f"WALL {wall:.1f} s ({wall / 60:.1f} min)", flush=True)
    roles = result.usage_by_role
    scorer_calls = roles.get("scorer", {}).get("calls")
    optimizer_calls = roles.get("optimizer", {}).get("calls")
    screened = sum(r.screened_out for r in result.reports)
    saved = sum(r.calls_saved for r in result.reports)
    print(
        f"steps run {result.steps_run} ({result.stop_reason}); scorer calls {scorer_calls}, "
        f"optimizer calls {optimizer_calls}; racing screened out {screened}, saved {saved} calls"
    )
    print(
        f"baseline test {result.baseline_scores['test'].value:.1%} -> shipped test "
        f"{result.scores['test'].value:.1%} ({result.instruction!r})"
    )


if __name__ == "__main__":
    main()
