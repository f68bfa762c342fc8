"""Cluster semantics (rayfold.cluster.linkage) and cohesion as pure functions, on cases with known answers.

Scores come from a fixed matrix standing in for TM-align, so what each linkage does with the same
evidence is exact; the real-structure checks are in test_clustering.py and bench/cluster_semantics.py.
"""

import numpy as np
import pytest

from rayfold.cluster.cohesion import cohesion_pairs, summarise
from rayfold.cluster.linkage import IGNORED, MERGED, REASSIGNED, REDUNDANT, REFUSED, link_clusters, pair_key
from rayfold.cluster.pairscores import PairScores


class Matrix:
    """min-TM from a symmetric matrix; counts what the guard asked for."""

    def __init__(self, tm: np.ndarray) -> None:
        self.tm = tm
        self.asked: list[tuple[int, int]] = []

    def __call__(self, pairs: np.ndarray) -> np.ndarray:
        self.asked += [tuple(p) for p in pairs.tolist()]
        return self.tm[pairs[:, 0], pairs[:, 1]]


def chain(n: int) -> np.ndarray:
    """A repeat-like chain: neighbours 0.75, two apart 0.55, further apart 0.2."""
    distance = np.abs(np.subtract.outer(np.arange(n), np.arange(n)))
    return np.select([distance == 0, distance == 1, distance == 2], [1.0, 0.75, 0.55], 0.2)


def evidence_of(pairs, tm, source="members"):
    pairs = np.array(pairs, dtype=np.int64)
    return pairs[:, 0], pairs[:, 1], tm[pairs[:, 0], pairs[:, 1]], np.array([source] * len(pairs), dtype=object)


def test_single_linkage_chains_a_repeat_family_and_guarded_does_not():
    tm = chain(8)
    rep_of = np.arange(8)  # eight first-pass singletons
    rank = np.arange(8)
    a, b, s, src = evidence_of([(k, k + 1) for k in range(7)], tm)
    single = link_clusters(rep_of, a, b, s, src, rank, linkage="single")
    assert len(set(single.cluster_rep.tolist())) == 1  # 0 and 7 (min-TM 0.2) together
    guarded = link_clusters(rep_of, a, b, s, src, rank, linkage="guarded", guard=0.5, score=Matrix(tm))
    labels = guarded.cluster_rep
    assert len(set(labels.tolist())) > 1
    for member, rep in enumerate(labels.tolist()):  # every cluster is a star around its representative
        assert tm[member, rep] >= 0.5
    assert set(guarded.decision.tolist()) <= {MERGED, REFUSED}
    assert not np.isnan(guarded.guard_tm[guarded.decision != REDUNDANT]).any()


def test_method_uses_representative_evidence_only():
    tm = chain(4)
    rep_of = np.array([0, 1, 2, 3])
    a = np.array([0, 2])
    b = np.array([1, 3])
    source = np.array(["representatives", "members"], dtype=object)
    linked = link_clusters(rep_of, a, b, tm[a, b], source, np.arange(4), linkage="method")
    assert linked.cluster_rep.tolist() == [0, 0, 2, 3]
    assert linked.decision.tolist() == [MERGED, IGNORED]


def test_the_largest_first_pass_cluster_gives_the_representative():
    rep_of = np.array([0, 0, 2, 2, 2, 5])
    tm = np.full((6, 6), 0.9)
    a, b, s, src = evidence_of([(0, 2), (2, 5)], tm, "representatives")
    for linkage in ("single", "method", "guarded"):
        linked = link_clusters(rep_of, a, b, s, src, np.arange(6), linkage=linkage, score=Matrix(tm))
        assert linked.cluster_rep.tolist() == [2] * 6
    no_evidence = link_clusters(rep_of, a[:0], b[:0], s[:0], src[:0], np.arange(6))
    assert no_evidence.cluster_rep.tolist() == rep_of.tolist()


