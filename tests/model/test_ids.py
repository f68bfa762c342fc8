"""IdColumn: the driver's ids as one Arrow array behave as the list of str they replace."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest

from rayfold.cluster.cohesion import cohesion_pairs
from rayfold.cluster.rules import id_rank, in_id_order, priority_order, sample_singletons, seeded_hashes
from rayfold.model.fragset import FragmentIndex
from rayfold.model.ids import IdColumn, id_array


def _ids(n: int, seed: int) -> list[str]:
    rng = np.random.default_rng(seed)
    # AFDB-like names, some non-ASCII (UTF-8 byte order must equal Python's code point order)
    pool = ["AF-", "MGYP", "é", "ß", "z", "Ω"]
    return list(dict.fromkeys(f"{pool[rng.integers(len(pool))]}{rng.integers(10**6)}_f{rng.integers(9)}"
                              for _ in range(n)))


@pytest.mark.parametrize("seed", range(6))
def test_idcolumn_is_the_list(seed: int) -> None:
    ids = _ids(300, seed)
    col = IdColumn(pa.array(ids))
    assert len(col) == len(ids)
    assert list(col) == ids
    assert [col[k] for k in (0, 7, -1)] == [ids[0], ids[7], ids[-1]]
    assert col[3:40:3] == ids[3:40:3]
    index = np.random.default_rng(seed).integers(0, len(ids), 50)
    assert col.take(index) == [ids[k] for k in index]
    assert in_id_order(col) == in_id_order(ids)
    assert id_rank(col).tolist() == id_rank(ids).tolist()
    ordered = sorted(ids)
    assert in_id_order(IdColumn(ordered)) and id_rank(IdColumn(ordered)).tolist() == list(range(len(ids)))
    lengths = np.random.default_rng(seed).integers(20, 40, len(ids))
    plddt = np.random.default_rng(seed + 1).integers(70, 72, len(ids)).astype(float)
    assert priority_order(plddt, lengths, col).tolist() == priority_order(plddt, lengths, ids).tolist()
    assert seeded_hashes(5, col, index, chunk=7).tolist() == seeded_hashes(5, ids, index).tolist()
    rep = np.arange(len(ids))
    rep[::3] = 0
    assert sample_singletons(rep, 20, 2, col).tolist() == sample_singletons(rep, 20, 2, ids).tolist()
    assert cohesion_pairs(rep, col, 4, 2).tolist() == cohesion_pairs(rep, ids, 4, 2).tolist()


def test_idcolumn_takes_arrow_without_a_copy() -> None:
    arr = pa.array(["a", "b", "c"])
    index = FragmentIndex(pa.chunked_array([arr]), np.array([30, 40, 50]), np.array([90.0, 80.0, 70.0]))
    assert isinstance(index.ids, IdColumn) and list(index.ids) == ["a", "b", "c"]
    col = IdColumn(arr)
    assert id_array(col) is col.arrow and id_array(["x"]).to_pylist() == ["x"]
    assert IdColumn(pa.array(["a"], pa.large_string())).arrow.type == pa.string()
    assert len(IdColumn([])) == 0 and in_id_order(IdColumn([]))
    with pytest.raises(IndexError):
        col[3]
    with pytest.raises(ValueError):
        IdColumn(pa.array(["a", None]))
    with pytest.raises(TypeError):
        IdColumn(pa.array([1, 2]))
