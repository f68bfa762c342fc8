"""Built-in prefilter (rayfold.align.prefilter): recall on real TM-align references, API contract, bounds."""

from __future__ import annotations

import csv
import tracemalloc
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from rayfold.align.alphabet import encode_fragment
from rayfold.align.prefilter import PrefilterConfig, candidate_pairs, candidate_pairs_scored, search, search_scored
from rayfold.io.structure import read_structure_file
from rayfold.model.fragset import FragmentSet

REFERENCE = "tmalign_reference/tmalign_reference_pairs.tsv"


def _load(shared: Path, files: list[str], states: bool = True) -> FragmentSet:
    coords, seqs, s3 = [], [], []
    for rel in files:
        entry = read_structure_file(shared / rel)
        chain = entry.chains[0]
        coords.append(chain.ca_coords)
        seqs.append(chain.sequence)
        s3.append(encode_fragment(entry, chain.chain_id, np.arange(chain.n_residues)))
    return FragmentSet.from_arrays(files, coords, seqs, None, s3 if states else None)


_CACHE: dict[str, tuple[FragmentSet, list[tuple[int, int]], list[tuple[int, int]]]] = {}


def _reference_set(shared: Path, name: str) -> tuple[FragmentSet, list[tuple[int, int]], list[tuple[int, int]]]:
    """Chains of one reference set, its pairs at tm_min >= 0.7 and below (index pairs, i < j)."""
    if name not in _CACHE:
        with open(shared / REFERENCE) as fh:
            rows = [r for r in csv.DictReader(fh, delimiter="\t") if r["set"] == name]
        files = sorted({r["chain_1"] for r in rows} | {r["chain_2"] for r in rows})
        ix = {f: i for i, f in enumerate(files)}

        def key(r: dict[str, str]) -> tuple[int, int]:
            a, b = ix[r["chain_1"]], ix[r["chain_2"]]
            return (min(a, b), max(a, b))

        pos = [key(r) for r in rows if float(r["tm_min"]) >= 0.7]
        neg = [key(r) for r in rows if float(r["tm_min"]) < 0.7]
        _CACHE[name] = (_load(shared, files), pos, neg)
    return _CACHE[name]


def _check_pairs(pairs: np.ndarray) -> None:
    assert pairs.dtype == np.int64 and pairs.ndim == 2 and pairs.shape[1] == 2
    if len(pairs):
        assert (pairs[:, 0] < pairs[:, 1]).all()
        order = np.lexsort((pairs[:, 1], pairs[:, 0]))
        np.testing.assert_array_equal(order, np.arange(len(pairs)))  # sorted
        assert len(np.unique(pairs, axis=0)) == len(pairs)  # unique


@pytest.mark.parametrize(
    ("name", "min_recall"),
    [("scop_globins_foldseek_example", 0.95), ("homstrad_within_family", 0.95)],
)
def test_recall_on_tmalign_reference(shared_data: Path, name: str, min_recall: float) -> None:
    fs, pos, neg = _reference_set(shared_data, name)
    pairs = candidate_pairs(fs)
    _check_pairs(pairs)
    got = set(map(tuple, pairs.tolist()))
    recall = sum(p in got for p in pos) / len(pos)
    assert recall >= min_recall, (name, recall)
    if name == "homstrad_within_family":
        # 50 chains of 25 unrelated families: few candidates besides the true pairs
        n = len(fs)
        assert len(pairs) <= 0.05 * n * (n - 1) / 2


def test_deterministic_and_block_size_invariant(shared_data: Path) -> None:
    fs, _, _ = _reference_set(shared_data, "homstrad_within_family")
    a = candidate_pairs(fs)
    b = candidate_pairs(fs)
    np.testing.assert_array_equal(a, b)
    # tiny blocks and batches (heavy queries split by length window) give the same answer
    small = PrefilterConfig(block_hits=2_000, batch_cells=20_000)
    np.testing.assert_array_equal(candidate_pairs(fs, small), a)
    pairs, scores = candidate_pairs_scored(fs)
    np.testing.assert_array_equal(pairs, a)
    assert scores.shape == (len(a),) and (scores >= PrefilterConfig().min_score).all()


