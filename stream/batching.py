"""Routing of a batch's items into rounds and sequences.

A round takes one item of every series in it and is vectorised over series.
A sequence takes every item of one series and is vectorised over time. Both
give the same results, so the choice only minimises an estimated cost.
"""

from __future__ import annotations

import numpy as np


def sequence_cutoff(
    per_slot: np.ndarray,
    round_cost: float,
    sequence_cost: float,
    item_cost: float = 0.0,
) -> int:
    """Return c such that series with more than c items in a batch go as sequences.

    The others take c rounds. ``per_slot`` contains each series' item count in the
    batch (zeros are ignored). c minimises the estimated cost
    ``c * round_cost + sum(sequence_cost + item_cost * n)`` over the series
    whose count n is above c, where ``item_cost`` is what a sequence costs per
    item beyond what a round costs.
    """
    counts = np.sort(per_slot[per_slot > 0])
    candidates = np.concatenate([[0], np.unique(counts)])
    first_above = np.searchsorted(counts, candidates, side="right")
    above = len(counts) - first_above
    # items_above[i]: the items of the series counted in above[i].
    suffix_sums = np.concatenate([np.cumsum(counts[::-1])[::-1], [0]])
    items_above = suffix_sums[first_above]
    cost = candidates * round_cost + above * sequence_cost + items_above * item_cost
    return int(candidates[np.argmin(cost)])


def group_by(keys: np.ndarray, indices: np.ndarray) -> list[np.ndarray]:
    """Split ``indices`` into groups of equal ``keys`` (aligned with ``indices``).

    Groups come in key order, and each keeps its indices in input order.
    """
    if len(indices) == 0:
        return []
    order = np.argsort(keys, kind="stable")
    cuts = np.flatnonzero(np.diff(keys[order])) + 1
    return np.split(indices[order], cuts)
