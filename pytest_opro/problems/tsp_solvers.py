"""Reference tours for the travelling salesman problem: nearest neighbour, farthest insertion,
2-opt, and the exact optimum by Held–Karp dynamic programming.

Every tour is a list of node indices that starts at node 0 and visits each node once; its length
includes the edge back to node 0.
"""

from __future__ import annotations

import math
from itertools import permutations
from typing import Sequence

Point = tuple[int, int]
Tour = list[int]

#: Largest instance :func:`held_karp` accepts: time grows as n² · 2ⁿ (n=12 takes well under a second).
HELD_KARP_MAX_NODES = 12


def distance_matrix(points: Sequence[Point]) -> list[list[float]]:
    """Euclidean distances between every pair of points."""
    return [[math.dist(p, q) for q in points] for p in points]


def tour_length(tour: Sequence[int], dist: Sequence[Sequence[float]]) -> float:
    """Length of the closed tour (including the edge from the last node back to the first)."""
    if len(tour) < 2:
        return 0.0
    return sum(dist[tour[i - 1]][tour[i]] for i in range(len(tour)))


def is_valid_tour(tour: Sequence[int], n: int) -> bool:
    """True when `tour` starts at node 0 and visits each of the `n` nodes exactly once."""
    return len(tour) == n and n > 0 and tour[0] == 0 and sorted(tour) == list(range(n))


def nearest_neighbour(dist: Sequence[Sequence[float]]) -> Tour:
    """From node 0, always go to the closest unvisited node (ties: lowest index)."""
    n = len(dist)
    if n == 0:
        return []
    tour, unvisited = [0], set(range(1, n))
    while unvisited:
        last = tour[-1]
        nxt = min(unvisited, key=lambda j: (dist[last][j], j))
        tour.append(nxt)
        unvisited.remove(nxt)
    return tour


def farthest_insertion(dist: Sequence[Sequence[float]]) -> Tour:
    """Start with node 0 and the node farthest from it; repeatedly take the node farthest from the
    tour and insert it where it lengthens the tour least."""
    n = len(dist)
    if n <= 2:
        return list(range(n))
    first = max(range(1, n), key=lambda j: (dist[0][j], -j))
    tour = [0, first]
    # distance from every outside node to its nearest tour node
    gap = {j: min(dist[j][0], dist[j][first]) for j in range(1, n) if j != first}
    while gap:
        node = max(gap, key=lambda j: (gap[j], -j))
        del gap[node]
        best_pos, best_cost = 1, math.inf
        for i in range(len(tour)):
            a, b = tour[i], tour[(i + 1) % len(tour)]
            cost = dist[a][node] + dist[node][b] - dist[a][b]
            if cost < best_cost - 1e-12:
                best_pos, best_cost = i + 1, cost
        tour.insert(best_pos, node)
        for j in gap:
            gap[j] = min(gap[j], dist[j][node])
    return tour


def two_opt(tour: Sequence[int], dist: Sequence[Sequence[float]]) -> Tour:
    """Improve `tour` by reversing segments while any reversal shortens it (first improvement).

    The result is never longer than the input and still starts at node 0.
    """
    best = list(tour)
    n = len(best)
    if n < 4:
        return best
    improved = True
    while improved:
        improved = False
        for i in range(1, n - 1):
            for j in range(i + 1, n):
                a, b = best[i - 1], best[i]
                c, d = best[j], best[(j + 1) % n]
                if a == d:
                    continue
                delta = dist[a][c] + dist[b][d] - dist[a][b] - dist[c][d]
                if delta < -1e-9:
                    best[i : j + 1] = reversed(best[i : j + 1])
                    improved = True
    return best


def held_karp(dist: Sequence[Sequence[float]]) -> Tour:
    """An optimal tour by Held–Karp dynamic programming (exact; at most HELD_KARP_MAX_NODES nodes)."""
    n = len(dist)
    if n > HELD_KARP_MAX_NODES:
        raise ValueError(f"held_karp handles at most {HELD_KARP_MAX_NODES} nodes, got {n}")
    if n <= 3:
        return list(range(n))
    m = n - 1  # nodes 1..n-1 are bit positions 0..m-1
    full = (1 << m) - 1
    inf = math.inf
    cost = [[inf] * m for _ in range(1 << m)]
    parent = [[-1] * m for _ in range(1 << m)]
    for k in range(m):
        cost[1 << k][k] = dist[0][k + 1]
    for subset in range(1, full + 1):
        row = cost[subset]
        for last in range(m):
            here = row[last]
            if here == inf or not subset >> last & 1:
                continue
            from_last = dist[last + 1]
            for nxt in range(m):
                if subset >> nxt & 1:
                    continue
                grown = subset | 1 << nxt
                value = here + from_last[nxt + 1]
                if value < cost[grown][nxt]:
                    cost[grown][nxt] = value
                    parent[grown][nxt] = last
    last = min(range(m), key=lambda k: (cost[full][k] + dist[k + 1][0], k))
    reverse, subset = [], full
    while last != -1:
        reverse.append(last + 1)
        previous = parent[subset][last]
        subset &= ~(1 << last)
        last = previous
    return [0] + reverse[::-1]


def brute_force(dist: Sequence[Sequence[float]]) -> Tour:
    """An optimal tour by trying every permutation (for checking the others; n ≤ 9 or so)."""
    n = len(dist)
    if n <= 3:
        return list(range(n))
    best = min(permutations(range(1, n)), key=lambda rest: tour_length((0, *rest), dist))
    return [0, *best]


__all__ = [
    "HELD_KARP_MAX_NODES",
    "brute_force",
    "distance_matrix",
    "farthest_insertion",
    "held_karp",
    "is_valid_tour",
    "nearest_neighbour",
    "tour_length",
    "two_opt",
]
