"""`rayfold run`: one release of the whole job, from inputs to published tables, resumable.

A release lists the inputs, fragments only new or changed ones (the manifest says which), loads
every current fragment and clusters them all, as a fresh run would: the alignments earlier
releases computed are reused (`rayfold.cluster.memo`), so only pairs never aligned before are
TM-aligned, and the tables are those of one run over the current inputs, whatever order they
arrived in. It writes:

1. `OUT/alignments/part-<release>.parquet`: the alignments this release computed;
   `OUT/cluster_map/part-<release>.parquet`: how its clusters follow from the last release's;
   `OUT/state/<release>/<table>.parquet`: its clustering, written in full first;
2. `OUT/releases/part-<release>.parquet`: one row, the commit;
3. `OUT/<table>/part-0.parquet`: the published copies users read, replaced as a whole; then the
   state of earlier releases is removed (storage grows with the data, not with the releases).

A run killed anywhere restarts from what finished: fragmenting units carry their own completion
marker and a persisted plan keeps their names; clustering is redone over the current fragments with
the committed releases' alignments (deterministic, so its tables come out the same); publishing is
repeated from the committed state. Nothing is appended twice, because every file has a name fixed
by its content or release.
"""

from __future__ import annotations

import json
import logging
import os
import tempfile
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from itertools import chain
from typing import TYPE_CHECKING

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from rayfold.align.prefilter import PrefilterConfig
from rayfold.cluster.evidence import Evidence
from rayfold.cluster.linkage import MERGED
from rayfold.cluster.memo import AlignmentMemo, content_digests, current_rows, memo_table
from rayfold.cluster.rules import ClusterConfig
from rayfold.config import FragmentConfig, ReadConfig, RunConfig
from rayfold.io.runfolder import RunFolder
from rayfold.io.storage import (
    ROW_GROUP_ROWS,
    InputRef,
    list_inputs,
    parquet_parts,
    read_parquet_part,
)
from rayfold.model import schema
from rayfold.model.errors import InputError
from rayfold.model.ids import id_array
from rayfold.release import manifest as mf
from rayfold.release.clustermap import NEW, cluster_map
from rayfold.release.inputfilter import EntryFilter
from rayfold.release.lock import RunLock

if TYPE_CHECKING:
    from rayfold.runtime.shards import ShardedFragments

log = logging.getLogger(__name__)

CLUSTER_TABLES = ("clusters", "members", "merges", "singleton_audit", "singleton_links", "cluster_runs")
ALIGNMENTS = "alignments"  # OUT/alignments/part-<release>.parquet: every alignment a release computed
# part-<release>-all.parquet: a compacted part, every current alignment up to that release (the
# parts before it are no longer read, and removed once it is published)
COMPACTED = "-all"


@dataclass(frozen=True)
class ReleaseConfig:
    """Everything that decides a release's results (recorded with it)."""

    fragment: FragmentConfig = field(default_factory=FragmentConfig)
    cluster: ClusterConfig = field(default_factory=ClusterConfig)
    prefilter: PrefilterConfig = field(default_factory=PrefilterConfig)
    read: ReadConfig = field(default_factory=ReadConfig)


@dataclass(frozen=True)
class ReleaseSummary:
    out: str
    release: int  # the newest committed release (unchanged when up to date)
    up_to_date: bool  # nothing new: no release was made
    inputs: int
    new_inputs: int
    changed_inputs: int
    withdrawn_inputs: int
    fragments: int
    new_fragments: int
    reused_alignments: int
    clusters: int
    new_clusters: int
    changed_clusters: int
    merges: int
    alignments: int
    errors: int
    engine: str
    seconds: float
    stage_seconds: dict[str, float]


