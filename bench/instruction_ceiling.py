"""How far can instruction wording alone move the embedded scorer on the prompt examples?

Scores a pool of instructions on every example of examples/sports, counting and navigate (their
conftests' tasks, unchanged): the baseline, the ``format`` proposer's phrasings, the ``classic``
library, and a few hand-written task hints. For each instruction it prints accuracy on validation
and test, the gain over the baseline on test and the one-sided paired sign-test p-value of that gain
(the gate's test, the other way round). The best instruction on test, picked in hindsight, bounds
what any optimiser could ship from this pool: when even it is not significantly better than the
baseline, a real run, which must pick on validation, cannot be.

    python bench/instruction_ceiling.py --cache /tmp/opro-ceiling-cache [--example sports]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from proposers_smollm2 import EXAMPLES, example_task  # noqa: E402

from pytest_opro.models.cache import open_cache  # noqa: E402
from pytest_opro.models.client import LLMClient, run_sync  # noqa: E402
from pytest_opro.opro.stats import sign_test_one_sided  # noqa: E402
from pytest_opro.prompts.instruction_problem import score_instructions  # noqa: E402
from pytest_opro.prompts.proposers import CLASSIC, format_phrasings  # noqa: E402
from pytest_opro.prompts.task import PromptTask  # noqa: E402

#: Task hints a person might write, by example (what the task is about, not its answers).
HINTS = {
    "sports": [
        "Decide whether the athlete named plays the sport that the action belongs to.",
        "Think about which sport the player is known for and whether the action fits that sport.",
        "If the action comes from a different sport than the player's, the sentence is implausible.",
        "Answer plausible only if the action is something that happens in the player's own sport.",
    ],
    "counting": [
        "Count only the items of the kind the question asks about, then give the total as a number.",
        "List the matching items with their numbers, add them up, and give the total.",
        "Add up how many of each item there are. The answer is a number.",
        "Read the list carefully, count the requested things, and reply with the number only.",
    ],
    "navigate": [
        "Keep track of your position: forward is plus, backward is minus; left and right are a second axis.",
        "Add the steps in each direction; if they cancel out, the answer is True, otherwise False.",
        "Sum the forward and backward steps and the left and right steps separately.",
        "Answer True only if you end exactly where you started.",
    ],
}


def pool(name: str, task: PromptTask) -> list[str]:
    """The baseline first, then format phrasings, classic instructions and hints (no repeats)."""
    texts = [task.initial_instruction, *format_phrasings(task), *CLASSIC, *HINTS[name]]
    return list(dict.fromkeys(texts))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cache", default="/tmp/opro-ceiling-cache")
    parser.add_argument("--example", action="append", choices=EXAMPLES)
    args = parser.parse_args()
    client = LLMClient(cache=open_cache(args.cache))
    for name in args.example or EXAMPLES:
        task = example_task(name)
        scorer = task.scorer_config()
        texts = pool(name, task)
        started = time.monotonic()
        by_split = {
            split: run_sync(score_instructions(task, client, scorer, texts, task.splits.get(split)))
            for split in ("validation", "test")
        }
        wall = time.monotonic() - started
        base_test = by_split["test"][0].outcomes or {}
        print(
            f"\n## {name} (scorer {scorer.model} {dict(scorer.params)}; validation "
            f"{len(task.splits.validation)}, test {len(task.splits.test)}; {wall:.0f} s)"
        )
        print("| instruction | validation | test | gain on test | better / worse | p (one-sided) |")
        print("|---|---:|---:|---:|---:|---:|")
        rows = []
        for i, text in enumerate(texts):
            test = by_split["test"][i]
            outcomes = test.outcomes or {}
            better = sum(1 for k, v in outcomes.items() if v > base_test.get(k, 0.0))
            worse = sum(1 for k, v in outcomes.items() if v < base_test.get(k, 0.0))
            p = sign_test_one_sided(better, worse)  # P(at least `better` improvements | no change)
            rows.append((test.value, text, by_split["validation"][i].value, better, worse, p))
        for test_value, text, val_value, better, worse, p in rows:
            label = (text or "(empty)") + (" (baseline)" if text == texts[0] else "")
            print(
                f"| {label} | {100 * val_value:.1f}% | {100 * test_value:.1f}% | "
                f"{100 * (test_value - rows[0][0]):+.1f} | {better} / {worse} | {p:.3f} |"
            )
        best = max(rows[1:], key=lambda r: (r[0], -r[5]))
        print(
            f"best on test in hindsight: {best[1]!r} {100 * best[0]:.1f}% vs baseline "
            f"{100 * rows[0][0]:.1f}%, p={best[5]:.3f}",
            flush=True,
        )


if __name__ == "__main__":
    main()
