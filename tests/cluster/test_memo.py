"""The alignment memo: stored alignments answer only the pairs and orientations they were computed
for, over today's indices, and only while both fragments keep their content."""

from __future__ import annotations

import numpy as np
import pyarrow as pa

from rayfold.cluster.evidence import Evidence
from rayfold.cluster.memo import AlignmentMemo, content_digests, current_rows, memo_table, oriented


def columns(pairs, tm_a, tm_b=None):
    pairs = np.asarray(pairs, np.int64).reshape(-1, 2)
    tm_a = np.asarray(tm_a, float)
    tm_b = np.asarray(tm_b if tm_b is not None else tm_a / 2, float)
    m = len(pairs)
    return {"i": pairs[:, 0], "j": pairs[:, 1], "tm_a": tm_a, "tm_b": tm_b, "rmsd": np.arange(m, dtype=float),
            "aligned_length": np.arange(m, dtype=np.int32) + 10, "seq_identity": np.full(m, 0.3),
            "cov_a": tm_a / 3, "cov_b": tm_b / 3}


def test_digests_follow_input_content_and_id():
    d = content_digests(["aa", "aa", "bb"], ["x_f1", "x_f2", "x_f1"])
    assert len(set(d.tolist())) == 3 and d.dtype == np.int64
    assert np.array_equal(d, content_digests(["aa", "aa", "bb"], ["x_f1", "x_f2", "x_f1"]))


def test_only_the_asked_orientation_answers_unless_flipped():
    have = columns([[1, 2], [3, 4], [1, 2]], [0.8, 0.6, 0.1], [0.4, 0.3, 0.1])
    found, out = oriented(np.array([[1, 2], [2, 1], [4, 3], [5, 6]]), have, flipped=False)
    assert found.tolist() == [True, False, False, False]
    assert out["tm_a"][0] == 0.8  # the earliest row of a pair wins
    found, out = oriented(np.array([[1, 2], [2, 1], [4, 3], [5, 6]]), have, flipped=True)
    assert found.tolist() == [True, True, True, False]
    assert (out["tm_a"][1], out["tm_b"][1]) == (0.4, 0.8)  # (2, 1) from the row (1, 2): exchanged
    assert np.allclose([out["cov_a"][2], out["cov_b"][2]], [0.1, 0.2])
    assert out["aligned_length"][2] == 11 and out["i"].tolist() == [1, 2, 4, 5]


def test_the_memo_scans_a_spilled_store(tmp_path):
    memo = AlignmentMemo(Evidence(str(tmp_path), block_rows=2))
    for k in range(5):
        memo.store.add(columns([[k, k + 10]], [0.1 * (k + 1)]))
    found, out = memo.lookup(np.array([[3, 13], [13, 3], [0, 10], [9, 9]]))
    assert found.tolist() == [True, False, True, False]
    assert np.allclose(out["tm_a"][found], [0.4, 0.1])
    assert len(list(tmp_path.glob("*.npz"))) == 2  # four rows spilled, one still in memory


def test_stored_rows_come_back_over_todays_indices_while_content_holds():
    ids = pa.array(["a", "b", "c", "d"])
    digests = content_digests(["s"] * 4, ids.to_pylist())
    table = memo_table(columns([[0, 1], [2, 3], [1, 3]], [0.9, 0.5, 0.7]), ids, digests)
    assert table.column("fragment_a").to_pylist() == ["a", "c", "b"]
    # today: "a" is gone (withdrawn), "e" is new (indices shift), "c" has new content
    today = pa.array(["b", "c", "d", "e"])
    now = content_digests(["s", "t", "s", "s"], today.to_pylist())
    rows = current_rows(table, today, now)
    assert list(zip(rows["i"].tolist(), rows["j"].tolist())) == [(0, 2)]  # only ("b", "d") holds
    assert rows["tm_a"].tolist() == [0.7] and rows["aligned_length"].dtype == np.int32