def run_release(
    inputs: Sequence[str],
    out: str,
    *,
    config: ReleaseConfig = ReleaseConfig(),
    run: RunConfig = RunConfig(),
    entry_filter: EntryFilter | None = None,
    foldseek: str | None = None,
    storage_options: dict | None = None,
    address: str | None = None,
    progress: bool = True,
    analytics: bool = True,
    ray_init_kwargs: dict | None = None,
    sync: bool = False,
) -> ReleaseSummary:
    """Bring `out` up to date with `inputs`: a new release when anything is new, else nothing.
    `sync`: inputs of the collection no longer listed are withdrawn (their rows leave the tables).

    One run per output at a time (`rayfold.release.lock`); a second one refuses with `run_in_progress`.
    """
    folder = RunFolder(out, storage_options)
    folder.check_writable()
    with RunLock(out, storage_options, stale_after=run.stale_lock_after) as lock:
        return _run_release(inputs, folder, lock, config=config, run=run, entry_filter=entry_filter,
                            foldseek=foldseek, address=address, progress=progress, analytics=analytics,
                            ray_init_kwargs=ray_init_kwargs, sync=sync)


def _run_release(
    inputs: Sequence[str],
    folder: RunFolder,
    lock: RunLock,
    *,
    config: ReleaseConfig,
    run: RunConfig,
    entry_filter: EntryFilter | None,
    foldseek: str | None,
    address: str | None,
    progress: bool,
    analytics: bool,
    ray_init_kwargs: dict | None,
    sync: bool,
) -> ReleaseSummary:
    from rayfold.runtime.clustering import cluster_fragments
    from rayfold.runtime.fragmenting import fragment_units
    from rayfold.runtime.session import ray_session

    started, started_at = time.perf_counter(), datetime.now(timezone.utc)
    timings: dict[str, float] = {}
    out, opts = folder.uri, folder.storage_options
    releases = folder.table("releases")
    last = int(pc.max(releases.column("release")).as_py()) if releases is not None and releases.num_rows else 0
    if last and published_release(folder) != last:  # killed between commit and publish
        _publish(folder, last)
        _remove_earlier_state(folder, last)
        if analytics:
            _write_analytics(folder)
    release = last + 1
    if last:
        _check_same_cutting(releases, last, config)

    tick = time.perf_counter()
    listed = _list_sourced(inputs, opts)
    manifest = folder.table("manifest")
    if sync:
        gone = mf.withdrawals([s.ref.uri for s in listed], manifest, release)
        if gone.num_rows:  # its unit is not committed yet: the release below happens
            folder.write_table(gone, "manifest", f"part-withdrawn-{release:06d}.parquet")
            manifest = folder.table("manifest")
    diff = mf.diff_inputs(listed, manifest, release)
    timings["list"] = time.perf_counter() - tick
    unclustered = _units(manifest) - _committed_units(folder, last, manifest)
    if not diff.todo and not diff.done_in_release and not unclustered:
        log.info("%s is up to date at release %d", out, last)
        return _up_to_date(out, last, releases, time.perf_counter() - started)

    with ray_session(address, **(ray_init_kwargs or {})):
        tick = time.perf_counter()
        units = _plan(folder, release, diff.todo, run)
        done = set(mf.current(manifest).get(u, {}).get("unit_id") for u in diff.done_in_release)
        todo_units = [u for u in units if u.unit_id not in done]
        fragment_units(
            todo_units, out, config=config.fragment, read=config.read, run=run, storage_options=opts,
            progress=progress, release=release, sources={s.ref.uri: s.source for s in listed},
            entry_filter=entry_filter,
        )
        timings["fragment"] = time.perf_counter() - tick
        lock.check()  # frozen past the stale limit while fragmenting: stop before clustering

        tick = time.perf_counter()
        manifest = folder.table("manifest")
        _drop_superseded_rows(folder, manifest)
        loaded_units = _units(manifest)  # read before the fragments: a unit's manifest part is written last
        assert manifest is not None  # every fragmented unit wrote its manifest part
        fragments, duplicates, digests = _load_current_fragments(folder, manifest, config.cluster.shard_size)
        # one part for the whole collection, replaced each release: a duplicate is listed once
        folder.write_table(duplicates, "errors", "part-duplicates.parquet")
        changed = mf.changed_content(manifest, release)
        ids = id_array(fragments.index.ids)
        timings["load"] = time.perf_counter() - tick

        with tempfile.TemporaryDirectory(prefix="rayfold-memo-") as spill:
            tick = time.perf_counter()
            stored = _alignment_parts(_alignment_part_list(folder), last)
            memo = _load_memo(folder, stored, ids, digests, os.path.join(spill, "memo"))
            computed = Evidence(_folder(os.path.join(spill, "new")))
            timings["memo"] = time.perf_counter() - tick
            tick = time.perf_counter()
            tables = cluster_fragments(fragments, config=config.cluster, prefilter_config=config.prefilter,
                                       foldseek=foldseek, progress=progress, memo=memo, on_aligned=computed.add)
            timings["cluster"] = time.perf_counter() - tick
            tick = time.perf_counter()
            _check_still_next(folder, release, lock)  # before writing: it may be another run's release by now
            # after `compact_alignments_after` parts, this release's part holds every current row
            # (the memo's and its own), so rows of replaced and withdrawn models are dropped
            compact = len(stored) >= run.compact_alignments_after
            blocks = chain(memo.store.scan(), computed.scan()) if compact else computed.scan()
            folder.write_tables(schema.ALIGNMENTS, (memo_table(block, ids, digests) for block in blocks),
                                ALIGNMENTS, f"part-{release:06d}{COMPACTED if compact else ''}.parquet")
            reused = len(memo)

    run_row = tables.pop("cluster_runs")
    tables["cluster_runs"] = pa.Table.from_pylist([run_row], schema=schema.CLUSTER_RUNS)
    previous_members = _state_table(folder, last, "members") if last else None
    changes = cluster_map(previous_members, tables["members"], release)
    folder.write_table(changes, "cluster_map", f"part-{release:06d}.parquet")
    for name in CLUSTER_TABLES:
        folder.write_table(tables[name], *_state_file(release, name))
    folder.write_json(sorted(loaded_units), "state", f"{release:06d}", UNITS_FILE)
    this_release = manifest.filter(pc.field("release") == release)
    is_withdrawn = pc.fill_null(this_release.column("withdrawn"), False)
    withdrawn, this_release = this_release.filter(is_withdrawn), this_release.filter(pc.invert(is_withdrawn))
    cluster_ids = tables["clusters"].column("cluster_id")
    previous_clusters = (previous_members.column("cluster_id") if previous_members is not None
                         else pa.array([], pa.string()))
    row = {
        "release": release,
        "started_at": started_at,
        "finished_at": datetime.now(timezone.utc),
        "inputs": len(mf.current(manifest)),
        "new_inputs": this_release.num_rows,
        "changed_inputs": len(changed),
        "withdrawn_inputs": withdrawn.num_rows,
        "fragments": len(fragments),
        # the map's `new` rows are the fragments the last release did not have
        "new_fragments": int(pc.sum(changes.filter(pc.field("change") == NEW).column("fragments")).as_py() or 0),
        "reused_alignments": reused,
        "clusters": len(cluster_ids),
        "new_clusters": int(pc.sum(pc.invert(pc.is_in(cluster_ids, value_set=previous_clusters))).as_py() or 0),
        "changed_clusters": len(set(changes.column("cluster_id").drop_null().to_pylist())),
        "merges": int(pc.sum(pc.equal(tables["merges"].column("decision"), MERGED)).as_py() or 0),
        "alignments": run_row["alignments"],
        "errors": int(pc.sum(this_release.column("errors")).as_py() or 0),
        "engine": run_row["engine"],
        "seconds": 0.0,
        "stage_seconds": "",
        "config": json.dumps({"release": asdict(config), "filter": entry_filter.describe() if entry_filter else None},
                             sort_keys=True, default=str),
    }
    timings["write"] = time.perf_counter() - tick
    row["seconds"] = time.perf_counter() - started
    row["stage_seconds"] = json.dumps({k: round(v, 3) for k, v in timings.items()})
    # the commit: after this row exists the release is done, and a re-run only re-publishes it
    _check_still_next(folder, release, lock)
    folder.write_table(pa.Table.from_pylist([row], schema=schema.RELEASES), "releases", f"part-{release:06d}.parquet")
    _publish(folder, release)
    _remove_earlier_state(folder, release)
    if analytics:
        _write_analytics(folder)
    summary_fields = {k: row[k] for k in ReleaseSummary.__dataclass_fields__ if k in row and k != "stage_seconds"}
    return ReleaseSummary(out=out, up_to_date=False, stage_seconds=timings, **summary_fields)


