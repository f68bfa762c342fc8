"""How first-pass clusters are joined into final clusters: the cluster semantics (pure, no Ray).

Evidence is a list of TM-aligned pairs at min(TM_a, TM_b) >= the merge threshold whose fragments
sit in different first-pass clusters: representative pairs from the audit (source
'representatives') and member pairs the first pass already aligned (source 'members').

- `method`: the published procedure. Union-find over representative evidence only. Misses real
  pairs whose representatives score lower than the pair itself (PF04034's A0A1M2VTE1/A0A4Q9LQ12:
  0.73 as a pair, 0.51 between their representatives).
- `single`: union-find over all evidence. Full recall, but single linkage: on repeat families a
  33-residue piece chains to a 47, a 67 ... a 389-residue solenoid, every link legal, the ends
  unrelated (one cluster took 41% of a 1,926-fragment set).
- `guarded` (default): all evidence, strongest first, but two clusters merge only when every
  first-pass representative of the cluster that gives up its representative reaches min-TM >= the
  guard (0.5, fold level) against the merged cluster's representative. A refused pair is kept
  together if one of its members (not a first-pass representative) reaches the guard against the
  other's cluster representative: that member moves. Every final cluster is then a star: its
  representative, first-pass representatives and moved members within the guard of it, and the
  other members within the first pass's test of their first-pass representative. Scores the guard
  needs are TM-aligned on demand, in batches.

A merged cluster's representative is the representative of its largest first-pass cluster (ties:
`rank`): a function of the clusters alone, so a release and a fresh run agree on every id.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass

import numpy as np

from rayfold.cluster.pairscores import PairScores
from rayfold.model.unionfind import UnionFind

LINKAGES = ("guarded", "single", "method")

# decision per evidence row
MERGED = "merged"  # this pair joined two clusters
REDUNDANT = "redundant"  # its clusters were already one when it was reached
REFUSED = "refused"  # guarded: the merged cluster would not stay within the guard of its representative
IGNORED = "ignored"  # method: member evidence is not used
REASSIGNED = "reassigned"  # guarded: refused as a merge, the pair joined by moving one member (see _reassign)

Scorer = Callable[[np.ndarray], np.ndarray]  # (k, 2) index pairs -> min(TM_a, TM_b) per pair


@dataclass(frozen=True)
class Linked:
    cluster_rep: np.ndarray  # final representative of every fragment
    decision: np.ndarray  # per evidence row (object array of the strings above)
    guard_tm: np.ndarray  # per evidence row: lowest min-TM to the merged representative (NaN: not checked)
    guard_alignments: int  # TM-align calls the guard added
    guard_rounds: int  # batches of them


def pair_key(a: int, b: int) -> tuple[int, int]:
    return (a, b) if a < b else (b, a)


def evidence_order(tm_min: np.ndarray, rep_a: np.ndarray, rep_b: np.ndarray, rank: np.ndarray) -> np.ndarray:
    """Strongest evidence first; ties by the better-ranked representatives (deterministic)."""
    lo = np.minimum(rank[rep_a], rank[rep_b])
    hi = np.maximum(rank[rep_a], rank[rep_b])
    return np.lexsort((hi, lo, -np.asarray(tm_min, dtype=np.float64)))


def link_clusters(
    rep_of: np.ndarray,
    rep_a: np.ndarray,
    rep_b: np.ndarray,
    tm_min: np.ndarray,
    source: np.ndarray,
    rank: np.ndarray,
    *,
    linkage: str = "guarded",
    guard: float = 0.5,
    score: Scorer | None = None,
    known: PairScores | Mapping[tuple[int, int], float] | None = None,
    prefetch: int = 2048,
    pair_i: np.ndarray | None = None,
    pair_j: np.ndarray | None = None,
) -> Linked:
    """Final clusters from first-pass clusters `rep_of` and evidence rows (rep_a, rep_b, tm_min, source).

    `known` holds min-TM scores already computed (a PairScores, extended in place with the guard's
    alignments, or a dict pair_key -> score); `score` aligns the missing ones the guard needs.
    `pair_i`, `pair_j` are the evidence pairs' own fragments (default: the representatives), which
    the guarded linkage may reassign when a merge is refused.
    """
    if linkage not in LINKAGES:
        raise ValueError(f"unknown linkage {linkage!r}: one of {', '.join(LINKAGES)}")
    rep_of = np.asarray(rep_of)
    rep_a = np.asarray(rep_a, dtype=np.int64)
    rep_b = np.asarray(rep_b, dtype=np.int64)
    rows = len(rep_a)
    decision = np.full(rows, REDUNDANT, dtype=object)
    guard_tm = np.full(rows, np.nan)
    # the forest joins first-pass representatives only (local index k: first_reps[k]); the driver
    # keeps nothing per fragment through the loop, where the guard's alignments run
    first_reps, fp_counts = np.unique(rep_of, return_counts=True)
    if not (np.isin(rep_a, first_reps).all() and np.isin(rep_b, first_reps).all()):
        raise ValueError("evidence rows must join first-pass representatives (values of rep_of)")
    local_a, local_b = np.searchsorted(first_reps, rep_a), np.searchsorted(first_reps, rep_b)
    fp_rank = np.asarray(rank)[first_reps]

    def key(local: int) -> tuple[int, int]:
        return (-int(fp_counts[local]), int(fp_rank[local]))

    # per union-find root, arrays over the first-pass representatives (local index k: first_reps[k]),
    # never a Python object each: the cluster's representative, and its first-pass representatives
    # as a linked list (last, next) that a join splices in O(1)
    forest = UnionFind(len(first_reps))
    clusters = _Clusters(len(first_reps))

    # a PairScores is used as it is (no copy of ~3 pairs a fragment): the guard's alignments extend it,
    # so the caller's later steps reuse them too
    scores = _Scores(known if isinstance(known, PairScores) else PairScores.of(known), score)
    usable = np.ones(rows, bool) if linkage != "method" else (np.asarray(source) == "representatives")
    decision[~usable] = IGNORED
    # the rows in the order they are decided: an int64 array, not a Python int per row (at 10^5
    # fragments the evidence has ~22,000 rows, and the merge evidence grows faster than the fragments)
    order = evidence_order(tm_min, rep_a, rep_b, rank)
    order = order[usable[order]]

    def plan(k: int) -> tuple[int, int, int, int] | None:
        """(root to keep, root that gives up its representative, kept representative, other) as
        (root, root, fragment, fragment), or None."""
        ra, rb = forest.find(int(local_a[k])), forest.find(int(local_b[k]))
        if ra == rb:
            return None
        ha, hb = int(clusters.head[ra]), int(clusters.head[rb])
        if key(ha) <= key(hb):
            return ra, rb, int(first_reps[ha]), int(first_reps[hb])
        return rb, ra, int(first_reps[hb]), int(first_reps[ha])

    def reps_of(root: int) -> list[int]:
        return first_reps[clusters.members(root)].tolist()

    def missing(k: int) -> list[tuple[int, int]]:
        p = plan(k)
        if p is None:
            return []
        _, loser, winner_rep, _ = p
        return [pair_key(r, winner_rep) for r in reps_of(loser) if pair_key(r, winner_rep) not in scores.cache]

    position = 0
    while position < len(order):
        k = int(order[position])
        p = plan(k)
        if p is None:
            position += 1
            continue
        winner, loser, winner_rep, _ = p
        if linkage == "guarded":
            need = missing(k)
            if need:  # align what this merge needs, and what the next ones would need as things stand
                wanted = dict.fromkeys(need)
                for later in order[position + 1 : position + 1 + 4 * prefetch].tolist():
                    if len(wanted) >= prefetch:
                        break
                    wanted.update(dict.fromkeys(missing(later)))
                scores.fill(wanted)
            lowest = min(scores.cache[pair_key(r, winner_rep)] if r != winner_rep else 1.0 for r in reps_of(loser))
            guard_tm[k] = lowest
            if lowest < guard:
                decision[k] = REFUSED
                position += 1
                continue
        clusters.join(forest, winner, loser, head=int(clusters.head[winner]))
        decision[k] = MERGED
        position += 1

    # int32 per fragment, as rep_of (2^31 fragments)
    roots = np.fromiter((forest.find(k) for k in range(len(first_reps))), np.int64, len(first_reps))
    label = first_reps[clusters.head[roots]].astype(np.int32)[np.searchsorted(first_reps, rep_of)]
    if linkage == "guarded":
        i = rep_a if pair_i is None else np.asarray(pair_i, dtype=np.int64)
        j = rep_b if pair_j is None else np.asarray(pair_j, dtype=np.int64)
        refused = order[decision[order] == REFUSED].tolist()
        _reassign(refused, i, j, rep_of, label, decision, guard, scores)
    return Linked(label, decision, guard_tm, scores.alignments, scores.rounds)


@dataclass
class _Scores:
    """min-TM scores known so far; `fill` aligns the missing ones in one batch and counts it."""

    cache: PairScores
    score: Scorer | None
    alignments: int = 0
    rounds: int = 0

    def fill(self, pairs: Iterable[tuple[int, int]]) -> None:
        todo = np.array(sorted(set(pairs)), dtype=np.int64).reshape(-1, 2)
        todo = todo[~self.cache.lookup(todo[:, 0], todo[:, 1])[0]]
        if not len(todo):
            return
        if self.score is None:
            raise ValueError("guarded linkage needs a scorer for scores not yet known")
        self.cache.update(todo[:, 0], todo[:, 1], np.asarray(self.score(todo), dtype=np.float64))
        self.alignments += len(todo)
        self.rounds += 1


def _reassign(refused: list[int], i: np.ndarray, j: np.ndarray, rep_of: np.ndarray, label: np.ndarray,
              decision: np.ndarray, guard: float, scores: _Scores) -> None:
    """Keep a refused pair together by moving one of its two members (never a first-pass
    representative, each member at most once) to the other's cluster, when the member reaches the
    guard against that cluster's representative: the cluster stays a star, the pair is not lost
    (PF04034's A0A1M2VTE1/A0A4Q9LQ12, min-TM 0.73, whose representatives score 0.47)."""
    moved: set[int] = set()

    def options(k: int) -> list[tuple[int, int]]:
        """(member, target representative) moves that could join row k's pair."""
        a, b = int(i[k]), int(j[k])
        if label[a] == label[b]:
            return []
        return [(m, int(label[other])) for m, other in ((a, b), (b, a))
                if rep_of[m] != m and m not in moved]

    def wanted(k: int) -> list[tuple[int, int]]:
        return [pair_key(m, t) for m, t in options(k) if pair_key(m, t) not in scores.cache]

    for position, k in enumerate(refused):
        if wanted(k):  # this row's scores, and the later rows' as things stand, in one batch
            scores.fill([pair for later in refused[position:] for pair in wanted(later)])
        best = max(((scores.cache[pair_key(m, t)], -m, m, t) for m, t in options(k)), default=None)
        if best is not None and best[0] >= guard:
            _, _, m, t = best
            label[m] = t
            moved.add(m)
            decision[k] = REASSIGNED


class _Clusters:
    """Per union-find root over first-pass representatives 0..n-1: `head`, the local index of the
    cluster's representative; its first-pass representatives, a linked list in join order that
    starts at the root itself (a join appends the other root's list to the kept root's)."""

    def __init__(self, n: int) -> None:
        self.head = np.arange(n, dtype=np.int32)
        self.last = np.arange(n, dtype=np.int32)
        self.next = np.full(n, -1, dtype=np.int32)

    def members(self, root: int) -> np.ndarray:
        out, k = [], root
        while k >= 0:
            out.append(k)
            k = int(self.next[k])
        return np.array(out, dtype=np.int64)

    def join(self, forest: UnionFind, a: int, b: int, *, head: int) -> None:
        """Union a's and b's sets; the merged cluster's representative is `head` (a local index)."""
        ra, rb = forest.find(a), forest.find(b)
        if ra == rb:
            return
        forest.union(ra, rb)
        root = forest.find(ra)
        other = rb if root == ra else ra
        self.next[self.last[root]] = other
        self.last[root] = self.last[other]
        self.head[root] = head
