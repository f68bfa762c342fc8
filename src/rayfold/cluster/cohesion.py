"""How tight each final cluster is, so chaining shows in the tables instead of hiding behind a count.

For every multi-member cluster a seeded sample of members (bottom-k of a seeded hash of the fragment
id: the same members whatever else is in the set) is TM-aligned to the representative; the clusters
table carries the min and median of min(TM_a, TM_b) over the sample and the member length range.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from rayfold.cluster.rules import seeded_hash


@dataclass(frozen=True)
class Cohesion:
    sampled: np.ndarray  # per fragment index that is a representative: members sampled (0 elsewhere)
    min_tm: np.ndarray  # NaN where nothing was sampled
    median_tm: np.ndarray


def cohesion_pairs(cluster_rep: np.ndarray, ids: Sequence[str], per_cluster: int, seed: int) -> np.ndarray:
    """(member, representative) pairs: up to `per_cluster` members of each cluster, representative excluded."""
    cluster_rep = np.asarray(cluster_rep, dtype=np.int64)
    members = np.flatnonzero(cluster_rep != np.arange(len(cluster_rep)))
    if per_cluster <= 0 or not len(members):
        return np.zeros((0, 2), np.int64)
    hashes = np.fromiter((seeded_hash(seed, ids[m]) for m in members.tolist()), np.uint64, len(members))
    order = np.lexsort((hashes, cluster_rep[members]))  # by cluster, then hash
    members = members[order]
    reps = cluster_rep[members]
    first = np.searchsorted(reps, reps, side="left")  # index where each cluster's run starts
    keep = (np.arange(len(members)) - first) < per_cluster
    return np.column_stack([members[keep], reps[keep]])


def summarise(pairs: np.ndarray, tm_min: np.ndarray, n: int) -> Cohesion:
    sampled = np.zeros(n, np.int64)
    low = np.full(n, np.nan)
    mid = np.full(n, np.nan)
    if len(pairs):
        reps = pairs[:, 1]
        order = np.argsort(reps, kind="stable")
        reps, scores = reps[order], np.asarray(tm_min, dtype=np.float64)[order]
        starts = np.flatnonzero(np.r_[True, reps[1:] != reps[:-1]])
        for start, stop in zip(starts.tolist(), np.r_[starts[1:], len(reps)].tolist()):
            r = int(reps[start])
            sampled[r] = stop - start
            low[r] = float(scores[start:stop].min())
            mid[r] = float(np.median(scores[start:stop]))
    return Cohesion(sampled, low, mid)
