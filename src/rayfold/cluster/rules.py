"""Fold clustering of fragments as pure functions over alignment results (no Ray, no files).

1. First pass, Foldseek's semantics: fragment r can represent fragment m when TM-align's score
   normalised by r is >= 0.7 and both coverages are >= 0.8 (`-c 0.8 --cov-mode 0
   --tmscore-threshold 0.7 --tmscore-threshold-mode 1`); greedy set cover then picks, again and
   again, the fragment that covers the most still-unassigned fragments as a representative (ties:
   higher mean pLDDT, then longer, then smaller id), and assigns them to it.
2. Representative audit: representatives are aligned with each other; a pair at
   min(TM_a, TM_b) >= 0.7 (both directions confirm fold-level similarity) is merge evidence, and
   so is a pair of members of two first-pass clusters that the first pass already aligned at
   min-TM >= 0.7 (the built-in first pass aligns candidates down to a length ratio of 0.7 for
   this). Which evidence joins clusters is the linkage (`rayfold.cluster.linkage`): by default a merge is
   guarded so that every cluster stays within fold-level reach of its representative.
3. Singleton audit: a seeded sample of fragments still alone after the audit, searched against
   each other (the audit's candidate search) and confirmed by TM-align; connected components at
   min-TM >= 0.8 are "hidden clusters" the first pass missed.
   It is reported, not merged.
"""

from __future__ import annotations

import hashlib
import heapq
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np

from rayfold.model.ids import IdColumn
from rayfold.model.unionfind import Forest, forest_labels


@dataclass(frozen=True)
class ClusterConfig:
    engine: Literal["auto", "builtin", "foldseek"] = "auto"  # auto: Foldseek when found, else built-in
    tm_threshold: float = 0.7  # first pass: TM normalised by the representative
    coverage: float = 0.8  # first pass: alignment coverage of both fragments
    merge_threshold: float = 0.7  # audit: min(TM_a, TM_b) to merge two clusters
    singleton_sample: int = 1000  # fragments sampled by the singleton audit (the seed used 1,000)
    singleton_threshold: float = 0.8  # min-TM that links two sampled singletons
    seed: int = 0  # every random choice is seeded from here
    pairs_per_task: int = 128  # TM-align pairs per Ray task at most
    task_seconds: float = 2.0  # TM-align work per Ray task, estimated from the chains' lengths
    # Foldseek's alignment for the audits' candidate search (then every candidate is TM-aligned):
    # 3di+aa (Foldseek's default), 3di, or tmalign (Foldseek TM-aligns every prefilter hit itself:
    # minutes on long chains, for candidates that are TM-aligned again anyway)
    foldseek_audit_alignment: Literal["3di+aa", "3di", "tmalign"] = "3di+aa"
    foldseek_threads: int = 0  # 0 = the CPUs of the node the Foldseek step runs on
    # auto: ask for the `foldseek` custom resource when a node offers it now; always: ask anyway (an
    # autoscaler then starts that node type; set foldseek_threads to its CPUs); never: any node
    foldseek_node: Literal["auto", "always", "never"] = "auto"
    # guarded (default) | single | method: which merge evidence joins clusters (rayfold.cluster.linkage)
    linkage: Literal["guarded", "single", "method"] = "guarded"
    guard_threshold: float = 0.5  # guarded: min-TM of every first-pass rep to the merged cluster's rep
    cohesion_sample: int = 8  # members per cluster TM-aligned to the representative for cohesion columns
    # built-in first pass: cascade (k-mer round, then search rounds on representatives; linear) or
    # allpairs (the sensitive search over all fragments at once; grows with the square of families)
    first_pass: Literal["cascade", "allpairs"] = "cascade"
    kmer_size: int = 8  # k-mer round (rayfold.align.kmers): k in the reduced 3Di alphabet
    kmers_per_fragment: int = 60  # min-hash sample of k-mers per fragment
    kmer_alphabet: int = 13  # reduced 3Di letters
    kmer_min_states: int = 3  # k-mers with fewer distinct reduced states are not used
    centres_per_fragment: int = 3  # centres a fragment is TM-aligned to at most, in turns
    kmer_rounds: int = 3  # k-mer rounds at most, each with its own min-hash seed
    search_rounds: int = 3  # then search rounds on the representatives at most (at least one)
    min_shrink: float = 0.1  # another round of a kind only when the last one removed this share of representatives
    # search rounds: the structural check runs on each representative's best `search_candidates` by
    # k-mer seed score per target shard (a round tries its best 3 by the check; the audit keeps 100)
    search_candidates: int = 16
    shard_size: int = 4096  # fragments per object-store shard (~4 kB each); a task holds two at most

    def kmer_config(self):  # noqa: ANN201 - rayfold.align.kmers.KmerConfig (kept out of this module's imports)
        from rayfold.align.kmers import KmerConfig

        return KmerConfig(alphabet_size=self.kmer_alphabet, kmer_size=self.kmer_size,
                          kmers_per_fragment=self.kmers_per_fragment, min_distinct_states=self.kmer_min_states,
                          seed=self.seed)


