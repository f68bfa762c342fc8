"""rayfold.analytics.stats: cluster statistics per run and per source, on small hand-made tables."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from rayfold.analytics.stats import (
    UNMAPPED_SCOPE,
    cluster_sizes,
    compute_run_stats,
    compute_stats,
    format_stats,
    fragment_sources,
    read_stats,
    singleton_audit_counts,
    size_stats,
    top_share,
    write_stats,
)
from rayfold.io.runfolder import RunFolder
from rayfold.model import schema

# Clusters A(5) B(3) C(2) and singletons D E F G. Source S1 holds a1-a3, b1, d1, f1 and a failed
# fragment s1_bad; source S2 (fragments inside a tar shard) holds a4, a5, b2, b3, c1, c2, e1, g1.
S1_INPUT = "/data/afdb/{}.cif.gz"
S2_SHARD = "s3://bucket/mgnify/shard-000.tar"
CLUSTER_OF = {
    "a1": "A", "a2": "A", "a3": "A", "a4": "A", "a5": "A",
    "b1": "B", "b2": "B", "b3": "B",
    "c1": "C", "c2": "C",
    "d1": "D", "e1": "E", "f1": "F", "g1": "G",
}
S1 = ["a1", "a2", "a3", "b1", "d1", "f1"]


def _source_uri(fid: str) -> str:
    return S1_INPUT.format(fid) if fid in S1 or fid == "s1_bad" else f"{S2_SHARD}#{fid}.cif"


def _fragments(extra: tuple[str, ...] = ()) -> pa.Table:
    ids = [*CLUSTER_OF, "s1_bad", *extra]
    return pa.table({
        "fragment_id": ids,
        "source_uri": [_source_uri(f) if f not in extra else f"/elsewhere/{f}.pdb" for f in ids],
        "passed": [f != "s1_bad" for f in ids],
    })


def _members() -> pa.Table:
    return pa.table({"fragment_id": list(CLUSTER_OF), "cluster_id": list(CLUSTER_OF.values()),
                     "first_pass_cluster_id": list(CLUSTER_OF.values())}, schema=schema.MEMBERS)


def _audit() -> pa.Table:
    # d1 (S1) and e1 (S2) are linked; f1 and g1 are alone
    return pa.table({"fragment_id": ["d1", "e1", "f1", "g1"], "component_id": ["d1", "d1", "f1", "g1"],
                     "component_size": [2, 2, 1, 1]}, schema=schema.SINGLETON_AUDIT)


def _manifest() -> pa.Table:
    inputs = [S1_INPUT.format(f) for f in [*S1, "s1_bad"]] + [S2_SHARD]
    sources = ["/data/afdb/"] * (len(S1) + 1) + ["s3://bucket/mgnify/"]
    return pa.table({"input_uri": inputs, "source": sources})


def _by_scope(table: pa.Table) -> dict[str, dict]:
    return {row["scope"]: row for row in table.to_pylist()}


# --------------------------------------------------------------------------------------------
# pure functions


def test_cluster_sizes_are_counts_largest_first():
    assert cluster_sizes(["x", "y", "x", "z", "x", "y"]).tolist() == [3, 2, 1]
    assert cluster_sizes(pa.chunked_array([["b"], ["a", "b"]])).tolist() == [2, 1]
    assert cluster_sizes([]).tolist() == []


def test_size_stats_of_a_hand_made_distribution():
    got = size_stats(np.array([1, 5, 2, 1, 3, 1, 1]))
    assert got == {
        "clustered_fragments": 14, "clusters": 7, "singletons": 4, "multi_member_clusters": 3,
        "fragments_in_multi_member": 10, "largest_cluster": 5, "top100_share": 1.0, "top1000_share": 1.0,
    }
    assert size_stats(np.zeros(0, dtype=np.int64))["top100_share"] is None


def test_top_share_uses_multi_member_fragments_as_denominator():
    # one cluster of 100 and 150 of 2: 400 multi-member fragments; the top 100 hold 100 + 99 * 2
    sizes = np.array([100] + [2] * 150 + [1] * 50)
    assert top_share(sizes, 100) == pytest.approx(298 / 400, abs=0)
    assert top_share(sizes, 1000) == 1.0
    assert top_share(sizes, 1) == pytest.approx(100 / 400, abs=0)
    assert top_share(np.array([1, 1, 1]), 100) is None  # singletons only: nothing to share


def test_singleton_audit_counts_x_of_n_in_k_components_largest_m():
    got = singleton_audit_counts(["p", "p", "p", "q", "q", "r", "s"])
    assert (got["singleton_audit_linked"], got["singleton_audit_sampled"], got["singleton_audit_components"],
            got["singleton_audit_largest"]) == (5, 7, 2, 3)
    assert got["singleton_audit"] == "5 of 7 sampled singletons in 2 components, largest 3"
    none = singleton_audit_counts([])
    assert none["singleton_audit"] == "0 of 0 sampled singletons in 0 components, largest 0"


def test_fragment_sources_maps_inputs_and_tar_members():
    got = dict(zip(*fragment_sources(_fragments(extra=("z9",)), _manifest()).to_pydict().values(), strict=True))
    assert got["a1"] == "/data/afdb/" and got["s1_bad"] == "/data/afdb/"
    assert got["a4"] == "s3://bucket/mgnify/"  # 'shard.tar#a4.cif' -> the shard's source
    assert got["z9"] == UNMAPPED_SCOPE
    # an input listed from two INPUT arguments keeps the smaller name, whatever the row order
    twice = pa.table({"input_uri": [S2_SHARD, S2_SHARD], "source": ["zz/", "aa/"]})
    assert set(fragment_sources(_fragments().slice(3, 2), twice).column("source").to_pylist()) == {"aa/"}


def test_compute_stats_all_scope():
    table = compute_stats(_fragments(), _members(), _audit())
    assert table.schema.equals(schema.STATS)
    assert table.column("scope").to_pylist() == ["all"]
    row = table.to_pylist()[0]
    assert row == {
        "scope": "all", "fragments": 15, "clustered_fragments": 14, "clusters": 7, "singletons": 4,
        "multi_member_clusters": 3, "fragments_in_multi_member": 10, "largest_cluster": 5,
        "top100_share": 1.0, "top1000_share": 1.0,
        "singleton_audit_sampled": 4, "singleton_audit_linked": 2, "singleton_audit_components": 1,
        "singleton_audit_largest": 2, "singleton_audit": "2 of 4 sampled singletons in 1 components, largest 2",
    }


def test_compute_stats_counts_clusters_within_each_source():
    rows = _by_scope(compute_stats(_fragments(), _members(), _audit(), _manifest()))
    assert list(rows) == ["all", "/data/afdb/", "s3://bucket/mgnify/"]
    s1, s2 = rows["/data/afdb/"], rows["s3://bucket/mgnify/"]
    # S1: A(3) B(1) D(1) F(1) -- B is a singleton within S1 although it has 3 members overall
    assert (s1["fragments"], s1["clustered_fragments"], s1["clusters"], s1["singletons"]) == (7, 6, 4, 3)
    assert (s1["multi_member_clusters"], s1["fragments_in_multi_member"], s1["largest_cluster"]) == (1, 3, 3)
    # S2: A(2) B(2) C(2) E(1) G(1)
    assert (s2["fragments"], s2["clustered_fragments"], s2["clusters"], s2["singletons"]) == (8, 8, 5, 2)
    assert (s2["multi_member_clusters"], s2["fragments_in_multi_member"], s2["largest_cluster"]) == (3, 6, 2)
    # the d1-e1 link crosses sources: within each source nothing is linked
    for s in (s1, s2):
        assert (s["singleton_audit_sampled"], s["singleton_audit_linked"], s["singleton_audit_components"],
                s["singleton_audit_largest"]) == (2, 0, 0, 1)
    assert rows["all"]["singleton_audit_linked"] == 2


def test_compute_stats_shows_fragments_missing_from_the_manifest():
    members = pa.concat_tables([_members(), pa.table({"fragment_id": ["z9"], "cluster_id": ["A"],
                                                      "first_pass_cluster_id": ["A"]}, schema=schema.MEMBERS)])
    rows = _by_scope(compute_stats(_fragments(extra=("z9",)), members, None, _manifest()))
    assert list(rows)[-1] == UNMAPPED_SCOPE
    assert (rows[UNMAPPED_SCOPE]["fragments"], rows[UNMAPPED_SCOPE]["clusters"]) == (1, 1)
    assert rows["all"]["largest_cluster"] == 6


def test_compute_stats_without_clustering_gives_zeros():
    row = compute_stats(_fragments(), None).to_pylist()[0]
    assert row["fragments"] == 15 and row["clusters"] == 0 and row["top100_share"] is None


def test_format_stats_prints_every_scope_and_percentages():
    sizes = {"x0": 100, **{f"x{i}": 2 for i in range(1, 151)}}
    ids = [f"{c}_{j}" for c, n in sizes.items() for j in range(n)]
    clusters = [c for c, n in sizes.items() for _ in range(n)]
    frags = pa.table({"fragment_id": ids, "source_uri": ["/in/a.cif"] * len(ids), "passed": [True] * len(ids)})
    members = pa.table({"fragment_id": ids, "cluster_id": clusters, "first_pass_cluster_id": clusters})
    text = format_stats(compute_stats(frags, members, None, pa.table({"input_uri": ["/in/a.cif"],
                                                                       "source": ["/in/"]})))
    lines = text.splitlines()
    assert lines[0].split() == ["statistic", "all", "/in/"]
    assert next(line for line in lines if line.startswith("top100_share")).split()[1:] == ["74.5%", "74.5%"]
    assert next(line for line in lines if line.startswith("fragments ")).split()[1:] == ["400", "400"]
    assert "singleton audit [/in/]: 0 of 0 sampled singletons" in text


# --------------------------------------------------------------------------------------------
# run folders


def _write_run(out: Path, *, manifest: bool = True) -> None:
    (out / "fragments").mkdir(parents=True)
    pq.write_table(_fragments().slice(0, 8), out / "fragments" / "part-a.parquet")
    pq.write_table(_fragments().slice(8), out / "fragments" / "part-b.parquet")
    pq.write_table(_fragments().slice(0, 3), out / "fragments" / "_tmp.parquet")  # ignored
    for name, table in (("members", _members()), ("singleton_audit", _audit())):
        (out / name).mkdir()
        pq.write_table(table, out / name / "part-0.parquet")
    if manifest:
        (out / "manifest").mkdir()
        pq.write_table(_manifest(), out / "manifest" / "part-0.parquet")


def test_run_folder_table_projects_columns_and_skips_hidden_parts(tmp_path: Path):
    _write_run(tmp_path)
    got = RunFolder(str(tmp_path)).table("fragments", columns=["fragment_id"])
    assert got.column_names == ["fragment_id"] and got.num_rows == 15
    only = RunFolder(str(tmp_path)).table("fragments", columns=["fragment_id", "passed"], filters=[("fragment_id", "in", ["a1", "g1"])])
    assert sorted(only.column("fragment_id").to_pylist()) == ["a1", "g1"]
    assert RunFolder(str(tmp_path)).table("chains", columns=["entry_id"]) is None
    assert RunFolder(str(tmp_path)).table("chains") is None


def test_read_stats_computes_when_missing_and_reads_when_written(tmp_path: Path):
    _write_run(tmp_path)
    computed = read_stats(str(tmp_path))
    assert computed.equals(compute_run_stats(str(tmp_path)))
    assert computed.column("scope").to_pylist() == ["all", "/data/afdb/", "s3://bucket/mgnify/"]
    assert not (tmp_path / "stats").exists()  # reading never writes
    marked = computed.set_column(1, "fragments", pa.array([-1, -1, -1], pa.int64()))
    write_stats(str(tmp_path), marked)
    write_stats(str(tmp_path), marked)  # a re-run replaces, never appends
    assert read_stats(str(tmp_path)).column("fragments").to_pylist() == [-1, -1, -1]
    assert [p.name for p in (tmp_path / "stats").iterdir()] == ["part-0.parquet"]


def test_compute_run_stats_without_manifest_has_only_the_all_scope(tmp_path: Path):
    _write_run(tmp_path, manifest=False)
    assert compute_run_stats(str(tmp_path)).column("scope").to_pylist() == ["all"]