def test_length_ratio_pruning(shared_data: Path) -> None:
    """Lshort/Llong < 0.7 can never reach min-TM 0.7: such pairs are never proposed."""
    fs, _, _ = _reference_set(shared_data, "scop_globins_foldseek_example")
    i = int(np.argmax(fs.lengths))
    length = int(fs.lengths[i])
    ca, seq, s3 = fs.coords[i], fs.sequences[i], fs.states_3di[i]
    cut_short = int(np.floor(0.69 * length))  # ratio < 0.7
    cut_ok = int(np.ceil(0.9 * length))
    trio = FragmentSet.from_arrays(
        ["full", "short", "ok"],
        [ca, ca[:cut_short], ca[:cut_ok]],
        [seq, seq[:cut_short], seq[:cut_ok]],
        None,
        [s3, s3[:cut_short], s3[:cut_ok]],
    )
    got = set(map(tuple, candidate_pairs(trio).tolist()))
    assert (0, 2) in got  # the same structure, 90% of it
    assert (1, 2) in got  # 0.69 / 0.9 = 0.77: allowed, and one is a prefix of the other
    assert (0, 1) not in got  # 0.69: pruned, although it is the same structure
    # the rule is the only thing that removed it: with a looser ratio the pair is proposed
    loose = PrefilterConfig(min_length_ratio=0.5)
    assert (0, 1) in set(map(tuple, candidate_pairs(trio, loose).tolist()))


def test_search_query_target_semantics(shared_data: Path) -> None:
    globins, pos, _ = _reference_set(shared_data, "scop_globins_foldseek_example")
    homstrad, _, _ = _reference_set(shared_data, "homstrad_within_family")
    q_idx = [0, 1, 2]
    queries = globins.subset(q_idx)
    # targets: all homstrad chains, then the globins 2..25 (query 2 is also a target)
    targets = FragmentSet.from_arrays(
        homstrad.ids + globins.ids[2:],
        homstrad.coords + globins.coords[2:],
        homstrad.sequences + globins.sequences[2:],
        None,
        homstrad.states_3di + globins.states_3di[2:],
    )
    res = search(queries, targets)
    assert res.dtype == np.int64 and res.shape[1] == 2
    assert res[:, 0].max() < len(queries) and res[:, 1].max() < len(targets)
    assert len(np.unique(res, axis=0)) == len(res)
    np.testing.assert_array_equal(res, res[np.lexsort((res[:, 1], res[:, 0]))])
    got = set(map(tuple, res.tolist()))
    offset = len(homstrad) - 2  # globin g >= 2 is target offset + g
    assert (2, offset + 2) in got  # a fragment present in both sets finds itself
    expected = {(qi, offset + g) for (a, g) in pos for qi, qa in enumerate(q_idx) if a == qa and g >= 2}
    expected |= {(qi, offset + a) for (a, g) in pos for qi, qa in enumerate(q_idx) if g == qa and a >= 2}
    assert expected and len(expected & got) / len(expected) >= 0.95
    # globins never match the unrelated homstrad families
    assert sum(1 for _, t in got if t < len(homstrad)) <= 2
    # no targets or no queries: empty, well-formed
    assert search(queries, targets.subset([])).shape == (0, 2)
    assert search(queries.subset([]), targets).shape == (0, 2)


