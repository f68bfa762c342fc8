"""The built-in first pass at linear cost: a k-mer round, then cascaded search rounds on representatives.

1. **k-mer round** (Linclust's idea; `rayfold.align.kmers`): every fragment gets candidate edges to
   at most `centres_per_fragment` k-mer group centres, most shared k-mers first. Tries are aligned
   in turns: try t+1 is aligned only for members that no earlier try accepted, so a family member
   costs about one TM-align. A try is accepted by the first pass's own rule (TM normalised by the
   centre >= 0.7, both coverages >= 0.8). Members are then resolved in centre-priority order (greedy
   incremental, like CD-HIT): a member joins the first accepting centre that is itself a
   representative, else it becomes one. Every edge points to a strictly better centre, so one pass
   over the priority order decides everything.
2. **Cascade**: the representatives are searched against each other with the sensitive search (the
   built-in prefilter) and clustered with the same rule and greedy set cover; members follow their
   representative (as Foldseek's cascaded clustering). Rounds repeat while the representatives
   shrink by at least `min_shrink` and at most `cascade_rounds` times.

Pure code over the algorithm's protocols; Ray implements the candidate sources.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

import numpy as np

from rayfold.cluster import rules as algo
from rayfold.cluster.rules import ClusterConfig

if TYPE_CHECKING:
    from rayfold.cluster.algorithm import Aligner, CandidateSearch, Columns

# (members, centre priority) -> (member, centre, shared k-mers) rows, both ends among `members`
KmerCandidates = Callable[[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray, np.ndarray]]


def centre_priority(lengths: np.ndarray, mean_plddt: np.ndarray, ids: list[str]) -> np.ndarray:
    """priority[i]: 0 for the best k-mer group centre (longest, then higher mean pLDDT, then smaller id)."""
    id_rank = np.empty(len(ids), np.int64)
    id_rank[np.argsort(np.array(ids, dtype=object), kind="stable")] = np.arange(len(ids))
    order = np.lexsort((id_rank, -np.round(np.asarray(mean_plddt, np.float64), 3), -np.asarray(lengths)))
    priority = np.empty(len(ids), np.int64)
    priority[order] = np.arange(len(ids))
    return priority


def worth_keeping(columns: Columns, config: ClusterConfig) -> Columns:
    """The alignment rows later steps can use: first-pass edges, and pairs at min-TM >= the guard
    (possible merge evidence, guard and cohesion scores). A failed try is dropped, so the driver's
    memory grows with the edges, not with the tries."""
    tm = np.minimum(columns["tm_a"], columns["tm_b"])
    covered = (columns["cov_a"] >= config.coverage) & (columns["cov_b"] >= config.coverage)
    edge = covered & (np.maximum(columns["tm_a"], columns["tm_b"]) >= config.tm_threshold)
    keep = edge | (tm >= min(config.guard_threshold, config.merge_threshold))
    return {k: v[keep] for k, v in columns.items()}


def concat_columns(parts: list[Columns]) -> Columns:
    parts = [p for p in parts if p is not None and len(p["i"])]
    if not parts:
        ints = ("i", "j", "aligned_length")
        return {k: np.zeros(0, np.int64 if k in ints else np.float64)
                for k in ("i", "j", "tm_a", "tm_b", "rmsd", "aligned_length", "seq_identity", "cov_a", "cov_b")}
    return {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}


def best_tries(member: np.ndarray, centre: np.ndarray, shared: np.ndarray, centre_priority: np.ndarray,
               limit: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(member, centre, shared, attempt): each member's best `limit` centres, most shared k-mers first, then
    the better centre (`centre_priority` per row). A centre sharing a single k-mer is tried only
    first: further tries need two shared k-mers (one is what unrelated fragments share by chance)."""
    order = np.lexsort((centre, centre_priority, -shared, member))
    member, centre, shared = member[order], centre[order], shared[order]
    first = np.r_[True, member[1:] != member[:-1]] if len(member) else np.zeros(0, bool)
    attempt = np.arange(len(member)) - np.maximum.accumulate(np.where(first, np.arange(len(member)), 0))
    keep = (attempt < limit) & ((attempt == 0) | (shared >= 2))
    return member[keep], centre[keep], shared[keep], attempt[keep]


