"""Arrow tables of the clustering results, in the schemas of `rayfold.model.schema`."""

from __future__ import annotations

import numpy as np
import pyarrow as pa

from rayfold.cluster.cohesion import Cohesion
from rayfold.cluster.rules import SingletonAudit, id_rank, in_id_order
from rayfold.model import schema
from rayfold.model.fragset import Fragments
from rayfold.model.ids import id_array


def indexed(table_schema: pa.Schema, *names: str) -> pa.Schema:
    """`table_schema` with the named id columns dictionary-encoded over the ids (int32 indices)."""
    return pa.schema([f.with_type(pa.dictionary(pa.int32(), f.type)) if f.name in names else f for f in table_schema],
                     metadata=table_schema.metadata)


# the tables as `cluster_tables` holds them: id columns other than a table's own key index the ids (4
# bytes a row, not a copy of the characters); `write_parquet` decodes them a slice at a time
MEMBERS_IN_MEMORY = indexed(schema.MEMBERS, "cluster_id", "first_pass_cluster_id")
MERGES_IN_MEMORY = indexed(schema.MERGES, "representative_a", "representative_b", "fragment_a", "fragment_b")


def indexing(names: pa.Array, index: np.ndarray) -> pa.DictionaryArray:
    """names[index] as a dictionary array over `names`: int32 indices, the strings not copied."""
    return pa.DictionaryArray.from_arrays(pa.array(np.asarray(index, dtype=np.int32)), names)


def cluster_figures(rep_of: np.ndarray, cluster_rep: np.ndarray, lengths: np.ndarray, chunk: int = 65_536
                    ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(representatives in index order, sizes, first-pass clusters, min and max length) of each
    cluster: one bool per fragment, the rest over the clusters and `chunk` fragments at a time (a
    count per fragment and two lengths by representative took 16 B a fragment, np.unique's sort
    and inverse ~45 B)."""
    n = len(cluster_rep)

    def present(values: np.ndarray) -> np.ndarray:
        flag = np.zeros(n, bool)
        for lo in range(0, len(values), chunk):
            flag[values[lo:lo + chunk]] = True
        return np.flatnonzero(flag)

    reps = present(cluster_rep)
    k = len(reps)
    sizes = np.zeros(k, np.int64)
    min_length = np.full(k, np.iinfo(np.int64).max, np.int64)
    max_length = np.zeros(k, np.int64)
    for lo in range(0, n, chunk):
        at = np.searchsorted(reps, cluster_rep[lo:lo + chunk])
        sizes += np.bincount(at, minlength=k)
        part = np.asarray(lengths[lo:lo + chunk], np.int64)
        np.minimum.at(min_length, at, part)
        np.maximum.at(max_length, at, part)
    first_reps = present(rep_of)
    first_pass = np.bincount(np.searchsorted(reps, cluster_rep[first_reps]), minlength=k)  # int64
    return reps, sizes, first_pass, min_length, max_length


def cluster_tables(
    fragments: Fragments,
    rep_of: np.ndarray,
    cluster_rep: np.ndarray,
    evidence: dict[str, np.ndarray],
    singletons: SingletonAudit,
    cohesion: Cohesion,
) -> dict[str, pa.Table]:
    """clusters, members, merges and singleton_audit tables, sorted by their keys."""
    # one Arrow array of the ids (the driver's own, not a copy, when it holds an `IdColumn`): the
    # tables' id columns are taken from it
    names = id_array(fragments.ids)
    # the sharded engine's index is in id order already: no rank array then
    rank = None if in_id_order(fragments.ids) else id_rank(fragments.ids)

    def named(index: np.ndarray) -> pa.Array:
        return names.take(pa.array(np.asarray(index, dtype=np.int64)))

    reps, sizes, first_pass_per_cluster, min_length, max_length = cluster_figures(rep_of, cluster_rep,
                                                                                 fragments.lengths)
    order = np.argsort(rank[reps], kind="stable") if rank is not None else np.arange(len(reps))
    reps = reps[order]
    sampled, low, mid = cohesion.of(reps)
    clusters = pa.Table.from_arrays(
        [named(reps), named(reps), pa.array(sizes[order]),
         pa.array(first_pass_per_cluster[order]), pa.array(min_length[order]), pa.array(max_length[order]),
         pa.array(sampled),
         pa.array(low, type=pa.float64(), from_pandas=True),
         pa.array(mid, type=pa.float64(), from_pandas=True)],
        schema=schema.CLUSTERS,
    )
    # the two representative columns index the ids (4 bytes a row) instead of copying them: they
    # are decoded a slice at a time when written (`write_parquet`), and read back as plain strings
    members = pa.Table.from_arrays([names, indexing(names, cluster_rep), indexing(names, rep_of)],
                                   schema=MEMBERS_IN_MEMORY)
    # sorted by the four ids (stable, as Arrow's sort of the strings): by their indices where those
    # are in id order, else by each id's rank; the rows are taken once, in NumPy, with no sorted copy
    # of a table whose id columns are strings (~100 B a row: at 10^5 fragments 22,000 merge rows)
    e = evidence
    by_id = (lambda x: np.asarray(x)) if rank is None else (lambda x: rank[np.asarray(x, dtype=np.int64)])
    rows = np.lexsort((by_id(e["j"]), by_id(e["i"]), by_id(e["rep_b"]), by_id(e["rep_a"])))

    def column(name: str, dtype: type = np.float64) -> np.ndarray:
        return np.asarray(e[name])[rows].astype(dtype)

    merges = pa.Table.from_arrays(
        [
            indexing(names, column("rep_a", np.int64)), indexing(names, column("rep_b", np.int64)),
            indexing(names, column("i", np.int64)), indexing(names, column("j", np.int64)),
            pa.array(column("source", object).tolist(), type=pa.string()),
            pa.array(column("tm_a"), type=pa.float64()),
            pa.array(column("tm_b"), type=pa.float64()),
            pa.array(np.minimum(column("tm_a"), column("tm_b")), type=pa.float64()),
            pa.array(column("rmsd"), type=pa.float64()),
            pa.array(column("aligned_length", np.int64), type=pa.int64()),
            pa.array(column("seq_identity"), type=pa.float64()),
            pa.array(column("decision", object).tolist(), type=pa.string()),
            pa.array(column("guard_tm"), type=pa.float64(), from_pandas=True),
        ],
        schema=MERGES_IN_MEMORY,
    )
    sampled = singletons.sampled
    singleton_audit = pa.Table.from_arrays(
        [named(sampled), named(singletons.component),
         pa.array(singletons.sizes.astype(np.int64), type=pa.int64())],
        schema=schema.SINGLETON_AUDIT,
    )
    if rank is not None:
        members = members.take(pa.array(np.argsort(rank)))
    return {"clusters": clusters, "members": members, "merges": merges,
            "singleton_audit": singleton_audit}
