"""Calls per second of the embedded model on short classification prompts, before and after.

Runs every variant on the same prompts in the same process, interleaved round by round (so a
change in machine load hits all variants alike), and prints the median calls/second per variant:

- ``naive``: llama-cpp-python's ``create_completion`` once per prompt, in the data's order, with
  its KV cache cleared before each call and its default thread count;
- ``naive-sorted``: the same, prompts sorted and the KV cache kept, so consecutive calls reuse the
  longest common token prefix (what the worker's ordering gives the single-sequence path);
- ``batched``: ``pytest_opro.models.local``'s decoder in this process: sorted, shared prefix
  evaluated once, all sequences decoded together on one multi-sequence context, thread count from
  :func:`default_threads` (prompts rendered and tokenized beforehand);
- ``batched-extra``: ``batched`` with llama.cpp's extra buffer types (repacked and AMX weight
  layouts) on, as llama-cpp-python loads models by default; pytest-opro turns them off;
- ``child``: what pytest-opro runs: the same decoder in the model's supervised child process, chat
  messages in and results out through its pipe (rendering and tokenizing included).

``--variants batched,child`` runs a subset.

Usage::

    python bench/local_throughput.py [--n 64] [--rounds 3] [--max-tokens 8] [--threads N]

Needs the ``local`` extra; the prompts come from the sports example (BIG-bench sports_understanding).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path
from typing import Any, Callable

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from pytest_opro.models import local  # noqa: E402
from pytest_opro.models.local import model as local_model  # noqa: E402
from pytest_opro.models.local.process import ModelProcess  # noqa: E402
from pytest_opro.models.local.sampling import GenerationResult  # noqa: E402

DATA = ROOT / "examples" / "sports" / "sports.jsonl"
INSTRUCTION = "Is the following sentence plausible? Answer with one word: plausible or implausible."


def load_prompts(n: int) -> list[list[dict[str, str]]]:
    rows = [json.loads(line) for line in DATA.read_text(encoding="utf-8").splitlines() if line.strip()]
    return [[{"role": "user", "content": f"{INSTRUCTION}\n\nSentence: {row['input']}"}] for row in rows[:n]]


def naive(llama: Any, prompts: list[str], max_tokens: int, keep_cache: bool) -> list[str]:
    order = sorted(prompts) if keep_cache else prompts
    out = []
    for prompt in order:
        if not keep_cache:
            llama.reset()
        result = llama.create_completion(prompt, max_tokens=max_tokens, temperature=0.0)
        out.append(result["choices"][0]["text"])
    return out


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--n", type=int, default=64, help="prompts per round")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--max-tokens", type=int, default=8)
    parser.add_argument("--threads", type=int, default=0, help="threads of the batched path (0: auto)")
    parser.add_argument("--variants", default="naive,naive-sorted,batched,child", help="comma-separated")
    args = parser.parse_args(argv)

    import llama_cpp

    path = str(local.smollm2_path())
    with local_model._quiet():
        llama = llama_cpp.Llama(model_path=path, verbose=False)  # all defaults: n_ctx 512, threads cpu/2
    model = local.LocalModel(path, n_threads=args.threads or None, name="local/smollm2")
    messages = load_prompts(args.n)
    texts = [model.render(m) for m in messages]
    params = {"temperature": 0, "max_tokens": args.max_tokens}
    extra: list[local.LocalModel] = []

    def with_extra() -> local.LocalModel:
        if not extra:
            extra.append(
                local.LocalModel(path, n_threads=model.n_threads, name="local/smollm2", extra_buffer_types=True)
            )
        return extra[0]

    requests = [model.request(m, params) for m in messages]
    child = ModelProcess(Path(path), "local/smollm2", model.n_threads)

    def in_child() -> list[str]:
        return [
            r.text if isinstance(r, GenerationResult) else str(r)
            for r in child.generate([(m, params) for m in messages])
        ]

    every: dict[str, Callable[[], list[str]]] = {
        "naive": lambda: naive(llama, texts, args.max_tokens, keep_cache=False),
        "naive-sorted": lambda: naive(llama, texts, args.max_tokens, keep_cache=True),
        "batched": lambda: [r.text for r in model.generate(requests)],
        "batched-extra": lambda: [r.text for r in with_extra().generate(requests)],
        "child": in_child,
    }
    variants = {name: every[name] for name in args.variants.split(",")}
    print(
        f"{len(requests)} prompts ({min(len(r.tokens) for r in requests)}-"
        f"{max(len(r.tokens) for r in requests)} tokens), max_tokens={args.max_tokens}, "
        f"cpus={os.cpu_count()}, physical cores={local.physical_cores()}, naive threads={llama.n_threads}, "
        f"batched threads={model.n_threads}, load average={os.getloadavg()[0]:.2f}",
        flush=True,
    )
    rates: dict[str, list[float]] = {name: [] for name in variants}
    outputs: dict[str, list[str]] = {}
    for round_ in range(args.rounds):
        for name, run in variants.items():
            start = time.perf_counter()
            outputs[name] = run()
            seconds = time.perf_counter() - start
            rates[name].append(len(requests) / seconds)
            print(
                f"round {round_ + 1} {name:13s} {len(requests) / seconds:7.2f} calls/s "
                f"({seconds:.2f} s, load {os.getloadavg()[0]:.2f})",
                flush=True,
            )
    print("\nmedian calls/second (ratio to the first variant)")
    base = statistics.median(next(iter(rates.values())))
    for name, values in rates.items():
        median = statistics.median(values)
        print(f"  {name:13s} {median:7.2f}   x{median / base:.2f}")
    child.close()
    if "naive-sorted" in outputs and "batched" in outputs:
        naive_sorted = dict(zip(sorted(texts), outputs["naive-sorted"]))
        agree = sum(naive_sorted[t] == b for t, b in zip(texts, outputs["batched"]))
        print(
            f"batched output equal to naive output on {agree}/{len(texts)} prompts (both greedy; the naive "
            "path runs llama-cpp-python's default attention kernel, the batched path flash attention)"
        )
    for other in ("batched-extra", "child"):
        if "batched" in outputs and other in outputs:
            same = sum(a == b for a, b in zip(outputs["batched"], outputs[other]))
            print(f"{other} output equal to batched output on {same}/{len(texts)} prompts")


if __name__ == "__main__":
    main()