def kmer_round(members: np.ndarray, candidates: KmerCandidates, aligner: Aligner, lengths: np.ndarray,
               priority: np.ndarray, config: ClusterConfig) -> tuple[np.ndarray, Columns]:
    """(rep_of over `members`, global indices; the alignments worth keeping) of the k-mer round."""
    member, centre, shared = candidates(members, priority)
    ok = algo.within_reach(member, centre, lengths, min(config.coverage, config.merge_threshold))
    member, centre, _, attempt = best_tries(member[ok], centre[ok], shared[ok], priority[centre[ok]],
                                            config.centres_per_fragment)
    n = len(lengths)
    done = np.zeros(n, bool)
    accepted_member, accepted_centre, accepted_attempt, parts = [], [], [], []
    for t in range(config.centres_per_fragment):
        sel = (attempt == t) & ~done[member]
        if not sel.any():
            break
        columns = aligner.align(np.column_stack([member[sel], centre[sel]]), desc=f"k-mer round, try {t + 1}")
        parts.append(worth_keeping(columns, config))
        rule = ((columns["tm_b"] >= config.tm_threshold) & (columns["cov_a"] >= config.coverage)
                & (columns["cov_b"] >= config.coverage))
        accepted_member.append(member[sel][rule])
        accepted_centre.append(centre[sel][rule])
        accepted_attempt.append(np.full(int(rule.sum()), t, np.int64))
        done[member[sel][rule]] = True
    rep_of = resolve_greedy(members, np.concatenate(accepted_member or [np.zeros(0, np.int64)]),
                            np.concatenate(accepted_centre or [np.zeros(0, np.int64)]),
                            np.concatenate(accepted_attempt or [np.zeros(0, np.int64)]), priority)
    return rep_of, concat_columns(parts)


def resolve_greedy(members: np.ndarray, member: np.ndarray, centre: np.ndarray, attempt: np.ndarray,
                   priority: np.ndarray) -> np.ndarray:
    """rep_of over `members`: in priority order, each joins its first accepting centre that is a
    representative, else represents itself (every centre has a better priority than its members)."""
    n = len(priority)
    order = np.lexsort((attempt, priority[member]))
    member, centre = member[order], centre[order]
    is_rep = np.zeros(n, bool)
    rep = np.full(n, -1, np.int64)
    # edges of one member are contiguous after the sort (priorities are distinct)
    bounds: dict[int, tuple[int, int]] = {}
    if len(member):
        firsts = np.flatnonzero(np.r_[True, member[1:] != member[:-1]])
        ends = np.r_[firsts[1:], len(member)]
        bounds = dict(zip(member[firsts].tolist(), zip(firsts.tolist(), ends.tolist())))
    for x in members[np.argsort(priority[members], kind="stable")].tolist():
        span = bounds.get(x)
        if span is not None:
            for c in centre[span[0]:span[1]].tolist():
                if is_rep[c]:
                    rep[x] = c
                    break
        if rep[x] < 0:
            rep[x] = x
            is_rep[x] = True
    return rep[members]


def search_round(reps: np.ndarray, search: CandidateSearch, aligner: Aligner, lengths: np.ndarray,
                 rank: np.ndarray, config: ClusterConfig, *, desc: str) -> tuple[np.ndarray, Columns]:
    """(rep_of over `reps`, the alignments worth keeping): sensitive search, TM-align, the first-pass
    rule, set cover."""
    pairs = algo.reachable(search(reps, reps, desc=f"{desc} search"), lengths,
                           min(config.coverage, config.merge_threshold))
    columns = aligner.align(pairs, desc=desc)
    rep_ends, covered = algo.first_pass_edges(columns["i"], columns["j"], columns["tm_a"], columns["tm_b"],
                                              columns["cov_a"], columns["cov_b"], config)
    local = np.full(len(lengths), -1, np.int64)
    local[reps] = np.arange(len(reps))
    local_rep_of = algo.greedy_set_cover(len(reps), local[rep_ends], local[covered], rank[reps])
    return reps[local_rep_of], worth_keeping(columns, config)


def cascade_first_pass(members: np.ndarray, candidates: KmerCandidates, search: CandidateSearch,
                       aligner: Aligner, lengths: np.ndarray, priority: np.ndarray, rank: np.ndarray,
                       config: ClusterConfig) -> tuple[np.ndarray, Columns, list[int]]:
    """(rep_of over `members`, the alignments worth keeping, representatives after each round)."""
    rep_of, columns = kmer_round(members, candidates, aligner, lengths, priority, config)
    parts = [columns]
    counts = [int(len(np.unique(rep_of)))]
    position = np.full(len(lengths), -1, np.int64)
    for round_no in range(2, config.cascade_rounds + 1):
        reps = np.unique(rep_of)
        new_rep, columns = search_round(reps, search, aligner, lengths, rank, config,
                                        desc=f"cascade round {round_no}")
        parts.append(columns)
        position[reps] = np.arange(len(reps))
        rep_of = new_rep[position[rep_of]]
        counts.append(int(len(np.unique(rep_of))))
        if counts[-1] > (1.0 - config.min_shrink) * counts[-2]:
            break
    return rep_of, concat_columns(parts), counts