UNITS_FILE = "units.json"  # the work units whose fragments a release clustered
CUTTING = ("fragment", "read")  # the settings a unit's fragments were made with, kept across releases


def _check_same_cutting(releases: pa.Table, last: int, config: ReleaseConfig) -> None:
    """Refuse a release whose reading or fragmenting settings differ from the last release's.

    Fragments are cut once per work unit and kept; with other settings the new units would be cut
    one way and the old ones another, and the tables would equal no fresh run. Clustering settings
    may change: every release clusters all current fragments again (with the stored alignments).
    """
    row = releases.filter(pc.field("release") == last).to_pylist()[0]
    recorded = json.loads(row["config"] or "{}").get("release", {})
    now = json.loads(json.dumps(asdict(config), sort_keys=True, default=str))
    changed = []
    for part in CUTTING:
        before = recorded.get(part, {})
        changed += [f"{part}.{key}: {before.get(key, '(not recorded)')!r} -> {value!r}"
                    for key, value in now[part].items() if before.get(key, "(not recorded)") != value]
    if changed:
        raise InputError(
            "settings_changed",
            f"release {last} of this output cut its fragments with other settings ({'; '.join(changed)}); "
            "run with the same fragment and read settings, or give a new --out to cut everything again",
        )


def _units(manifest: pa.Table | None) -> set[str]:
    return set(manifest.column("unit_id").to_pylist()) if manifest is not None and manifest.num_rows else set()


