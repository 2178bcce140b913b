"""The Pareto front of an efficiency-effectiveness plane: the one copy (the report's plot and `cascade sweep`).

A point is (cost, quality): lower cost (latency, ms/query) is better, higher quality (a measure) is better.

Tie rule: point A dominates B when A costs at most as much and is at least as good, and is strictly better on one
of the two. So
- of two points with the same cost, only the better one is on the front (equal cost, lower quality is dominated);
- of two points with the same quality, only the cheaper one is on the front;
- points equal on both axes dominate neither each other: all of them are on the front (in input order).
A point missing a coordinate (None or NaN) is never on the front and dominates nothing.
"""

from __future__ import annotations

import math
from collections.abc import Sequence


def _usable(value: float | None) -> bool:
    return value is not None and not math.isnan(value)


def pareto_front(points: Sequence[tuple[float | None, float | None]]) -> list[int]:
    """Indices of the undominated (cost, quality) points, cheapest first (then best first, then input order)."""
    usable = [i for i, (cost, quality) in enumerate(points) if _usable(cost) and _usable(quality)]
    front: list[int] = []
    for i in sorted(usable, key=lambda i: (points[i][0], -points[i][1])):
        if not front:
            front.append(i)
            continue
        cost, quality = points[i]
        last_cost, last_quality = points[front[-1]]
        # Sorted by cost: every point kept so far costs at most as much, and the last kept is the best of them.
        if quality > last_quality or (quality == last_quality and cost == last_cost):
            front.append(i)
    return front
