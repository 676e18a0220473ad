"""Proposer mixes with the embedded model as optimizer and scorer, on the three prompt examples.

For each example task (examples/sports, counting, navigate, exactly as their conftests define
them) and each configuration, runs ``optimize()`` and prints: proposals by proposer, the valid
share (accepted / proposed after the starting points), rejections by reason, baseline and shipped
test scores, the one-sided paired sign-test p-value of the shipped gain on test (the gate's test,
other way round), calls and wall time. Artifacts are not written.

    python bench/proposers_smollm2.py --config opro --config mix --cache /tmp/opro-bench-cache

A configuration is ``name=proposers[;meta_prompt]``, e.g. ``mix=opro:1,edit:1,format:1,classic:1``
or ``compact=opro;compact``; the names ``opro`` and ``mix`` are shorthands.
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib.util
import json
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from pytest_opro import optimize  # noqa: E402
from pytest_opro.opro.stats import sign_test_one_sided  # noqa: E402
from pytest_opro.prompts.optimization import settings_for  # noqa: E402
from pytest_opro.prompts.task import PromptTask  # noqa: E402

EXAMPLES = ("sports", "counting", "navigate")
SHORTHANDS = {"opro": "opro", "mix": "opro:1,edit:1,format:1,classic:1"}


def example_task(name: str) -> PromptTask:
    """The task an example's conftest builds (its fixtures called in order)."""
    path = ROOT / "examples" / name / "conftest.py"
    spec = importlib.util.spec_from_file_location(f"example_{name}", path)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    fixtures = {k: getattr(module, k) for k in dir(module) if hasattr(getattr(module, k), "_get_wrapped_function")}
    examples = next(f for k, f in fixtures.items() if k.endswith("_examples"))._get_wrapped_function()()
    return next(f for k, f in fixtures.items() if k.endswith("_task"))._get_wrapped_function()(examples)


def measure(
    task: PromptTask, proposers: str, meta_prompt: str | None, cache: str, dump: Path | None = None
) -> dict[str, Any]:
    task = dataclasses.replace(task, meta_prompt=meta_prompt) if meta_prompt else task
    settings = dataclasses.replace(settings_for(task), proposers=proposers)
    started = time.monotonic()
    result = optimize(task, settings=settings, cache=cache)
    wall = time.monotonic() - started
    proposed = [c for c in result.trajectory if c.step > 0]
    by_proposer: dict[str, list[int]] = {}
    for c in proposed:
        counts = by_proposer.setdefault(c.proposer or "opro", [0, 0])
        counts[0] += 1
        counts[1] += c.rejection is None
    winner = result.scores["test"].outcomes or {}
    base = result.baseline_scores["test"].outcomes or {}
    ids = sorted(set(winner) & set(base))
    better = sum(winner[i] > base[i] for i in ids)
    worse = sum(winner[i] < base[i] for i in ids)
    usage = result.usage
    if dump is not None:
        dump.mkdir(parents=True, exist_ok=True)
        name = f"{task.name}-{proposers}-{meta_prompt or 'instruction'}".replace(":", "").replace(",", "_")
        (dump / f"{name}.json").write_text(json.dumps([c.to_dict() for c in result.trajectory], indent=1))
    return {
        "task": task.name,
        "proposers": proposers,
        "meta_prompt": meta_prompt or "instruction",
        "proposals": {k: f"{v[1]}/{v[0]} valid" for k, v in by_proposer.items()},
        "valid_share": round(sum(c.rejection is None for c in proposed) / len(proposed), 3) if proposed else None,
        "rejections": result.rejections,
        "baseline_test": round(result.baseline_scores["test"].value, 3),
        "shipped_test": round(result.scores["test"].value, 3),
        "shipped": result.instruction,
        "best_step": result.best_step,
        "p_gain": round(sign_test_one_sided(better, worse), 4),
        "better_worse": [better, worse],
        "calls": sum(int(m.get("calls", 0)) for m in usage.values()),
        "cache_hits": sum(int(m.get("cache_hits", 0)) for m in usage.values()),
        "wall_s": round(wall, 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", action="append", default=[], help="name=proposers[;meta_prompt]")
    parser.add_argument("--example", action="append", choices=EXAMPLES, default=[])
    parser.add_argument("--cache", default=str(ROOT / ".opro_cache"))
    parser.add_argument("--dump", type=Path, default=None, help="write each run's trajectory (JSON) here")
    args = parser.parse_args()
    configs = args.config or ["opro", "mix"]
    for example in args.example or EXAMPLES:
        task = example_task(example)
        for config in configs:
            name, _, spec = config.partition("=")
            proposers, _, meta = (spec or SHORTHANDS.get(name, name)).partition(";")
            row = measure(task, proposers, meta or None, args.cache, args.dump)
            print(json.dumps({"config": name, **row}, ensure_ascii=False), flush=True)


if __name__ == "__main__":
    main()