def _committed_units(folder: RunFolder, last: int, manifest: pa.Table | None) -> set[str]:
    """Units the last committed release clustered. A unit finished by a run that lost its lock after
    another run committed is in the manifest but not here, so the next run still clusters it."""
    if not last:
        return set()
    if folder.exists("state", f"{last:06d}", UNITS_FILE):
        return set(folder.read_json("state", f"{last:06d}", UNITS_FILE))
    # a run folder from before this file existed: every unit of a committed release
    return _units(manifest.filter(pc.field("release") <= last) if manifest is not None else None)


def _check_still_next(folder: RunFolder, release: int, lock: RunLock) -> None:
    """Refuse to commit when another run committed meanwhile (this run was frozen past its lock)."""
    lock.check()
    releases = folder.table("releases")
    newest = int(pc.max(releases.column("release")).as_py()) if releases is not None and releases.num_rows else 0
    if newest >= release:
        raise InputError("concurrent_release", f"release {newest} of {folder.uri} was committed by another run while "
                         f"this one worked on release {release}; nothing of this run is committed (run again)")


def _list_sourced(inputs: Sequence[str], opts: dict | None) -> list[mf.SourcedRef]:
    """Listed inputs with the INPUT argument each came from (the first one, when several list it)."""
    seen: dict[str, mf.SourcedRef] = {}
    for spec in inputs:
        for ref in list_inputs([spec], storage_options=opts):
            seen.setdefault(ref.uri, mf.SourcedRef(ref, str(spec)))
    return [seen[u] for u in sorted(seen)]


def _plan(folder: RunFolder, release: int, todo: list[mf.SourcedRef], run: RunConfig) -> list:
    """This release's work units, persisted, so a restarted run gives unfinished units the same names."""
    from rayfold.runtime.fragmenting import WorkUnit, plan_units

    plan = ("state", f"{release:06d}", "plan.json")
    units: list[WorkUnit] = []
    if folder.exists(*plan):
        for u in folder.read_json(*plan):
            units.append(WorkUnit(u["unit_id"], tuple(InputRef(**r) for r in u["refs"])))
    planned = {r.uri for u in units for r in u.refs}
    extra = [s.ref for s in todo if s.ref.uri not in planned]
    if extra or not units:
        units += plan_units(extra, run.unit_size, salt=f"release {release}")
        payload = [{"unit_id": u.unit_id, "refs": [asdict(r) for r in u.refs]} for u in units]
        folder.write_json(payload, *plan)
    wanted = {s.ref.uri for s in todo}
    return [u for u in units if any(r.uri in wanted for r in u.refs)]


