"""The built-in cascade (rayfold.cluster.cascade) without Ray: score tables stand in for TM-align
and hand-made edges for the k-mer shuffle, so each decision is known in advance."""

from __future__ import annotations

import json

import numpy as np
import pytest

from rayfold.cluster.algorithm import unique_scored_pairs
from rayfold.cluster.cascade import (
    BestPartners,
    cascade_first_pass,
    centre_priority,
    kmer_round,
    ranked_tries,
    resolve_greedy,
    search_round,
    untried_pairs,
)
from rayfold.cluster.evidence import Evidence
from rayfold.cluster.rules import ClusterConfig
from rayfold.cluster.steps import Steps

COLUMNS = ("i", "j", "tm_a", "tm_b", "rmsd", "aligned_length", "seq_identity", "cov_a", "cov_b")
INTS = ("i", "j", "aligned_length")


class Scores:
    """{(i, j): min-TM-like symmetric score with full coverage}; unlisted pairs score 0.1."""

    def __init__(self, table: dict[tuple[int, int], float]) -> None:
        self.table = {**table, **{(j, i): s for (i, j), s in table.items()}}
        self.calls = 0
        self.asked: list[tuple[int, int]] = []

    def align(self, pairs: np.ndarray, *, desc: str) -> dict[str, np.ndarray]:
        pairs = np.asarray(pairs, dtype=np.int64).reshape(-1, 2)
        self.calls += len(pairs)
        self.asked += [tuple(p) for p in pairs.tolist()]
        s = np.array([self.table.get(tuple(p), 0.1) for p in pairs.tolist()], dtype=np.float64)
        cov = np.where(s > 0.1, 1.0, 0.2)
        return {"i": pairs[:, 0].copy(), "j": pairs[:, 1].copy(), "tm_a": s, "tm_b": s.copy(),
                "rmsd": np.ones(len(s)), "aligned_length": np.full(len(s), 50), "seq_identity": np.zeros(len(s)),
                "cov_a": cov, "cov_b": cov.copy()}


def edges(rows: list[tuple[int, int, int]], seeds: list[int] | None = None):  # noqa: ANN201
    """Fixed k-mer edges; `seeds` records the min-hash seed of every round that asked."""
    def candidates(members: np.ndarray, priority: np.ndarray, seed: int = 0):  # noqa: ANN202
        if seeds is not None:
            seeds.append(seed)
        keep = [r for r in rows if r[0] in set(members.tolist()) and r[1] in set(members.tolist())]
        arr = np.array(keep, dtype=np.int64).reshape(-1, 3)
        return arr[:, 0], arr[:, 1], arr[:, 2]
    return candidates


def no_search(queries: np.ndarray, targets: np.ndarray, *, desc: str,
              limit: int | None = None) -> list[tuple[np.ndarray, np.ndarray]]:
    return []


def scored_pairs(estimates: dict[tuple[int, int], float]):  # noqa: ANN201
    """A search proposing every pair among the queries, with a fixed estimated TM (0.4 unless listed),
    one block per query."""
    def search(queries: np.ndarray, targets: np.ndarray, *, desc: str,
               limit: int | None = None) -> list[tuple[np.ndarray, np.ndarray]]:
        blocks = []
        for q in queries.tolist():
            pairs = np.array([(q, t) for t in targets.tolist() if q < t], np.int64).reshape(-1, 2)
            blocks.append((pairs, np.array([estimates.get(tuple(p), 0.4) for p in pairs.tolist()])))
        return blocks
    return search


LENGTHS = np.full(6, 100)
CONFIG = ClusterConfig(centres_per_fragment=2)


def test_centre_priority_is_longest_then_plddt_then_id() -> None:
    p = centre_priority(np.array([100, 120, 120, 120]), np.array([90.0, 80.0, 85.0, 85.0]), ["d", "c", "b", "a"])
    assert p.tolist() == [3, 2, 1, 0]


def test_a_member_is_aligned_to_its_second_centre_only_when_the_first_refuses() -> None:
    # 2, 3 and 4 share k-mers with centres 0 (more) and 1; 2 fits 0, 3 and 4 fit only 1
    aligner = Scores({(2, 0): 0.8, (3, 1): 0.8, (4, 1): 0.8})
    evidence = Evidence()
    rep_of = kmer_round(np.arange(5), edges([(2, 0, 5), (2, 1, 2), (3, 0, 4), (3, 1, 2), (4, 0, 3), (4, 1, 1)]),
                        aligner, LENGTHS[:5], np.arange(5), CONFIG, evidence)
    columns = evidence.rows()
    # (2, 1) never aligned: 0 accepted 2; (4, 1) neither: a second try needs two shared k-mers
    assert sorted(aligner.asked) == [(2, 0), (3, 0), (3, 1), (4, 0)]
    assert rep_of.tolist() == [0, 1, 0, 1, 4]
    # failed tries are not kept (the driver's memory grows with the edges, not the tries)
    assert sorted(zip(columns["i"].tolist(), columns["j"].tolist())) == [(2, 0), (3, 1)]