def in_id_order(ids: Sequence[str]) -> bool:
    """Whether the ids are sorted (the sharded engine's global index is): one pass of comparisons."""
    if isinstance(ids, IdColumn):
        return ids.is_sorted()
    return all(ids[k] < ids[k + 1] for k in range(len(ids) - 1))


def is_sorted(values: np.ndarray, *, strict: bool = False, chunk: int = 65_536) -> bool:
    """values[k] <= values[k + 1] throughout (< where `strict`), `chunk` rows at a time: no bool
    per row of a fragment-long array."""
    ahead = np.greater if strict else np.greater_equal
    windows = (values[lo:lo + chunk + 1] for lo in range(0, max(0, len(values) - 1), chunk))
    return all(bool(np.all(ahead(w[1:], w[:-1]))) for w in windows)


def id_rank(ids: Sequence[str]) -> np.ndarray:
    """rank[i]: the place of ids[i] in sorted order (ids unique). A set already in id order (the
    sharded engine's global index) costs one pass of comparisons and no Python objects."""
    n = len(ids)
    if in_id_order(ids):
        return np.arange(n, dtype=np.int64)
    rank = np.empty(n, np.int64)
    order = ids.sort_indices() if isinstance(ids, IdColumn) else np.argsort(np.array(ids, dtype=object), kind="stable")
    rank[order] = np.arange(n)
    return rank


def rank_by(keys: Sequence[np.ndarray], ids: Sequence[str]) -> np.ndarray:
    """rank[i] (int32: 4 bytes a fragment on the driver, 2^31 fragments) by `keys`, primary key
    last (as `np.lexsort`), ties by smaller id. lexsort is stable, so ids already in order (the
    sharded engine's global index) need no key of their own: 8 B a fragment less while it sorts."""
    order = np.lexsort(tuple(keys) if in_id_order(ids) else (id_rank(ids), *keys))
    rank = np.empty(len(ids), dtype=np.int32)
    rank[order] = np.arange(len(ids), dtype=np.int32)
    return rank


def priority_order(mean_plddt: np.ndarray, lengths: np.ndarray, ids: Sequence[str]) -> np.ndarray:
    """rank[i]: 0 for the best representative candidate (higher pLDDT, then longer, then smaller id).
    The keys keep their dtypes (negation is exact in each): no float64 or int64 copies."""
    return rank_by((-np.asarray(lengths), -np.asarray(mean_plddt)), ids)


def first_pass_edges(
    i: np.ndarray,
    j: np.ndarray,
    tm_i: np.ndarray,
    tm_j: np.ndarray,
    cov_i: np.ndarray,
    cov_j: np.ndarray,
    config: ClusterConfig = ClusterConfig(),
) -> tuple[np.ndarray, np.ndarray]:
    """Directed edges (representative, member) from aligned pairs (tm_i normalised by fragment i)."""
    covered = (cov_i >= config.coverage) & (cov_j >= config.coverage)
    i_rep = covered & (tm_i >= config.tm_threshold)
    j_rep = covered & (tm_j >= config.tm_threshold)
    reps = np.concatenate([i[i_rep], j[j_rep]]).astype(np.int64)
    members = np.concatenate([j[i_rep], i[j_rep]]).astype(np.int64)
    return reps, members


