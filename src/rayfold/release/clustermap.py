"""How one release's clusters follow from the last one's, as a table (pure Arrow, no Ray).

A release's clusters are those of a fresh run over the current fragments, and a cluster's id is
its representative's fragment id: a cluster keeps its id exactly while it keeps its representative.
When new fragments bring a better representative, when clusters merge or split, or when fragments
leave, the ids change by the same rule a fresh run applies; this map is what a training pipeline
needs to follow its clusters across releases. Rows are (cluster now, cluster then, fragments in
both); fragments new in this release have no cluster then, fragments that left have none now. A
cluster whose id and members are unchanged has no row.
"""

from __future__ import annotations

import pyarrow as pa

from rayfold.model import schema

SAME_ID, MOVED, NEW, REMOVED = "same_id", "moved", "new", "removed"


def cluster_map(previous: pa.Table | None, members: pa.Table, release: int) -> pa.Table:
    """CLUSTER_MAP rows from the last release's members table (None: no last release) to this one's."""
    def plain(table: pa.Table | None, name: str) -> pa.Table:  # ids as plain strings (not dictionaries)
        columns = [table.column(c).cast(pa.string()) if table is not None else pa.array([], pa.string())
                   for c in ("fragment_id", "cluster_id")]
        return pa.table({"fragment_id": columns[0], name: columns[1]})

    now, then = plain(members, "cluster_id"), plain(previous, "previous_cluster_id")
    both = now.join(then, "fragment_id", join_type="full outer")
    counts = both.group_by(["cluster_id", "previous_cluster_id"], use_threads=False).aggregate(
        [("fragment_id", "count")]).rename_columns(["cluster_id", "previous_cluster_id", "fragments"])
    # a cluster is unchanged when its one row has its own id on both sides and all its members
    sizes_now = now.group_by("cluster_id", use_threads=False).aggregate([("fragment_id", "count")])
    sizes_then = then.group_by("previous_cluster_id", use_threads=False).aggregate([("fragment_id", "count")])
    size_now = dict(zip(sizes_now.column("cluster_id").to_pylist(), sizes_now.column("fragment_id_count").to_pylist()))
    size_then = dict(zip(sizes_then.column("previous_cluster_id").to_pylist(),
                         sizes_then.column("fragment_id_count").to_pylist()))
    rows = counts.to_pylist()
    unchanged = {r["cluster_id"] for r in rows
                 if r["cluster_id"] is not None and r["cluster_id"] == r["previous_cluster_id"]
                 and r["fragments"] == size_now[r["cluster_id"]] == size_then[r["cluster_id"]]}
    out = []
    for r in rows:
        c, p = r["cluster_id"], r["previous_cluster_id"]
        if c in unchanged:
            continue
        change = NEW if p is None else REMOVED if c is None else SAME_ID if c == p else MOVED
        out.append({"release": release, "cluster_id": c, "previous_cluster_id": p, "fragments": r["fragments"],
                    "change": change})
    table = pa.Table.from_pylist(out, schema=schema.CLUSTER_MAP)
    return table.sort_by([("cluster_id", "ascending"), ("previous_cluster_id", "ascending")]) if out else table