def test_unreachable_lengths_are_never_aligned() -> None:
    aligner = Scores({})
    rep_of = kmer_round(np.arange(2), edges([(1, 0, 9)]), aligner, np.array([200, 100]), np.arange(2), CONFIG,
                        Evidence())
    assert aligner.calls == 0 and rep_of.tolist() == [0, 1]


def test_greedy_resolution_needs_the_centre_to_stay_a_representative() -> None:
    # 1 joins 0; 2 was accepted by 1, which is no representative: 2 represents itself
    rep = resolve_greedy(np.arange(3), np.array([-1, 0, 1]), np.arange(3))
    assert rep.tolist() == [0, 0, 2]
    # accepted by 0, a representative, it joins it
    assert resolve_greedy(np.arange(3), np.array([-1, 0, 0]), np.arange(3)).tolist() == [0, 0, 0]
    # in priority order (2, 0, 1): 0 joins 2, so 1, accepted by 0, represents itself
    assert resolve_greedy(np.arange(3), np.array([2, 0, -1]), np.array([1, 2, 0])).tolist() == [2, 1, 2]


def test_cascade_rounds_merge_representatives_and_stop_when_nothing_shrinks() -> None:
    # k-mer round: 2 -> 0 and 3 -> 1; a second k-mer round (another seed) finds nothing new, so the
    # search rounds begin: 0 ~ 1; the next search round removes nothing, so none more
    aligner, seeds, evidence = Scores({(2, 0): 0.8, (3, 1): 0.8, (0, 1): 0.75}), [], Evidence()
    steps = Steps(aligner)
    rep_of, rounds = cascade_first_pass(
        np.arange(5), edges([(2, 0, 3), (3, 1, 3)], seeds), scored_pairs({}), aligner, np.full(5, 100),
        np.arange(5), np.arange(5), ClusterConfig(kmer_rounds=3, search_rounds=3, seed=7), evidence, steps)
    columns = evidence.rows()
    assert rep_of.tolist() == [0, 0, 0, 0, 4]
    assert seeds == [7, 8]  # each k-mer round draws its own k-mers
    assert rounds == [3, 3, 2, 2]
    # k-mer rounds: 2 then 0 (no edges among 0, 1, 4); search round 1: (0, 1) accepted, (0, 4) and
    # then (1, 4) refused; search round 2 (reps 0, 4): (0, 4) once more
    assert aligner.calls == 2 + 0 + 3 + 1
    per_round = {name: step["alignments"] for name, step in json.loads(steps.to_json()).items()}
    assert per_round == {"k-mer round 1": 2, "k-mer round 2": 0, "search round 1": 3, "search round 2": 1}
    assert sorted(zip(columns["i"].tolist(), columns["j"].tolist())) == [(0, 1), (2, 0), (3, 1)]

    rep_of, rounds = cascade_first_pass(np.arange(5), edges([]), no_search, Scores({}), np.full(5, 100),
                                        np.arange(5), np.arange(5), ClusterConfig(kmer_rounds=3, search_rounds=3),
                                        Evidence())
    assert rep_of.tolist() == list(range(5)) and rounds == [5, 5]


def test_a_search_round_tries_the_best_estimates_first_and_aligns_each_pair_once() -> None:
    aligner = Scores({(3, 1): 0.8, (3, 0): 0.8, (1, 0): 0.8})
    estimates = {(0, 3): 0.35, (1, 3): 0.6, (2, 3): 0.9, (0, 1): 0.3, (0, 2): 0.3, (1, 2): 0.3}
    limits: list = []
    search = scored_pairs(estimates)

    def recording(queries: np.ndarray, targets: np.ndarray, *, desc: str, limit: int | None = None):  # noqa: ANN202
        limits.append(limit)
        return search(queries, targets, desc=desc)

    rep_of = search_round(np.arange(4), recording, aligner, np.full(4, 100), np.arange(4),
                          ClusterConfig(centres_per_fragment=2, search_candidates=7), Evidence(), desc="test")
    assert limits == [7]  # the structural check runs on each representative's best 7 seeds per shard
    # try 1, each end's best estimate: 0-3, 1-3, 2-3 (asked by both 2 and 3: aligned once); 0, 1 and 3
    # are then coverable, so only 2 tries again (its 2nd best, 0); 0-1 would succeed but is never needed
    assert sorted(aligner.asked) == [(0, 2), (0, 3), (1, 3), (2, 3)]
    # set cover: 3 covers 0 and 1 (the most), 2 stays alone
    assert rep_of.tolist() == [3, 3, 2, 3]