def greedy_set_cover(n: int, reps: np.ndarray, members: np.ndarray, rank: np.ndarray,
                     chunk: int = 8_192) -> np.ndarray:
    """rep_of[m]: the representative chosen for every fragment 0..n-1 (itself for singletons).

    Lazy greedy: the fragment covering the most uncovered ones first (ties: lower `rank`, then lower
    index). Neighbours are one sorted int64 array with offsets, and the queue is one sorted int64
    key per fragment (count, rank and index in one key) plus a heap of the stale entries re-queued:
    ~30 bytes a fragment on the driver where a list of neighbours and a tuple each took ~340, and a
    Python int per fragment in a heap ~40 more (the search rounds run this over every
    representative)."""
    reps = np.asarray(reps, dtype=np.int64).ravel()
    members = np.asarray(members, dtype=np.int64).ravel()
    other = reps != members
    edge = np.unique(reps[other] * n + members[other])  # by representative, then member; each once
    start = np.zeros(n + 1, np.int64)
    np.cumsum(np.bincount(edge // n, minlength=n), out=start[1:])
    neighbour = edge % n
    del edge, other
    rank = np.asarray(rank, dtype=np.int64)
    width = int(rank.max()) + 1 if n else 1
    count = np.diff(start) + 1

    def key(c: int, r: int, x: int) -> int:  # smaller first: more covered, then lower rank, then lower x
        return ((n + 1 - c) * width + r) * n + x

    if (n + 1) * width * n < 2**63:  # the keys fit int64: made and sorted in NumPy
        initial: np.ndarray | list[int] = np.sort(((n + 1 - count) * width + rank) * n + np.arange(n))
    else:
        order = np.lexsort((np.arange(n), rank, -count))
        initial = [key(c, r, x) for c, r, x in zip(count[order].tolist(), rank[order].tolist(), order.tolist())]
    del count
    rep_of = np.full(n, -1, dtype=np.int64)
    requeued: list[int] = []  # a heap of the stale entries' new keys (each larger than the one it replaces)

    def take(top: int) -> None:
        x = top % n
        if rep_of[x] >= 0:
            return
        near = neighbour[start[x]:start[x + 1]]
        uncovered = near[rep_of[near] < 0]
        covers = len(uncovered) + 1
        if covers != n + 1 - top // n // width:  # stale entry: re-queue with the true count
            heapq.heappush(requeued, key(covers, top // n % width, x))
            return
        rep_of[x] = x
        rep_of[uncovered] = x

    # one queue in key order: the sorted initial keys, `chunk` of them as Python ints at a time, merged
    # with the re-queued ones (the order a single heap of every key gives, without an int per fragment)
    for lo in range(0, n, chunk):
        batch = initial[lo:lo + chunk]
        for top in batch.tolist() if isinstance(batch, np.ndarray) else batch:
            while requeued and requeued[0] < top:
                take(heapq.heappop(requeued))
            take(top)
    while requeued:
        take(heapq.heappop(requeued))
    return rep_of


def accepted_merges(tm_a: np.ndarray, tm_b: np.ndarray, threshold: float) -> np.ndarray:
    return np.minimum(tm_a, tm_b) >= threshold


EVIDENCE_COLUMNS = ("rep_a", "rep_b", "i", "j", "tm_a", "tm_b", "rmsd", "aligned_length", "seq_identity")


def merge_evidence(columns: dict[str, np.ndarray], rep_of: np.ndarray, threshold: float, *, source: str) -> dict:
    """Aligned pairs at min-TM >= threshold whose fragments sit in different first-pass clusters."""
    i = np.asarray(columns["i"], dtype=np.int64)
    j = np.asarray(columns["j"], dtype=np.int64)
    keep = accepted_merges(columns["tm_a"], columns["tm_b"], threshold) & (rep_of[i] != rep_of[j])
    out = {"rep_a": rep_of[i][keep], "rep_b": rep_of[j][keep], "i": i[keep], "j": j[keep]}
    out.update({k: np.asarray(columns[k])[keep] for k in EVIDENCE_COLUMNS[4:]})
    out["source"] = np.full(int(keep.sum()), source, dtype=object)
    return out


def concat_evidence(*parts: dict) -> dict:
    return {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}


def sample_singletons(cluster_rep: np.ndarray, sample_size: int, seed: int,
                      ids: Sequence[str] | None = None) -> np.ndarray:
    """Sorted indices of up to `sample_size` fragments alone in their cluster.

    Bottom-k by a seeded hash of the fragment id: the sample does not depend on the order or
    number of other fragments, so a later release keeps most of it and only aligns the newcomers.
    """
    alone = np.bincount(cluster_rep, minlength=len(cluster_rep)) == 1  # by representative: 1 B, not 8
    singletons = np.flatnonzero(alone[cluster_rep])
    del alone
    if len(singletons) <= sample_size:
        return singletons
    names = ids if ids is not None else [str(i) for i in range(len(cluster_rep))]
    hashes = seeded_hashes(seed, names, singletons)
    # ties of the hash (2^-64) go to the smaller id: the singletons' own id order, no rank of every id
    tie = np.arange(len(singletons)) if in_id_order(names) else id_rank(names_of(names, singletons))
    order = np.lexsort((tie, hashes))[:sample_size]
    return np.sort(singletons[order])


def seeded_hash(seed: int, name: str) -> int:
    return int.from_bytes(hashlib.blake2b(f"{seed}:{name}".encode(), digest_size=8).digest(), "big")


def names_of(ids: Sequence[str], index: np.ndarray) -> list[str]:
    """ids[index] as Python strings (an `IdColumn` takes them in one Arrow call)."""
    return ids.take(index) if isinstance(ids, IdColumn) else [ids[k] for k in np.asarray(index).tolist()]


def seeded_hashes(seed: int, ids: Sequence[str], index: np.ndarray, chunk: int = 8_192) -> np.ndarray:
    """`seeded_hash` of ids[index] (uint64), `chunk` ids at a time: never a Python object per fragment
    (100,000 ids: 9.0 MB traced at the peak with chunks of 65,536, 2.1 MB with 8,192)."""
    index = np.asarray(index)
    out = np.empty(len(index), np.uint64)
    for lo in range(0, len(index), chunk):
        names = names_of(ids, index[lo:lo + chunk])
        out[lo:lo + len(names)] = np.fromiter((seeded_hash(seed, x) for x in names), np.uint64, len(names))
    return out


def within_reach(a: np.ndarray, b: np.ndarray, lengths: np.ndarray, min_length_ratio: float) -> np.ndarray:
    """Mask of the pairs (a[k], b[k]) whose Lshort/Llong can still reach the threshold (exact: TM <= Lshort/Llong)."""
    la, lb = lengths[a], lengths[b]
    return np.minimum(la, lb) >= min_length_ratio * np.maximum(la, lb)


def reachable(pairs: np.ndarray, lengths: np.ndarray, min_length_ratio: float) -> np.ndarray:
    """The rows of `pairs` that are `within_reach`."""
    pairs = np.asarray(pairs, dtype=np.int64).reshape(-1, 2)
    return pairs[within_reach(pairs[:, 0], pairs[:, 1], lengths, min_length_ratio)]


@dataclass(frozen=True)
class SingletonAudit:
    sampled: np.ndarray  # fragment indices
    component: np.ndarray  # per sampled fragment: smallest sampled index of its component
    sizes: np.ndarray  # per sampled fragment: its component's size

    @property
    def n_linked(self) -> int:
        return int((self.sizes > 1).sum())

    @property
    def n_components(self) -> int:
        return int(len(np.unique(self.component[self.sizes > 1])))

    @property
    def largest(self) -> int:
        return int(self.sizes.max()) if len(self.sizes) else 0

    def summary(self) -> str:
        return (f"{self.n_linked} of {len(self.sampled)} sampled singletons in {self.n_components} "
                f"components, largest {self.largest}")


def singleton_components(sampled: np.ndarray, forest: Forest) -> SingletonAudit:
    labels = forest_labels(forest, int(sampled.max()) + 1 if len(sampled) else 0)
    component = labels[sampled] if len(sampled) else np.zeros(0, dtype=np.int64)
    _, inverse, counts = np.unique(component, return_inverse=True, return_counts=True)
    return SingletonAudit(sampled=sampled, component=component, sizes=counts[inverse])
