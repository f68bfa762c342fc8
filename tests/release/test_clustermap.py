"""The cluster map between two releases, on hand-made members tables."""

from __future__ import annotations

import pyarrow as pa

from rayfold.release.clustermap import cluster_map


def members(rows: dict[str, str]) -> pa.Table:
    return pa.table({"fragment_id": list(rows), "cluster_id": list(rows.values()),
                     "first_pass_cluster_id": list(rows.values())})


def test_unchanged_clusters_have_no_row_and_every_move_is_counted():
    then = members({"a": "a", "b": "a", "c": "c", "d": "d", "e": "d", "x": "x"})
    # a unchanged; c joins d's cluster under a new representative f (new); x withdrawn; g new alone
    now = members({"a": "a", "b": "a", "c": "f", "d": "f", "e": "f", "f": "f", "g": "g"})
    rows = cluster_map(then, now, release=2).to_pylist()
    by = {(r["cluster_id"], r["previous_cluster_id"]): (r["fragments"], r["change"]) for r in rows}
    assert by == {(None, "x"): (1, "removed"), ("f", "c"): (1, "moved"), ("f", "d"): (2, "moved"),
                  ("f", None): (1, "new"), ("g", None): (1, "new")}
    assert {r["release"] for r in rows} == {2}


def test_a_grown_cluster_keeps_its_id_and_says_so():
    rows = cluster_map(members({"a": "a"}), members({"a": "a", "b": "a"}), release=5).to_pylist()
    assert {(r["cluster_id"], r["previous_cluster_id"], r["fragments"], r["change"]) for r in rows} == {
        ("a", "a", 1, "same_id"), ("a", None, 1, "new")}


def test_the_first_release_maps_everything_as_new():
    rows = cluster_map(None, members({"a": "a", "b": "a"}), release=1).to_pylist()
    assert [(r["cluster_id"], r["fragments"], r["change"]) for r in rows] == [("a", 2, "new")]
