"""Cluster statistics per run and per input source: how concentrated the clustered fragments are.

The figures follow the method's summary table: fragments in multi-member clusters, multi-member
clusters, largest cluster, and the share of multi-member fragments that the 100 and 1,000 largest
clusters hold (the denominator is the fragments in multi-member clusters, so singletons neither add
to nor dilute the head). Singletons and the singleton audit ("X of N sampled singletons in K
components, largest M") are reported beside them, because a singleton count alone overstates
novelty.

Scopes. One row covers the whole run (`scope` = 'all'); when ``OUT/manifest/`` exists there is one
row per input source as well (the INPUT argument an input file was listed from, e.g. an AFDB prefix
and an MGnify prefix). A fragment's input is its ``source_uri`` (for tar members the part before
'#'); the manifest maps it to the source. Fragments whose input is not in the manifest get the scope
``UNMAPPED_SCOPE``, so they are visible rather than silently dropped.

Choice for source scopes: clusters are counted *within the source*. A cluster's size in scope S is
the number of S's fragments in it, and only clusters with at least one fragment of S exist in S.
This answers "how redundant is this source on its own" (a source that only adds members to another
source's large clusters shows a concentrated head of its own); a fold shared by two sources counts
once in each, so source rows do not add up to the 'all' row. The singleton audit is restricted the
same way: sampled singletons of S, with components recounted among S's sampled singletons.

Pure functions take Arrow tables/NumPy arrays; `compute_run_stats`, `write_stats`, `read_stats`
do the I/O through `rayfold.io.storage` (local paths and s3:// alike).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from rayfold.io import storage as io
from rayfold.io.runfolder import RunFolder
from rayfold.model import schema

__all__ = [
    "ALL_SCOPE",
    "UNMAPPED_SCOPE",
    "cluster_sizes",
    "cluster_sizes_by_scope",
    "compute_run_stats",
    "compute_stats",
    "format_stats",
    "fragment_sources",
    "read_stats",
    "singleton_audit_counts",
    "size_stats",
    "top_share",
    "write_stats",
]

ALL_SCOPE = "all"
UNMAPPED_SCOPE = "(not in manifest)"
TOP_K = (100, 1000)

# columns the statistics need from the (large) fragments table: never the per-residue lists
FRAGMENT_STAT_COLUMNS = ("fragment_id", "source_uri", "passed")


# --------------------------------------------------------------------------------------------
# reading only what is needed


# --------------------------------------------------------------------------------------------
# pure statistics


def cluster_sizes(cluster_ids: pa.Array | pa.ChunkedArray | Sequence[str]) -> np.ndarray:
    """Sizes of the clusters named in `cluster_ids` (one entry per member), largest first (int64)."""
    arr = cluster_ids if isinstance(cluster_ids, (pa.Array, pa.ChunkedArray)) else pa.array(cluster_ids, pa.string())
    if len(arr) == 0:
        return np.zeros(0, dtype=np.int64)
    counts = pc.value_counts(arr).field("counts").to_numpy(zero_copy_only=False).astype(np.int64)
    return np.sort(counts)[::-1].copy()


def top_share(sizes: np.ndarray, k: int) -> float | None:
    """Share of the fragments in multi-member clusters that the `k` largest multi-member clusters hold.

    None when there is no multi-member cluster (a share of nothing); 1.0 when there are <= k of them.
    """
    multi = np.sort(np.asarray(sizes, dtype=np.int64)[np.asarray(sizes) >= 2])[::-1]
    total = int(multi.sum())
    if total == 0:
        return None
    return float(multi[:k].sum()) / total


def size_stats(sizes: np.ndarray) -> dict[str, Any]:
    """Cluster-size summary: the columns of `schema.STATS` from `clustered_fragments` to `top1000_share`."""
    s = np.asarray(sizes, dtype=np.int64)
    multi = s[s >= 2]
    return {
        "clustered_fragments": int(s.sum()),
        "clusters": len(s),
        "singletons": int((s == 1).sum()),
        "multi_member_clusters": len(multi),
        "fragments_in_multi_member": int(multi.sum()),
        "largest_cluster": int(s.max()) if len(s) else 0,
        "top100_share": top_share(s, 100),
        "top1000_share": top_share(s, 1000),
    }


def singleton_audit_counts(component_ids: pa.Array | pa.ChunkedArray | Sequence[str]) -> dict[str, Any]:
    """X, N, K, M of the singleton audit from the component id of each sampled singleton.

    Component sizes are recounted from the ids given (so a subset, e.g. one source's sampled
    singletons, gets its own components). M is the largest component, 1 when none links, 0 when
    nothing was sampled (as `rayfold.cluster.rules.SingletonAudit.summary`).
    """
    sizes = cluster_sizes(component_ids)
    linked = sizes[sizes >= 2]
    out: dict[str, Any] = {
        "singleton_audit_sampled": int(sizes.sum()),
        "singleton_audit_linked": int(linked.sum()),
        "singleton_audit_components": len(linked),
        "singleton_audit_largest": int(sizes.max()) if len(sizes) else 0,
    }
    out["singleton_audit"] = (
        f"{out['singleton_audit_linked']} of {out['singleton_audit_sampled']} sampled singletons in "
        f"{out['singleton_audit_components']} components, largest {out['singleton_audit_largest']}"
    )
    return out


def _source_codes(fragments: pa.Table, manifest: pa.Table) -> tuple[list[str], np.ndarray]:
    """(source names, code per fragment row); code len(names) = not in the manifest.

    Hash lookups (`pc.index_in`) rather than joins: one pass over millions of fragment rows.
    """
    names = sorted(set(manifest.column("source").to_pylist()))
    n = fragments.num_rows
    if n == 0 or not names:
        return names, np.full(n, len(names), dtype=np.int64)
    # an input listed under several sources keeps the smallest name: index_in finds the first match
    lookup = manifest.select(["input_uri", "source"]).sort_by([("input_uri", "ascending"), ("source", "ascending")])
    inputs = pc.list_element(pc.split_pattern(fragments.column("source_uri"), "#", max_splits=1), 0)
    row = pc.index_in(inputs, value_set=lookup.column("input_uri").combine_chunks())
    found = pc.is_valid(row).to_numpy(zero_copy_only=False)
    row_np = pc.fill_null(row, 0).to_numpy(zero_copy_only=False).astype(np.int64)
    name_code = pc.index_in(lookup.column("source"), value_set=pa.array(names, pa.string()))
    name_code_np = name_code.to_numpy(zero_copy_only=False).astype(np.int64)
    codes = np.where(found, name_code_np[row_np] if len(name_code_np) else 0, len(names))
    return names, codes.astype(np.int64)


def fragment_sources(fragments: pa.Table, manifest: pa.Table | None) -> pa.Table:
    """(fragment_id, source) for every fragment row: its input's source from the manifest.

    The input is ``source_uri`` up to '#'. Inputs missing from the manifest get `UNMAPPED_SCOPE`;
    an input listed under several sources gets the smallest source name (deterministic).
    Without a manifest every source is `UNMAPPED_SCOPE`.
    """
    if manifest is None:
        manifest = pa.table({"input_uri": pa.array([], pa.string()), "source": pa.array([], pa.string())})
    names, codes = _source_codes(fragments, manifest)
    labels = pa.array([*names, UNMAPPED_SCOPE], pa.string())
    return pa.table({"fragment_id": fragments.column("fragment_id"), "source": labels.take(pa.array(codes))})


def _row(scope: str, n_fragments: int, cluster_ids: pa.ChunkedArray | pa.Array,
         audit_components: pa.ChunkedArray | pa.Array) -> dict[str, Any]:
    return {"scope": scope, "fragments": int(n_fragments), **size_stats(cluster_sizes(cluster_ids)),
            **singleton_audit_counts(audit_components)}


def _codes_of(ids: pa.ChunkedArray, fragment_ids: pa.ChunkedArray, frag_codes: np.ndarray, unmapped: int) -> np.ndarray:
    """Source code of each id in `ids` via its fragment row (first row of a duplicated id)."""
    if len(ids) == 0:
        return np.zeros(0, dtype=np.int64)
    row = pc.index_in(ids, value_set=fragment_ids.combine_chunks())
    found = pc.is_valid(row).to_numpy(zero_copy_only=False)
    row_np = pc.fill_null(row, 0).to_numpy(zero_copy_only=False).astype(np.int64)
    picked = frag_codes[row_np] if len(frag_codes) else np.zeros(len(ids), dtype=np.int64)
    return np.where(found, picked, unmapped)


def _scopes(
    fragments: pa.Table | None,
    members: pa.Table | None,
    singleton_audit: pa.Table | None,
    manifest: pa.Table | None,
) -> list[tuple[str, int, pa.ChunkedArray, pa.ChunkedArray]]:
    """(scope, fragment rows, cluster_id per member, component_id per sampled singleton) per scope."""
    if fragments is None:
        fragments = pa.table({"fragment_id": pa.array([], pa.string()), "source_uri": pa.array([], pa.string())})
    members = (members if members is not None else schema.MEMBERS.empty_table()).select(["fragment_id", "cluster_id"])
    audit = (singleton_audit if singleton_audit is not None else schema.SINGLETON_AUDIT.empty_table()).select(
        ["fragment_id", "component_id"])
    scopes = [(ALL_SCOPE, fragments.num_rows, members.column("cluster_id"), audit.column("component_id"))]
    if manifest is None:
        return scopes
    names, frag_codes = _source_codes(fragments, manifest)
    unmapped = len(names)
    fids = fragments.column("fragment_id")
    mem_codes = _codes_of(members.column("fragment_id"), fids, frag_codes, unmapped)
    aud_codes = _codes_of(audit.column("fragment_id"), fids, frag_codes, unmapped)
    labels = list(names)
    if (frag_codes == unmapped).any() or (mem_codes == unmapped).any():
        labels.append(UNMAPPED_SCOPE)
    for k in range(len(labels)):  # sources sorted, then the unmapped scope
        scopes.append((
            labels[k],
            int((frag_codes == k).sum()),
            members.column("cluster_id").filter(pa.array(mem_codes == k)),
            audit.column("component_id").filter(pa.array(aud_codes == k)),
        ))
    return scopes


def compute_stats(
    fragments: pa.Table | None,
    members: pa.Table | None,
    singleton_audit: pa.Table | None = None,
    manifest: pa.Table | None = None,
) -> pa.Table:
    """The `schema.STATS` table: 'all', then one row per source (sorted; `UNMAPPED_SCOPE` last).

    `fragments` needs fragment_id and source_uri (all rows: passed or not; `fragments` counts them);
    `members` (fragment_id, cluster_id) are the clustered, passed fragments. Either may be None
    (a run that was not fragmented or not clustered yet gives zeros). Source scopes count clusters
    within the source (module docstring).
    """
    rows = [_row(*scope) for scope in _scopes(fragments, members, singleton_audit, manifest)]
    return pa.Table.from_pylist(rows, schema=schema.STATS)


def cluster_sizes_by_scope(
    fragments: pa.Table | None, members: pa.Table | None, manifest: pa.Table | None = None
) -> dict[str, np.ndarray]:
    """Cluster sizes (largest first) per scope, counted as in `compute_stats` (for the size plot)."""
    return {scope: cluster_sizes(ids) for scope, _, ids, _ in _scopes(fragments, members, None, manifest)}


# --------------------------------------------------------------------------------------------
# text


def _fmt(name: str, value: Any) -> str:
    if value is None:
        return "-"
    if name.endswith("_share"):
        return f"{100.0 * float(value):.1f}%"
    if isinstance(value, (int, np.integer)):
        return f"{int(value):,}"
    return str(value)


def format_stats(table: pa.Table) -> str:
    """A plain-text table for a terminal: one line per statistic, one column per scope."""
    rows = table.to_pylist()
    if not rows:
        return "(no statistics)"
    names = [f.name for f in schema.STATS if f.name != "scope" and f.name in table.column_names]
    names = [n for n in names if n != "singleton_audit"]  # long text: printed below the grid
    header = ["statistic"] + [str(r["scope"]) for r in rows]
    body = [[n] + [_fmt(n, r.get(n)) for r in rows] for n in names]
    widths = [max(len(line[i]) for line in [header, *body]) for i in range(len(header))]

    def line(cells: list[str]) -> str:
        return "  ".join(c.ljust(widths[0]) if i == 0 else c.rjust(widths[i]) for i, c in enumerate(cells))

    text = [line(header), "  ".join("-" * w for w in widths)] + [line(b) for b in body]
    if "singleton_audit" in table.column_names:
        text.append("")
        text.extend(f"singleton audit [{r['scope']}]: {r['singleton_audit']}" for r in rows)
    text.append("")
    text.append("shares: of the fragments in multi-member clusters; source scopes count clusters within the source")
    return "\n".join(text)


# --------------------------------------------------------------------------------------------
# I/O


def compute_run_stats(out: str, *, storage_options: dict[str, Any] | None = None) -> pa.Table:
    """Statistics of the run in folder `out` from its tables (reads only the columns needed)."""
    folder = RunFolder(out, storage_options)
    fragments = folder.table("fragments", columns=FRAGMENT_STAT_COLUMNS)
    members = folder.table("members", columns=["fragment_id", "cluster_id"])
    audit = folder.table("singleton_audit", columns=["fragment_id", "component_id"])
    manifest = folder.table("manifest", columns=["input_uri", "source"])
    return compute_stats(fragments, members, audit, manifest)


def write_stats(out: str, table: pa.Table, *, storage_options: dict[str, Any] | None = None) -> str:
    """Replace ``OUT/stats/`` with `table` (one part file, so re-runs never duplicate rows)."""
    uri = io.join_uri(out, "stats", "part-0.parquet")
    io.write_parquet(table.cast(schema.STATS), uri, storage_options)
    return uri


def read_stats(out: str, storage_options: dict[str, Any] | None = None) -> pa.Table:
    """``OUT/stats/`` when it exists, else computed from the run's tables (not written)."""
    table = RunFolder(out, storage_options).table("stats")
    if table is not None and table.num_rows:
        return table
    return compute_run_stats(out, storage_options=storage_options)
