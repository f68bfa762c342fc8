import numpy as np
import pytest

from rayfold.cluster.algorithm import known_scores, scores_of, unique_pairs
from rayfold.cluster.linkage import pair_key
from rayfold.cluster.pairscores import DistinctPairs, PairScores, find_sorted
from rayfold.cluster.rules import id_rank, priority_order


def columns(i, j, tm_a, tm_b):
    return {"i": np.array(i), "j": np.array(j), "tm_a": np.array(tm_a, float), "tm_b": np.array(tm_b, float)}


def test_pair_scores_are_unordered_and_the_last_score_of_a_pair_wins_as_in_a_dict():
    sets = [columns([0, 5], [3, 2], [0.9, 0.4], [0.8, 0.6]), columns([3], [0], [0.75], [0.7])]
    known = known_scores(sets)
    reference: dict = {}
    for c in sets:
        for a, b, x, y in zip(c["i"], c["j"], c["tm_a"], c["tm_b"]):
            reference[pair_key(int(a), int(b))] = min(x, y)
    assert len(known) == len(reference) == 2
    for (a, b), tm in reference.items():
        assert known[(a, b)] == known[(b, a)] == tm
    assert (0, 3) in known and (3, 0) in known and (0, 2) not in known
    with pytest.raises(KeyError):
        known[(1, 4)]
    found, tm = known.lookup(np.array([2, 1]), np.array([5, 4]))
    assert found.tolist() == [True, False] and tm[0] == 0.4 and np.isnan(tm[1])
    assert known.nbytes == 32  # two pairs: an int64 key and a float64 score each
    copy = PairScores.of(reference)
    assert copy.lookup(np.array([0, 2]), np.array([3, 5]))[1].tolist() == [0.7, 0.4]
    assert len(PairScores.of(None)) == 0 and not PairScores().lookup(np.array([1]), np.array([2]))[0][0]


class Counting:
    def __init__(self, tm):
        self.tm, self.calls, self.asked = tm, 0, []

    def align(self, pairs, *, desc):
        self.calls += len(pairs)
        self.asked += [tuple(p) for p in pairs.tolist()]
        tm = self.tm[pairs[:, 0], pairs[:, 1]]
        return {"i": pairs[:, 0], "j": pairs[:, 1], "tm_a": tm, "tm_b": tm}


def test_scores_of_aligns_only_unknown_pairs_once_each():
    tm = np.arange(36, dtype=float).reshape(6, 6) / 100
    tm = np.minimum(tm, tm.T)
    known = PairScores(np.array([0]), np.array([1]), np.array([0.99]))
    aligner = Counting(tm)
    got = scores_of(np.array([[1, 0], [2, 3], [3, 2], [4, 5]]), known, aligner, desc="t")
    assert got.tolist() == [0.99, tm[2, 3], tm[2, 3], tm[4, 5]]
    assert aligner.asked == [(2, 3), (4, 5)]


def test_priority_order_matches_a_python_sort_whatever_the_id_order():
    rng = np.random.default_rng(3)
    ids = [f"f{k:03d}" for k in rng.permutation(300)]
    plddt = rng.choice([70.0, 80.5, 90.0], 300)
    lengths = rng.choice([50, 60], 300)
    order = sorted(range(300), key=lambda i: (-plddt[i], -lengths[i], ids[i]))
    expected = np.empty(300, np.int64)
    expected[order] = np.arange(300)
    assert priority_order(plddt, lengths, ids).tolist() == expected.tolist()
    assert id_rank(sorted(ids)).tolist() == list(range(300))
    assert [sorted(ids)[r] for r in id_rank(ids)] == ids



@pytest.mark.parametrize("chunk", [1_000, 50_000, 150_000])
def test_distinct_pairs_fold_equals_unique_pairs_in_any_chunking(chunk):
    rng = np.random.default_rng(chunk)
    pairs = rng.integers(0, 300, size=(150_000, 2))  # duplicates, both orientations and self-pairs
    pairs[-5:] = [[2**31 - 2, 2**31 - 1], [2**31 - 1, 0], [4, 4], [0, 2**31 - 1], [3, 2]]
    folded = DistinctPairs()
    for start in range(0, len(pairs), chunk):
        folded.add(pairs[start:start + chunk])
    assert np.array_equal(folded.pairs(), unique_pairs(pairs))
    assert DistinctPairs().pairs().shape == (0, 2)


def test_find_sorted_answers_as_isin_and_points_at_the_key():
    rng = np.random.default_rng(7)
    for size in (0, 1, 50, 5_000):
        keys = np.unique(rng.integers(0, 10_000, size=size))
        wanted = rng.integers(-5, 10_005, size=3_000)  # below, inside and past the sorted keys
        found, where = find_sorted(keys, wanted)
        np.testing.assert_array_equal(found, np.isin(wanted, keys))
        np.testing.assert_array_equal(keys[where[found]], wanted[found])


def test_pair_scores_merged_in_place_equal_a_dict_under_any_sequence_of_updates():
    rng = np.random.default_rng(11)
    known, reference = PairScores(), {}
    # small updates into big, big into small, repeats; absorbed scores that win and that do not
    for step, size in enumerate([0, 1, 50, 3, 400, 2, 1_000, 0, 7, 301, 5, 999]):
        a, b = rng.integers(0, 60, size), rng.integers(0, 60, size)
        tm = rng.random(size)
        wins = step % 3 != 2
        if size % 2:
            update = PairScores(a, b, tm)
            known.absorb(update, wins=wins)
        else:
            wins = True
            known.update(a, b, tm)
        later: dict = {}
        for x, y, t in zip(a.tolist(), b.tolist(), tm.tolist()):
            later[pair_key(x, y)] = t  # within one update the later row wins
        for key, t in later.items():
            if wins or key not in reference:
                reference[key] = t
    assert len(known) == len(reference)
    pairs = np.array(list(reference), np.int64)
    found, tm = known.lookup(pairs[:, 1], pairs[:, 0])
    assert found.all() and tm.tolist() == list(reference.values())
    assert np.all(np.diff(known._key) > 0)
    keys_before = known._key.copy()
    other = PairScores(np.array([1]), np.array([2]), np.array([0.5]))
    known.absorb(other)
    other.update(np.array([1]), np.array([2]), np.array([0.9]))  # the absorbed scores are not shared
    assert known[(1, 2)] == 0.5 and len(known) >= len(keys_before)
    empty = PairScores()
    empty.absorb(other, wins=False)
    other.update(np.array([1]), np.array([2]), np.array([0.1]))
    assert empty[(1, 2)] == 0.9  # adopted as a copy