def test_scored_search_ranks_true_pairs_above_the_rest(shared_data: Path) -> None:
    globins, pos, neg = _reference_set(shared_data, "scop_globins_foldseek_example")
    pairs, scores = search_scored(globins, globins)
    np.testing.assert_array_equal(pairs, search(globins, globins))  # the same pairs, one score each
    assert len(scores) == len(pairs) and (scores >= PrefilterConfig().min_score).all()
    score = {(min(a, b), max(a, b)): s for (a, b), s in zip(pairs.tolist(), scores.tolist())}
    true = [score[p] for p in pos if p in score]
    false = [score[p] for p in neg if p in score]
    # the cascade tries the best estimates first: they must say something about the real TM
    assert true and false and np.median(true) > np.median(false)


def test_missing_3di_states(shared_data: Path) -> None:
    fs, pos, _ = _reference_set(shared_data, "scop_globins_foldseek_example")
    bare = FragmentSet.from_arrays(fs.ids, fs.coords, fs.sequences, None, None)
    with pytest.raises(ValueError, match="no 3Di states"):
        candidate_pairs(bare, PrefilterConfig(ca_fallback=False))
    # C-alpha-only approximation (the default): still finds the globin pairs
    got = set(map(tuple, candidate_pairs(bare).tolist()))
    assert sum(p in got for p in pos) / len(pos) >= 0.9
    with pytest.raises(ValueError, match="no 3Di states"):
        search(bare, fs, PrefilterConfig(ca_fallback=False))
    assert len(search(bare.subset([0]), fs)) > 0
    wrong = FragmentSet.from_arrays(fs.ids[:2], fs.coords[:2], fs.sequences[:2], None,
                                    [fs.states_3di[0][:-1], fs.states_3di[1]])
    with pytest.raises(ValueError, match="3Di states for"):
        candidate_pairs(wrong)


def _synthetic(n: int, rng: np.random.Generator, n_planted: int) -> tuple[FragmentSet, list[tuple[int, int]]]:
    """Random-walk C-alpha traces with random 3Di strings, plus noisy copies of a few of them."""
    letters = np.array(list("ACDEFGHIKLMNPQRSTVWY"))
    freq = np.array([5, 3, 10, 3, 3, 4, 5, 3, 3, 6, 2, 2, 8, 5, 3, 6, 2, 21, 3, 3], dtype=float)
    coords, seqs, states = [], [], []
    for _ in range(n - n_planted):
        length = int(rng.integers(40, 160))
        steps = rng.normal(size=(length, 3))
        steps *= 3.8 / np.linalg.norm(steps, axis=1, keepdims=True)
        coords.append(np.cumsum(steps, axis=0))
        seqs.append("A" * length)
        states.append("".join(rng.choice(letters, size=length, p=freq / freq.sum())))
    planted = []
    for k in range(n_planted):
        src = k * 7
        mutate = rng.random(len(states[src])) < 0.1
        s = np.array(list(states[src]))
        s[mutate] = rng.choice(letters, size=int(mutate.sum()))
        coords.append(coords[src] + rng.normal(scale=0.3, size=coords[src].shape))
        seqs.append(seqs[src])
        states.append("".join(s))
        planted.append((src, n - n_planted + k))
    ids = [f"f{i:05d}" for i in range(n)]
    return FragmentSet.from_arrays(ids, coords, seqs, None, states), planted


def test_memory_bounded_on_thousands_of_fragments() -> None:
    rng = np.random.default_rng(7)
    fs, planted = _synthetic(3000, rng, n_planted=20)
    config = PrefilterConfig(block_hits=200_000, batch_cells=500_000)
    tracemalloc.start()
    try:
        pairs = candidate_pairs(fs, config)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    _check_pairs(pairs)
    got = set(map(tuple, pairs.tolist()))
    assert all(p in got for p in planted)
    n = len(fs)
    assert len(pairs) <= 0.001 * n * (n - 1) / 2  # random fragments: next to nothing else
    # an n x n float matrix alone would take 72 MB; the whole search stays far below
    assert peak < 60 * 2**20, peak / 2**20
    # a smaller budget gives the same answer
    np.testing.assert_array_equal(candidate_pairs(fs, replace(config, block_hits=20_000)), pairs)
