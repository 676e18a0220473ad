"""``--opro-shard K/N``: this job runs the K-th of N disjoint sets of tests whose union is all of them.

Why our own option rather than pytest-xdist plus a sharding plugin: pytest-xdist spreads tests over
the processes of one machine (and combines with this: ``-n 4 --opro-shard 2/4``), not over the jobs
of a CI matrix. The sharding plugins that do (pytest-shard, pytest-split) hash test ids, which for a
handful of prompt tests leaves some jobs with two and others with none, or need a stored timing
file; and the shards' reports must be merged into one the pull request reads, which they do not do.
Here the prompt tests (those using the ``opro`` fixture) are dealt out round-robin in node-id order,
then the other tests likewise, so the prompt tests of N jobs differ by at most one; and each shard
writes its index into its JSON report so ``python -m pytest_opro.reporting merge`` can check that
the reports it combines are all N shards, once each.

Every job must collect the same tests (same checkout, same arguments apart from the shard).
"""

from __future__ import annotations

import re
from typing import Any, Sequence

_SHARD = re.compile(r"^\s*(\d+)\s*/\s*(\d+)\s*$")


def parse_shard(value: str) -> tuple[int, int]:
    """(K, N) from "K/N" with 1 <= K <= N; ValueError otherwise."""
    match = _SHARD.match(str(value))
    if not match:
        raise ValueError("must be K/N, e.g. 2/4 for the second of four shards")
    k, n = int(match.group(1)), int(match.group(2))
    if n < 1 or not 1 <= k <= n:
        raise ValueError(f"must be K/N with 1 <= K <= N, e.g. 2/4 (got {k}/{n})")
    return k, n


def is_prompt_test(item: Any) -> bool:
    return "opro" in getattr(item, "fixturenames", ())


def split(items: Sequence[Any], k: int, n: int) -> tuple[list[Any], list[Any]]:
    """(kept, deselected): shard `k` of `n`, in the items' own order.

    Prompt tests and other tests are each dealt out round-robin over the shards in node-id order.
    """
    chosen: set[int] = set()
    for group in ([i for i in items if is_prompt_test(i)], [i for i in items if not is_prompt_test(i)]):
        ordered = sorted(group, key=lambda item: item.nodeid)
        chosen.update(id(item) for position, item in enumerate(ordered) if position % n == k - 1)
    kept = [item for item in items if id(item) in chosen]
    dropped = [item for item in items if id(item) not in chosen]
    return kept, dropped