def _drop_superseded_rows(folder: RunFolder, manifest: pa.Table | None) -> None:
    """Rewrite older units' parts without inputs a newer release re-processed (idempotent)."""
    for unit_id, inputs in sorted(mf.superseded(manifest).items()):
        for table in ("fragments", "chains", "errors"):
            part = folder.table(table, f"part-{unit_id}.parquet")
            if part is None:
                continue
            kept = mf.without_inputs(part, inputs)
            if kept.num_rows != part.num_rows:
                folder.write_table(kept, table, f"part-{unit_id}.parquet")


def _load_current_fragments(folder: RunFolder, manifest: pa.Table,
                            shard_size: int) -> tuple[ShardedFragments, pa.Table, np.ndarray]:
    """Passed fragments of all releases (in object-store shards, read by tasks), their errors rows
    for duplicates, and each fragment's content digest (`rayfold.cluster.memo.content_digests`).

    The driver reads only the light columns. A fragment id met twice (one entry in two inputs) is
    kept from the first input by URI; the others become errors rows."""
    from rayfold.runtime.shards import CATALOGUE_COLUMNS, fragment_catalogue, load_sharded

    parts = parquet_parts(folder.path("fragments"), folder.storage_options)
    table = fragment_catalogue(parts, folder.storage_options, columns=(*CATALOGUE_COLUMNS, "source_uri"))
    if table.num_rows == 0:
        out = folder.uri
        raise InputError("no_fragments", f"no fragments under {out}: every input failed (see {out}/errors)")
    table = table.sort_by([("fragment_id", "ascending"), ("source_uri", "ascending")])
    ids = table.column("fragment_id").to_numpy(zero_copy_only=False)
    first = np.ones(len(ids), bool)
    first[1:] = ids[1:] != ids[:-1]
    dup = table.filter(pa.array(~first))
    duplicates = pa.table(
        {
            "source_uri": dup.column("source_uri"),
            "stage": pa.array(["load"] * dup.num_rows, pa.string()),
            "error_kind": pa.array(["duplicate_entry"] * dup.num_rows, pa.string()),
            "message": pa.array([f"fragment {f} already comes from an input earlier by URI; this copy is not clustered"
                                 for f in dup.column("fragment_id").to_pylist()], pa.string()),
        },
        schema=schema.ERRORS,
    )
    kept = table.filter(pa.array(first))
    # a unit still being written (another run's, whose manifest part comes last) is not current yet:
    # its fragments wait for the release after its manifest rows exist (see `_committed_units`)
    sha = {uri: row["content_sha256"] for uri, row in mf.current(manifest).items()}
    inputs = [mf.input_of(src) for src in kept.column("source_uri").to_pylist()]
    kept = kept.filter(pa.array([i in sha for i in inputs], pa.bool_()))
    digests = content_digests([sha[i] for i in inputs if i in sha], kept.column("fragment_id").to_pylist())
    fragments = load_sharded(parts, kept.drop_columns(["source_uri"]), storage_options=folder.storage_options,
                             shard_size=shard_size)
    return fragments, duplicates, digests


def _folder(path: str) -> str:
    os.makedirs(path, exist_ok=True)
    return path


def _load_memo(folder: RunFolder, parts: list[str], ids: pa.Array, digests: np.ndarray, spill: str) -> AlignmentMemo:
    """The alignments in `parts` whose fragments are current (spilled to `spill`)."""
    memo = AlignmentMemo(Evidence(_folder(spill)))
    for part in parts:
        table = read_parquet_part(part, folder.storage_options)
        for start in range(0, table.num_rows, ROW_GROUP_ROWS):  # bounded temporaries of the id lookup
            memo.store.add(current_rows(table.slice(start, ROW_GROUP_ROWS), ids, digests))
    return memo