def test_no_members_no_work() -> None:
    aligner = Scores({})
    rep_of, rounds = cascade_first_pass(np.zeros(0, np.int64), edges([]), no_search, aligner,
                                        LENGTHS, np.arange(6), np.arange(6), CONFIG, Evidence())
    assert len(rep_of) == 0 and aligner.calls == 0


def test_best_partners_folded_block_by_block_equal_the_ranking_of_all_candidates_at_once() -> None:
    rng = np.random.default_rng(3)
    n = 300
    rank = rng.permutation(n)
    pairs = rng.integers(0, n, size=(20_000, 2))  # repeats, both orientations and self pairs included
    estimate = np.round(rng.random(len(pairs)), 2).astype(np.float32)  # ties on purpose (the search gives float32)
    estimate[::97] = np.nan
    admitted = (pairs[:, 0] + pairs[:, 1]) % 5 != 0

    def admit(a: np.ndarray, b: np.ndarray) -> np.ndarray:
        return (a + b) % 5 != 0

    # the whole candidate list at once, as the search rounds ranked it before folding
    u, s = unique_scored_pairs(pairs[admitted], estimate[admitted])
    expected = ranked_tries(np.r_[u[:, 0], u[:, 1]], np.r_[u[:, 1], u[:, 0]], np.r_[s, s],
                            rank[np.r_[u[:, 1], u[:, 0]]], 3)
    # merged in ranges of ends of at most `chunk` rows: the default, and small ones that cut ends apart
    # (and a block bigger than `chunk` cut into slices before it is folded)
    for block_size, seed, chunk in ((50, 0, 8_192), (700, 1, 8_192), (20_000, 2, 8_192), (20_000, 5, 64),
                                    (50, 3, 64), (700, 4, 5), (20_000, 6, 65_536)):
        order = np.random.default_rng(seed).permutation(len(pairs))
        best = BestPartners(3, rank, admit, chunk=chunk)
        for start in range(0, len(order), block_size):
            rows = order[start:start + block_size]
            best.add(pairs[rows], estimate[rows])
        got = best.tries()
        for g, e in zip(got, expected):
            np.testing.assert_array_equal(g, e)
    assert np.bincount(expected[0], minlength=n).max() == 3  # the limit bound something


@pytest.mark.parametrize("seed", range(12))
def test_greedy_resolution_matches_its_definition_in_any_chunking(seed: int) -> None:
    rng = np.random.default_rng(seed)
    n = int(rng.integers(2, 80))
    priority = rng.permutation(n)
    members = np.sort(rng.choice(n, int(rng.integers(1, n + 1)), replace=False))
    accepted = np.full(n, -1, np.int32)  # at most one accepting centre a member, of a better priority
    for m in members.tolist():
        better = np.flatnonzero(priority < priority[m])
        if len(better) and rng.random() < 0.7:
            accepted[m] = rng.choice(better)
    # by definition: members in priority order join the centre that accepted them if it already
    # represents itself; else they represent themselves
    rep: dict = {}
    for x in sorted(members.tolist(), key=lambda m: priority[m]):
        c = int(accepted[x])
        rep[x] = c if c >= 0 and rep.get(c) == c else x
    expected = [rep[x] for x in members.tolist()]
    for chunk in (1, 3, 8_192):
        assert resolve_greedy(members, accepted, priority, chunk=chunk).tolist() == expected


@pytest.mark.parametrize("chunk", [1, 7, 65_536])
def test_untried_pairs_are_the_try_of_members_not_yet_accepted(chunk: int) -> None:
    rng = np.random.default_rng(11)
    member = np.sort(rng.integers(0, 300, 1_000)).astype(np.int32)
    centre = rng.integers(0, 300, len(member)).astype(np.int32)
    attempt = rng.integers(0, 3, len(member)).astype(np.int8)
    accepted = np.where(rng.random(300) < 0.4, rng.integers(0, 300, 300), -1).astype(np.int32)
    for t in range(4):
        sel = (attempt == t) & (accepted[member] < 0)
        tried = untried_pairs(member, centre, attempt, t, accepted, chunk=chunk)
        assert tried.dtype == np.int32 and tried.shape == (int(sel.sum()), 2)
        assert tried.tolist() == np.column_stack([member[sel], centre[sel]]).tolist()