def test_strongest_evidence_first_and_refused_merges_are_recorded():
    # 1 is close to both 0 and 2 (0.8 / 0.72) but 0 and 2 are unrelated (0.1): 1 joins 0, then 2 is refused
    tm = np.array([[1.0, 0.8, 0.1], [0.8, 1.0, 0.72], [0.1, 0.72, 1.0]])
    rep_of = np.arange(3)
    a, b, s, src = evidence_of([(1, 2), (0, 1)], tm)
    known = {pair_key(int(x), int(y)): float(v) for x, y, v in zip(a, b, s)}  # the evidence is aligned already
    linked = link_clusters(rep_of, a, b, s, src, np.arange(3), linkage="guarded", guard=0.5, score=Matrix(tm),
                           known=known)
    assert linked.cluster_rep.tolist() == [0, 0, 2]
    assert linked.decision.tolist() == [REFUSED, MERGED]
    assert linked.guard_tm[0] == pytest.approx(0.1)
    assert linked.guard_alignments == 1  # only (0, 2) was unknown: (0, 1) is the evidence itself


def test_known_scores_are_not_aligned_again_and_batching_does_not_change_the_result():
    rng = np.random.default_rng(5)
    n = 40
    tm = rng.uniform(0.2, 1.0, size=(n, n))
    tm = np.minimum(tm, tm.T)
    np.fill_diagonal(tm, 1.0)
    pairs = [(i, j) for i in range(n) for j in range(i + 1, n) if tm[i, j] >= 0.7]
    a, b, s, src = evidence_of(pairs, tm)
    rep_of, rank = np.arange(n), rng.permutation(n)
    known = {pair_key(i, j): float(tm[i, j]) for i, j in pairs}
    results = []
    for prefetch in (1, 7, 4096):
        scorer = Matrix(tm)
        linked = link_clusters(rep_of, a, b, s, src, rank, guard=0.5, score=scorer, known=known, prefetch=prefetch)
        assert not set(map(lambda p: pair_key(*p), scorer.asked)) & set(known)
        assert len(scorer.asked) == len(set(scorer.asked))  # each pair aligned once
        results.append((linked.cluster_rep.tolist(), linked.decision.tolist()))
        for member, rep in enumerate(linked.cluster_rep.tolist()):
            assert tm[member, rep] >= 0.5
    assert results[0] == results[1] == results[2]


def test_redundant_evidence_and_unknown_linkage():
    tm = np.full((3, 3), 0.9)
    a, b, s, src = evidence_of([(0, 1), (0, 1), (1, 0)], tm)
    linked = link_clusters(np.arange(3), a, b, s, src, np.arange(3), linkage="single")
    assert sorted(linked.decision.tolist()) == [MERGED, REDUNDANT, REDUNDANT]
    with pytest.raises(ValueError, match="unknown linkage"):
        link_clusters(np.arange(3), a, b, s, src, np.arange(3), linkage="complete")


def test_cohesion_samples_members_per_cluster_and_summarises():
    cluster_rep = np.array([0, 0, 0, 0, 0, 5, 5, 7])
    ids = [f"f{i}" for i in range(8)]
    pairs = cohesion_pairs(cluster_rep, ids, per_cluster=2, seed=3)
    assert pairs.shape == (3, 2)  # 2 of cluster 0's four members, cluster 5's one member, none of 7
    assert set(pairs[:, 1].tolist()) == {0, 5} and 0 not in pairs[:, 0].tolist()
    assert pairs.tolist() == cohesion_pairs(cluster_rep, ids, per_cluster=2, seed=3).tolist()
    big = np.zeros(50, np.int64)  # one cluster of 50: the sample follows the seed
    names = [f"g{i}" for i in range(50)]
    assert cohesion_pairs(big, names, 5, seed=3).tolist() != cohesion_pairs(big, names, 5, seed=4).tolist()
    sampled, low, mid = summarise(pairs, np.array([0.6, 0.8, 0.9])).of(np.arange(8))
    assert sampled.tolist() == [2, 0, 0, 0, 0, 1, 0, 0]
    assert low[0] == pytest.approx(0.6) and mid[0] == pytest.approx(0.7)
    assert low[5] == pytest.approx(0.9) and np.isnan(low[7]) and np.isnan(mid[1])
    assert summarise(np.zeros((0, 2), np.int64), np.zeros(0)).of(np.arange(3))[0].tolist() == [0, 0, 0]


