import numpy as np
import pyarrow as pa
import pytest

from rayfold.cluster.cohesion import summarise
from rayfold.cluster.rules import SingletonAudit
from rayfold.cluster.tables import cluster_tables
from rayfold.io.storage import plain_schema
from rayfold.model import schema
from rayfold.model.fragset import FragmentIndex


@pytest.mark.parametrize("ids_in_order", [True, False])
def test_merges_table_is_sorted_by_its_ids_as_arrow_sorts_the_strings(ids_in_order: bool):
    rng = np.random.default_rng(5)
    n, rows = 300, 2_000
    ids = [f"AF-{k:05d}-F1_f{k % 7}" for k in rng.permutation(100_000)[:n]]
    ids = sorted(ids) if ids_in_order else ids
    fragments = FragmentIndex(ids, rng.integers(20, 300, n), rng.uniform(65, 95, n))
    rep_of = rng.integers(0, n, n).astype(np.int32)
    e = {"rep_a": rng.integers(0, 40, rows), "rep_b": rng.integers(0, 40, rows),  # repeated keys: stability
         "i": rng.integers(0, 50, rows), "j": rng.integers(0, 50, rows),
         "source": rng.choice(np.array(["members", "representatives"], dtype=object), rows),
         "tm_a": rng.random(rows), "tm_b": rng.random(rows), "rmsd": rng.random(rows) * 4,
         "aligned_length": rng.integers(20, 300, rows).astype(np.int32), "seq_identity": rng.random(rows),
         "decision": rng.choice(np.array(["merged", "redundant"], dtype=object), rows),
         "guard_tm": np.where(rng.random(rows) < 0.5, np.nan, rng.random(rows))}
    audit = SingletonAudit(np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0, np.int64))
    merges = cluster_tables(fragments, rep_of, rep_of, e, audit, summarise(np.zeros((0, 2), np.int64),
                                                                          np.zeros(0)))["merges"]
    name = np.array(ids, dtype=object)
    expected = pa.table({
        "representative_a": name[e["rep_a"]].tolist(), "representative_b": name[e["rep_b"]].tolist(),
        "fragment_a": name[e["i"]].tolist(), "fragment_b": name[e["j"]].tolist(), "source": e["source"].tolist(),
        "tm_a": e["tm_a"], "tm_b": e["tm_b"], "tm_min": np.minimum(e["tm_a"], e["tm_b"]), "rmsd": e["rmsd"],
        "aligned_length": e["aligned_length"].astype(np.int64), "seq_identity": e["seq_identity"],
        "decision": e["decision"].tolist(), "guard_tm": pa.array(e["guard_tm"], from_pandas=True),
    }, schema=schema.MERGES).sort_by([("representative_a", "ascending"), ("representative_b", "ascending"),
                                      ("fragment_a", "ascending"), ("fragment_b", "ascending")])
    assert pa.types.is_dictionary(merges.schema.field("fragment_a").type)  # 4 B a row, not the characters
    assert merges.cast(plain_schema(merges.schema)).equals(expected)


@pytest.mark.parametrize("chunk", [1, 13, 65_536])
def test_cluster_figures_are_their_definitions_in_any_chunking(chunk: int):
    from rayfold.cluster.tables import cluster_figures

    rng = np.random.default_rng(9)
    n = 500
    lengths = rng.integers(20, 900, n).astype(np.int32)
    rep_of = rng.choice(rng.choice(n, 60, replace=False), n).astype(np.int32)
    cluster_rep = rng.choice(np.unique(rep_of)[:25], n).astype(np.int32)
    cluster_rep[np.unique(rep_of)] = rng.choice(np.unique(rep_of)[:25], len(np.unique(rep_of)))
    reps, sizes, first_pass, low, high = cluster_figures(rep_of, cluster_rep, lengths, chunk=chunk)
    assert reps.tolist() == np.unique(cluster_rep).tolist()
    for k, r in enumerate(reps.tolist()):
        members = np.flatnonzero(cluster_rep == r)
        assert sizes[k] == len(members)
        assert low[k] == lengths[members].min() and high[k] == lengths[members].max()
        assert first_pass[k] == len(set(rep_of.tolist()) & set(members.tolist()))
    assert all(a.dtype == np.int64 for a in (sizes, first_pass, low, high))
