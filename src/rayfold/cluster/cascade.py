"""The built-in first pass at linear cost: k-mer rounds, then search rounds on representatives.

1. **k-mer rounds** (Linclust's idea; `rayfold.align.kmers`): every fragment gets candidate edges to
   at most `centres_per_fragment` k-mer group centres, most shared k-mers first. Tries are aligned
   in turns: try t+1 is aligned only for members that no earlier try accepted, so a family member
   costs about one TM-align. A try is accepted by the first pass's own rule (TM normalised by the
   centre >= 0.7, both coverages >= 0.8). Members are then resolved in centre-priority order (greedy
   incremental, like CD-HIT): a member joins the first accepting centre that is itself a
   representative, else it becomes one. Every edge points to a strictly better centre, so one pass
   over the priority order decides everything. Another round on the representatives, with another
   min-hash seed, draws other k-mers (at most `kmer_rounds`, while they shrink by `min_shrink`).
2. **Search rounds**: the representatives are searched against each other with the sensitive search
   (the built-in prefilter, with its estimated TM per pair); each representative's best few
   partners by that estimate are TM-aligned in turns, and Foldseek's rule in both directions plus
   greedy set cover over those and the alignments already known decide; members follow their
   representative (as Foldseek's cascaded clustering). The work per representative is bounded, so
   a big family costs its size, never its square. At most `search_rounds`, while they shrink.

Pure code over the algorithm's protocols; Ray implements the candidate sources.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from typing import TYPE_CHECKING

import numpy as np

from rayfold.cluster import rules as algo
from rayfold.cluster.evidence import (
    J_REPRESENTS_I,
    Among,
    Evidence,
    edge_bits,
    edges_of,
    worth_keeping,
)
from rayfold.cluster.pairscores import find_sorted
from rayfold.cluster.rules import ClusterConfig
from rayfold.cluster.steps import Steps

if TYPE_CHECKING:
    from rayfold.cluster.algorithm import Aligner

# (members, centre priority, min-hash seed) -> (member, centre, shared k-mers) rows, both ends among `members`
KmerCandidates = Callable[[np.ndarray, np.ndarray, int], tuple[np.ndarray, np.ndarray, np.ndarray]]
# (queries, targets, *, desc, limit) -> blocks of (pairs, estimated TM per pair), in any order; a pair
# may come in several blocks (found from both ends). limit: candidates per query and target shard
# whose structural check runs (None: the search's own)
ScoredSearch = Callable[..., Iterable[tuple[np.ndarray, np.ndarray]]]


def centre_priority(lengths: np.ndarray, mean_plddt: np.ndarray, ids: Sequence[str]) -> np.ndarray:
    """priority[i]: 0 for the best k-mer group centre (longest, then higher mean pLDDT, then smaller id)."""
    plddt = np.array(mean_plddt, np.float64)  # rounded in float64, in place, then a float32 key: pLDDT
    np.round(plddt, 3, out=plddt)  # <= 100 in steps of 0.001 stays distinct and in order in float32
    key = np.negative(plddt, out=plddt).astype(np.float32)
    del plddt
    return algo.rank_by((key, -np.asarray(lengths)), ids)


def align_kept(aligner: Aligner, pairs: np.ndarray, config: ClusterConfig, evidence: Evidence, *,
               desc: str) -> np.ndarray:
    """`edge_bits` per pair; the rows worth keeping go to `evidence`, not back to the caller. An
    aligner with its own `align_kept` (Ray's: block by block as its tasks finish, so the driver never
    holds a whole round's columns) is used as it is."""
    own = getattr(aligner, "align_kept", None)
    if own is not None:
        return own(pairs, config, evidence, desc=desc)
    columns = aligner.align(pairs, desc=desc)
    evidence.add(columns, worth_keeping(columns, config))
    return edge_bits(columns, config)


def ranked_tries(member: np.ndarray, centre: np.ndarray, strength: np.ndarray, centre_priority: np.ndarray,
                 limit: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(member, centre, strength, attempt): each member's `limit` strongest centres, ties to the better
    centre (`centre_priority` per row); attempt 0 is tried first."""
    order = np.lexsort((centre, centre_priority, -strength, member))
    member, centre, strength = member[order], centre[order], strength[order]
    first = np.r_[True, member[1:] != member[:-1]] if len(member) else np.zeros(0, bool)
    attempt = np.arange(len(member)) - np.maximum.accumulate(np.where(first, np.arange(len(member)), 0))
    keep = attempt < limit
    return member[keep], centre[keep], strength[keep], attempt[keep]


def best_tries(member: np.ndarray, centre: np.ndarray, shared: np.ndarray, centre_priority: np.ndarray,
               limit: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """The k-mer round's tries: the centres sharing the most k-mers first. A centre sharing a single
    k-mer is tried only first: further tries need two shared k-mers (one is what unrelated fragments
    share by chance)."""
    member, centre, shared, attempt = ranked_tries(member, centre, shared, centre_priority, limit)
    keep = (attempt == 0) | (shared >= 2)
    return member[keep], centre[keep], shared[keep], attempt[keep]


def untried_pairs(member: np.ndarray, centre: np.ndarray, attempt: np.ndarray, t: int, accepted: np.ndarray,
                  chunk: int = 65_536) -> np.ndarray:
    """(member, centre) of try `t` for the members no earlier try accepted, as one (k, 2) array: the
    selection is made `chunk` tries at a time (a bool per try held, no int32 gather of every try's
    acceptance), and each column is written in place."""
    sel = np.empty(len(member), bool)
    for lo in range(0, len(member), chunk):
        np.logical_and(attempt[lo:lo + chunk] == t, accepted[member[lo:lo + chunk]] < 0, out=sel[lo:lo + chunk])
    tried = np.empty((int(np.count_nonzero(sel)), 2), np.result_type(member, centre))
    at = 0
    for lo in range(0, len(member), chunk):
        keep = sel[lo:lo + chunk]
        k = int(np.count_nonzero(keep))
        tried[at:at + k, 0], tried[at:at + k, 1] = member[lo:lo + chunk][keep], centre[lo:lo + chunk][keep]
        at += k
    return tried


def confirm_tries(members: np.ndarray, member: np.ndarray, centre: np.ndarray, attempt: np.ndarray,
                  aligner: Aligner, priority: np.ndarray, config: ClusterConfig, evidence: Evidence, *,
                  desc: str) -> np.ndarray:
    """rep_of over `members`: tries TM-aligned in turns (try t+1 only for members no earlier try
    accepted), accepted by the first pass's rule, resolved greedily; the rows worth keeping go to
    `evidence`. A member's accepted centre is kept in one int32 array over the fragments (4 B each),
    never as lists of accepted rows and their sort."""
    accepted = np.full(len(priority), -1, np.int32)  # the centre that accepted each member; -1: none yet
    for t in range(int(attempt.max()) + 1 if len(attempt) else 0):
        tried = untried_pairs(member, centre, attempt, t, accepted)
        if not len(tried):
            continue
        bits = align_kept(aligner, tried, config, evidence, desc=f"{desc}, try {t + 1}")
        ok = (bits & J_REPRESENTS_I) > 0  # the centre (j) represents the member
        accepted[tried[ok, 0]] = tried[ok, 1]  # a member is tried once per attempt
        del bits, tried, ok
    return resolve_greedy(members, accepted, priority)


def kmer_round(members: np.ndarray, candidates: KmerCandidates, aligner: Aligner, lengths: np.ndarray,
               priority: np.ndarray, config: ClusterConfig, evidence: Evidence, *, seed: int = 0,
               desc: str = "k-mer round") -> np.ndarray:
    """rep_of over `members` (global indices) of one k-mer round; its alignments worth keeping go to
    `evidence`."""
    ranked = getattr(candidates, "ranked", None)
    if ranked is not None:  # ranked where the candidates are (Ray's: in the shuffle's tasks, as below)
        member, centre, attempt = ranked(members, priority, seed)
    else:
        member, centre, shared = candidates(members, priority, seed)
        ok = algo.within_reach(member, centre, lengths, min(config.coverage, config.merge_threshold))
        member, centre, _, attempt = best_tries(member[ok], centre[ok], shared[ok], priority[centre[ok]],
                                                config.centres_per_fragment)
    return confirm_tries(members, member, centre, attempt, aligner, priority, config, evidence, desc=desc)


class BestPartners:
    """Each end's `limit` best partners by estimated TM (ties: the better-ranked partner; a pair found
    twice keeps its higher estimate), folded from search blocks as they arrive. The driver holds about
    `limit` rows per representative, not every candidate of every block (16 per target shard: at 25
    shards up to 400 per representative). The result does not depend on the order of the blocks.

    Each block is cut to its own best `limit` per end as it comes, `chunk` candidates at a time (what
    a slice drops can never be among the best of the union), and the kept rows are merged with the
    pending ones `chunk` rows at a time by ranges of ends: every temporary is bounded by `chunk`,
    neither by the kept rows nor by a search block (up to 2,000 queries x 16 candidates x 2 ends; at
    65,536 rows a merge's sorts took ~9 MB at 10^5 fragments: the search round's peak)."""

    def __init__(self, limit: int, rank: np.ndarray, admit: Callable[[np.ndarray, np.ndarray], np.ndarray],
                 chunk: int = 8_192) -> None:
        self.limit, self.rank, self.admit, self.chunk = limit, rank, admit, chunk
        # int32 ends (2^31 fragments) and float32 estimates (the search's own precision): 12 B a row,
        # sorted by end, each end's rows best first
        self.end, self.partner = np.zeros(0, np.int32), np.zeros(0, np.int32)
        self.strength = np.zeros(0, np.float32)
        self.pending: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []
        self.pending_rows = 0

    def add(self, pairs: np.ndarray, estimate: np.ndarray) -> None:
        pairs = np.asarray(pairs).reshape(-1, 2)
        estimate = np.asarray(estimate)
        half = max(1, self.chunk // 2)  # a slice's rows count twice (once per end)
        for lo in range(0, len(pairs), half):
            self._add(pairs[lo:lo + half].astype(np.int64), estimate[lo:lo + half])

    def _add(self, pairs: np.ndarray, estimate: np.ndarray) -> None:
        estimate = np.nan_to_num(np.asarray(estimate, np.float32), nan=0.0)
        ok = (pairs[:, 0] != pairs[:, 1]) & self.admit(pairs[:, 0], pairs[:, 1])
        a, b, e = pairs[ok, 0].astype(np.int32), pairs[ok, 1].astype(np.int32), estimate[ok]
        self.pending.append(self._best(np.r_[a, b], np.r_[b, a], np.r_[e, e]))
        self.pending_rows += len(self.pending[-1][0])
        # merged every `chunk` pending rows: pending rows never grow with the kept ones (a merge
        # copies the kept rows once: at 10^5 fragments ~0.9 MB, a few hundred times a round)
        if self.pending_rows > self.chunk:
            self._compact()

    def _best(self, end: np.ndarray, partner: np.ndarray,
              strength: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Rows sorted by end, each pair once at its highest estimate, each end's best `limit`."""
        order = np.lexsort((-strength, partner, end))
        end, partner, strength = end[order], partner[order], strength[order]
        first = np.r_[True, (end[1:] != end[:-1]) | (partner[1:] != partner[:-1])] if len(end) else np.zeros(0, bool)
        end, partner, strength, _ = ranked_tries(end[first], partner[first], strength[first],
                                                 self.rank[partner[first]], self.limit)
        return end, partner, strength

    def _compact(self) -> None:
        if not self.pending:
            return
        end = np.concatenate([p[0] for p in self.pending])
        order = np.argsort(end, kind="stable")
        end = end[order]
        partner = np.concatenate([p[1] for p in self.pending])[order]
        strength = np.concatenate([p[2] for p in self.pending])[order]
        self.pending, self.pending_rows = [], 0
        del order
        # ranges of ends holding at most ~`chunk` pending and ~`chunk` kept rows each
        cuts = np.unique(np.r_[end[::self.chunk], self.end[::self.chunk]])[1:]
        new_at = np.r_[0, np.searchsorted(end, cuts), len(end)]
        kept_at = np.r_[0, np.searchsorted(self.end, cuts), len(self.end)]
        # a range with no pending rows keeps its rows as they are (views until the concatenation)
        pieces = [self._best(np.r_[self.end[k0:k1], end[n0:n1]], np.r_[self.partner[k0:k1], partner[n0:n1]],
                             np.r_[self.strength[k0:k1], strength[n0:n1]]) if n1 > n0
                  else (self.end[k0:k1], self.partner[k0:k1], self.strength[k0:k1])
                  for k0, k1, n0, n1 in zip(kept_at[:-1], kept_at[1:], new_at[:-1], new_at[1:])]
        del end, partner, strength
        self.end, self.partner, self.strength = (np.concatenate([p[c] for p in pieces]) for c in range(3))

    def tries(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """(end, partner, estimate, attempt) as `ranked_tries` over every admitted pair: int32 indices
        and attempts, the kept arrays themselves (int64 copies took ~2 MB more at 10^5 fragments)."""
        self._compact()
        end = self.end
        first = np.r_[True, end[1:] != end[:-1]] if len(end) else np.zeros(0, bool)
        row = np.arange(len(end), dtype=np.int32)
        attempt = row - np.maximum.accumulate(np.where(first, row, 0))
        return end, self.partner, self.strength, attempt


def resolve_greedy(members: np.ndarray, accepted: np.ndarray, priority: np.ndarray, chunk: int = 8_192) -> np.ndarray:
    """rep_of over `members` (int32): in priority order, each joins the centre that accepted it
    (`accepted[m]`, -1: none) if that centre is a representative, else represents itself (every
    centre has a better priority than its members). `priority`: a permutation of 0..n-1. The
    members' priority order is read off its inverse (4 B a fragment, no sort), and the Python loop
    takes `chunk` members at a time: the driver never holds a Python int per fragment."""
    n = len(priority)
    by_priority = np.empty(n, np.int32)
    by_priority[priority] = np.arange(n, dtype=np.int32)
    is_member = np.zeros(n, bool)
    is_member[members] = True
    in_order = by_priority[is_member[by_priority]]
    del by_priority, is_member
    is_rep = np.zeros(n, bool)
    rep = np.full(n, -1, np.int32)
    for lo in range(0, len(in_order), chunk):
        xs = in_order[lo:lo + chunk]
        for x, c in zip(xs.tolist(), accepted[xs].tolist()):
            if c >= 0 and is_rep[c]:
                rep[x] = c
            else:
                rep[x] = x
                is_rep[x] = True
    return rep[members]


def search_round(reps: np.ndarray, search: ScoredSearch, aligner: Aligner, lengths: np.ndarray,
                 rank: np.ndarray, config: ClusterConfig, evidence: Evidence, *, desc: str,
                 since: int = 0) -> np.ndarray:
    """rep_of over `reps`: the sensitive search among representatives; each one's
    `centres_per_fragment` best partners by the search's estimated TM, TM-aligned in turns (a
    representative that some alignment already showed coverable is not tried further; a pair is
    aligned once for both ends, and never when `evidence` has it from row `since` on); then Foldseek's
    rule in both directions over these and the earlier alignments among the representatives, and
    greedy set cover (so an edge the k-mer rounds' longest-first order could not use, a shorter
    fragment covering a longer one, still counts). Its rows worth keeping go to `evidence`."""
    n = len(lengths)
    is_rep = np.zeros(n, bool)
    is_rep[reps] = True
    # what the earlier rounds aligned among these representatives, reduced a block at a time to the
    # edges (16 B each) and pair keys (8 B) this round needs, never every column of every row
    none = np.zeros(0, np.int64)
    rep_ends, member_ends, keys = [none], [none], [none]
    for known in evidence.selected(Among(is_rep), since=since):
        r, m = algo.first_pass_edges(known["i"], known["j"], known["tm_a"], known["tm_b"], known["cov_a"],
                                     known["cov_b"], config)
        rep_ends.append(r)
        member_ends.append(m)
        keys.append(np.minimum(known["i"], known["j"]) * n + np.maximum(known["i"], known["j"]))
    covered = np.zeros(n, bool)
    for m in member_ends:
        covered[m] = True
    aligned = np.unique(np.concatenate(keys))
    del keys

    # pairs aligned already are not tried again: a later round's tries reach further down the list.
    # Pairs in merge reach but not coverage reach can never be an edge; they are tried as merge
    # evidence for the audit (both ends would otherwise never meet again once either is a member)
    def admit(a: np.ndarray, b: np.ndarray) -> np.ndarray:
        return (algo.within_reach(a, b, lengths, min(config.coverage, config.merge_threshold))
                & ~find_sorted(aligned, np.minimum(a, b) * n + np.maximum(a, b))[0])

    best = BestPartners(config.centres_per_fragment, rank, admit)
    for pairs, estimate in search(reps, reps, desc=f"{desc} search", limit=config.search_candidates):
        best.add(pairs, estimate)
    end, partner, _, attempt = best.tries()
    for t in range(config.centres_per_fragment):
        sel = (attempt == t) & ~covered[end]
        a, b = end[sel].astype(np.int64), partner[sel].astype(np.int64)  # int32 ends: the key needs 64 bits
        key = np.unique(np.minimum(a, b) * n + np.maximum(a, b))
        del a, b
        key = key[~find_sorted(aligned, key)[0]]
        if not len(key):
            continue
        aligned = np.union1d(aligned, key)
        i, j = key // n, key % n
        r, m = edges_of(i, j, align_kept(aligner, np.column_stack([i, j]), config, evidence,
                                         desc=f"{desc}, try {t + 1}"))
        rep_ends.append(r)
        member_ends.append(m)
        covered[m] = True
    local = np.full(n, -1, np.int32)  # 4 B a fragment: representatives are numbered below 2^31
    local[reps] = np.arange(len(reps))
    local_rep_of = algo.greedy_set_cover(len(reps), local[np.concatenate(rep_ends)],
                                         local[np.concatenate(member_ends)], rank[reps])
    return reps[local_rep_of]


def follow(rep_of: np.ndarray, reps: np.ndarray, new_rep: np.ndarray, chunk: int = 65_536) -> np.ndarray:
    """Each member's new representative: new_rep of its old one (`reps` sorted, unique, holding every
    value of rep_of), by binary search `chunk` members at a time: no position array per fragment."""
    out = np.empty(len(rep_of), np.int32)
    for lo in range(0, len(rep_of), chunk):
        out[lo:lo + chunk] = new_rep[np.searchsorted(reps, rep_of[lo:lo + chunk])]
    return out


def cascade_first_pass(members: np.ndarray, candidates: KmerCandidates, search: ScoredSearch,
                       aligner: Aligner, lengths: np.ndarray, priority: np.ndarray, rank: np.ndarray,
                       config: ClusterConfig, evidence: Evidence,
                       steps: Steps | None = None) -> tuple[np.ndarray, list[int]]:
    """(rep_of over `members`, representatives after each round); the alignments worth keeping go to
    `evidence` (the search rounds read back only the rows this first pass added).

    k-mer rounds (each with its own min-hash seed) while they shrink the representatives by
    `min_shrink`, at most `kmer_rounds`; then search rounds on the same terms, at least one. Each
    round is a step of `steps`."""
    steps = steps if steps is not None else Steps(aligner)
    rep_of = np.asarray(members, dtype=np.int32)  # 4 bytes a member (2^31 fragments)
    since = len(evidence)
    counts: list[int] = []
    for stage, limit in (("kmer", config.kmer_rounds), ("search", config.search_rounds)):
        for round_no in range(limit):
            # the first round's members are every fragment in order: no sorted copy of them
            reps = rep_of if algo.is_sorted(rep_of, strict=True) else np.unique(rep_of)
            name = f"{'k-mer' if stage == 'kmer' else 'search'} round {round_no + 1}"
            with steps(name):
                if stage == "kmer":
                    new_rep = kmer_round(reps, candidates, aligner, lengths, priority, config, evidence,
                                         seed=config.seed + round_no, desc=name)
                else:
                    new_rep = search_round(reps, search, aligner, lengths, rank, config, evidence,
                                           desc=name, since=since)
            rep_of = follow(rep_of, reps, new_rep.astype(np.int32))
            counts.append(int(len(np.unique(rep_of))))
            if counts[-1] > (1.0 - config.min_shrink) * len(reps):
                break
    return rep_of, counts