@pytest.mark.parametrize("seed", range(4))
def test_cohesion_sample_is_its_definition_in_any_chunking(seed: int) -> None:
    """Each cluster's `per_cluster` members of the smallest seeded hash, by cluster then hash, whatever
    the chunks the members are read in."""
    from rayfold.cluster.rules import seeded_hash

    rng = np.random.default_rng(seed)
    n = 300
    reps = np.sort(rng.choice(n, 12, replace=False))
    cluster_rep = reps[rng.integers(0, len(reps), n)]
    cluster_rep[reps] = reps
    ids = [f"frag{k:04d}" for k in range(n)]
    expected = sorted((int(cluster_rep[m]), seeded_hash(seed, ids[m]), m) for m in range(n) if cluster_rep[m] != m)
    by_cluster: dict = {}
    for r, _, m in expected:
        by_cluster.setdefault(r, [])
        if len(by_cluster[r]) < 3:
            by_cluster[r].append([m, r])
    want = [row for r in sorted(by_cluster) for row in by_cluster[r]]
    for chunk in (1, 7, 64, 16_384):
        assert cohesion_pairs(cluster_rep, ids, 3, seed, chunk=chunk).tolist() == want


def test_a_refused_pair_is_kept_by_moving_one_member_within_the_guard():
    # first-pass clusters {0, 1} and {2, 3}; members 1 and 3 are a real pair (0.75) but the
    # representatives 0 and 2 share little (0.4): no merge, but 3 reaches 0.6 against 0, so it moves.
    tm = np.full((4, 4), 0.2)
    np.fill_diagonal(tm, 1.0)
    for a, b, v in ((0, 1, 0.8), (2, 3, 0.8), (1, 3, 0.75), (0, 2, 0.4), (0, 3, 0.6), (1, 2, 0.3)):
        tm[a, b] = tm[b, a] = v
    rep_of = np.array([0, 0, 2, 2])
    linked = link_clusters(rep_of, np.array([0]), np.array([2]), np.array([0.75]),
                           np.array(["members"], dtype=object), np.arange(4), guard=0.5, score=Matrix(tm),
                           pair_i=np.array([1]), pair_j=np.array([3]))
    assert linked.cluster_rep.tolist() == [0, 0, 2, 0]
    assert linked.decision.tolist() == [REASSIGNED] and linked.guard_tm[0] == pytest.approx(0.4)
    # a representative never moves; a member below the guard does not either
    tm[0, 3] = tm[3, 0] = 0.45
    stays = link_clusters(rep_of, np.array([0]), np.array([2]), np.array([0.75]),
                          np.array(["members"], dtype=object), np.arange(4), guard=0.5, score=Matrix(tm),
                          pair_i=np.array([1]), pair_j=np.array([3]))
    assert stays.cluster_rep.tolist() == [0, 0, 2, 2] and stays.decision.tolist() == [REFUSED]


def test_the_guards_alignments_extend_the_callers_scores():
    """A PairScores given as `known` is extended in place (no copy): the steps after the linkage
    look the guard's alignments up instead of aligning them again."""
    tm = np.array([[1.0, 0.8, 0.1], [0.8, 1.0, 0.72], [0.1, 0.72, 1.0]])
    a, b, s, src = evidence_of([(1, 2), (0, 1)], tm)
    known = PairScores(a, b, s)
    assert (0, 2) not in known
    linked = link_clusters(np.arange(3), a, b, s, src, np.arange(3), guard=0.5, score=Matrix(tm), known=known)
    assert linked.guard_alignments == 1 and known[(0, 2)] == pytest.approx(0.1) and len(known) == 3
    as_dict = {pair_key(int(x), int(y)): float(v) for x, y, v in zip(a, b, s)}
    link_clusters(np.arange(3), a, b, s, src, np.arange(3), guard=0.5, score=Matrix(tm), known=as_dict)
    assert len(as_dict) == 2  # a dict is copied, never changed
