"""In what order a brief's renders run: the spots need all their scenes, so the renders go in
the order that completes spots the soonest, and finishing (spot assembly) starts while the
other renders go on instead of after them. Pure: keys in, keys out."""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping


def spots_first(candidates: Iterable[str], spot_needs: Collection[frozenset[str]],
                uses: Mapping[str, int], done: Collection[str] = ()) -> list[str]:
    """`candidates` (render keys) in the order to run them. Greedy: next comes the render that
    completes the most spots together with the renders stored (`done`) or ordered before it;
    on a tie, the one most variants wait on (`uses`: a scene nothing is said in serves every
    language), then the key, so the order is stable.

    `spot_needs`: for each spot, the render keys of its scenes."""
    have = set(done)
    remaining = sorted(set(candidates))
    order: list[str] = []
    while remaining:
        def rank(key: str) -> tuple[int, int, str]:
            completes = sum(1 for need in spot_needs if key in need and need <= have | {key})
            return -completes, -uses.get(key, 0), key

        best = min(remaining, key=rank)
        order.append(best)
        have.add(best)
        remaining.remove(best)
    return order