def _alignment_part_list(folder: RunFolder) -> list[tuple[int, bool, str]]:
    """(release, compacted, uri) of every alignments part, in release order."""
    parts = []
    for uri in parquet_parts(folder.path(ALIGNMENTS), folder.storage_options):
        name = uri.rsplit("part-", 1)[-1].removesuffix(".parquet")
        parts.append((int(name.removesuffix(COMPACTED)), name.endswith(COMPACTED), uri))
    return sorted(parts)


def _alignment_parts(parts: list[tuple[int, bool, str]], last: int) -> list[str]:
    """Of `parts` (`_alignment_part_list`), the ones the release after `last` reads: those of
    committed releases, from the newest compacted one on. A part of a release that never committed
    (a killed run) is not read: its rerun aligns the same."""
    parts = [part for part in parts if part[0] <= last]
    start = max((release for release, compacted, _ in parts if compacted), default=0)
    return [uri for release, compacted, uri in parts if release > start or (release == start and compacted)]


def _remove_earlier_state(folder: RunFolder, release: int) -> None:
    """Drop the state of releases before `release` once it is published (what a rerun or the next
    release reads is the newest committed state only), and the alignments parts a compacted one
    replaced."""
    from rayfold.io.storage import list_files, remove_tree

    parts = _alignment_part_list(folder)
    read = set(_alignment_parts(parts, release))
    for part_release, _, uri in parts:
        if part_release <= release and uri not in read:
            remove_tree(uri, folder.storage_options)

    state = folder.path("state").rstrip("/")
    names = {uri[len(state):].strip("/").split("/")[0]
             for uri in list_files(state, storage_options=folder.storage_options, recursive=True)
             if uri.startswith(state)}
    for name in sorted(names):
        if name.isdigit() and int(name) < release:
            folder.remove("state", name)


def _state_file(release: int, name: str) -> tuple[str, ...]:
    return ("state", f"{release:06d}", f"{name}.parquet")


def _state_table(folder: RunFolder, release: int, name: str) -> pa.Table:
    """One table of a committed release's state/ (the commit writes all of them)."""
    table = folder.table(*_state_file(release, name))
    assert table is not None, f"{folder.uri}: release {release} has no state table {name}"
    return table


def _publish(folder: RunFolder, release: int) -> None:
    """Copy a committed release's tables to OUT/<table>/part-0.parquet, tagged with the release."""
    for name in CLUSTER_TABLES:
        table = _state_table(folder, release, name)
        meta = dict(table.schema.metadata or {})
        meta[b"rayfold_release"] = str(release).encode()
        folder.write_table(table.replace_schema_metadata(meta), name, "part-0.parquet")


def published_release(folder: RunFolder) -> int | None:
    """The release the published tables hold (None when none is published)."""
    import pyarrow.parquet as pq

    from rayfold.io.storage import filesystem_for

    uri = folder.path("cluster_runs", "part-0.parquet")  # published last
    if not folder.exists("cluster_runs", "part-0.parquet"):
        return None
    fs, path = filesystem_for(uri, folder.storage_options)
    with fs.open(path, "rb") as fh:
        meta = pq.read_schema(fh).metadata or {}
    value = meta.get(b"rayfold_release")
    return int(value) if value else None


def _write_analytics(folder: RunFolder) -> None:
    from rayfold.analytics.report import write_analytics

    write_analytics(folder.uri, storage_options=folder.storage_options)


def _up_to_date(out: str, last: int, releases: pa.Table | None, seconds: float) -> ReleaseSummary:
    row: dict = {}
    if last:
        assert releases is not None  # `last` was read from it
        row = releases.filter(pc.field("release") == last).to_pylist()[0]
    return ReleaseSummary(
        out=out, release=last, up_to_date=True, inputs=row.get("inputs", 0), new_inputs=0, changed_inputs=0,
        withdrawn_inputs=0,
        fragments=row.get("fragments", 0), new_fragments=0, reused_alignments=0,
        clusters=row.get("clusters", 0), new_clusters=0, changed_clusters=0, merges=row.get("merges", 0),
        alignments=0, errors=0,
        engine=row.get("engine", ""), seconds=seconds, stage_seconds={},
    )
