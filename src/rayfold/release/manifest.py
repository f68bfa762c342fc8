"""What a run folder has already processed, as pure functions over Arrow tables (no Ray, no I/O).

The manifest holds one row per input per release that processed it. An input is *current* in
its newest row; it is processed again when its size or ETag/mtime differ from that row (new
content under the same name), and never otherwise. A release run with `--sync` withdraws the
inputs it no longer finds listed: a row with `withdrawn` true, after which the input is not
current and its rows leave the tables (listed again later, it is processed as new).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import pyarrow as pa
import pyarrow.compute as pc

from rayfold.io.storage import InputRef


def input_of(source_uri: str) -> str:
    """The input a structure came from: a tar member `shard.tar#member` belongs to `shard.tar`."""
    return source_uri.split("#", 1)[0]


@dataclass(frozen=True)
class SourcedRef:
    """A listed input and the INPUT argument (its source) it was listed from."""

    ref: InputRef
    source: str


def newest(manifest: pa.Table | None) -> dict[str, dict]:
    """{input_uri: its newest manifest row}, withdrawals included."""
    if manifest is None or manifest.num_rows == 0:
        return {}
    rows = manifest.sort_by([("input_uri", "ascending"), ("release", "ascending")]).to_pylist()
    return {row["input_uri"]: row for row in rows}


def current(manifest: pa.Table | None) -> dict[str, dict]:
    """{input_uri: its newest manifest row} of the inputs in the collection (not withdrawn)."""
    return {uri: row for uri, row in newest(manifest).items() if not row.get("withdrawn")}


def withdrawals(listed: Iterable[str], manifest: pa.Table | None, release: int) -> pa.Table:
    """Manifest rows of `release` withdrawing the inputs current before it that are not `listed`
    (the same rows however often a killed release is run again)."""
    from rayfold.model import schema

    before = current(manifest.filter(pc.field("release") < release)) if manifest is not None else {}
    gone = sorted(set(before) - set(listed))
    rows = [{"input_uri": uri, "source": before[uri]["source"], "size": None, "mtime_or_etag": None,
             "content_sha256": "", "unit_id": f"withdrawn-{release:06d}", "release": release, "structures": 0,
             "fragments": 0, "errors": 0, "withdrawn": True} for uri in gone]
    return pa.Table.from_pylist(rows, schema=schema.MANIFEST)


def is_unchanged(ref: InputRef, row: dict) -> bool:
    return row["size"] == ref.size and row["mtime_or_etag"] == ref.mtime_or_etag


@dataclass(frozen=True)
class InputDiff:
    todo: list[SourcedRef]  # new or changed inputs still to process in this release
    done_in_release: list[str]  # input URIs this release already processed (a resumed run)


def diff_inputs(listed: Sequence[SourcedRef], manifest: pa.Table | None, release: int) -> InputDiff:
    """Split the listed inputs of `release` into work still to do and work a killed attempt finished."""
    latest = current(manifest)
    todo, done = [], []
    for item in listed:
        row = latest.get(item.ref.uri)
        if row is not None and is_unchanged(item.ref, row):
            if row["release"] == release:
                done.append(item.ref.uri)
            continue
        todo.append(item)
    return InputDiff(todo, done)


def changed_content(manifest: pa.Table, release: int) -> set[str]:
    """Inputs `release` processed whose content hash differs from their previous version's.

    A file only touched or re-uploaded (new mtime/ETag, same bytes) is read again but keeps its
    clustering; new bytes under an old name retire the old fragments' clustering."""
    earlier = current(manifest.filter(pc.field("release") < release))
    now = current(manifest.filter(pc.field("release") == release))  # a withdrawal is not a change
    return {uri for uri, r in now.items() if uri in earlier and earlier[uri]["content_sha256"] != r["content_sha256"]}


def superseded(manifest: pa.Table | None) -> dict[str, set[str]]:
    """{unit_id: inputs whose rows in that unit's parts a newer release replaced or withdrew}."""
    latest = newest(manifest)
    out: dict[str, set[str]] = {}
    if manifest is None:
        return out
    for row in manifest.select(["input_uri", "unit_id", "release"]).to_pylist():
        if latest[row["input_uri"]]["unit_id"] != row["unit_id"]:
            out.setdefault(row["unit_id"], set()).add(row["input_uri"])
    return out


def without_inputs(table: pa.Table, inputs: Iterable[str]) -> pa.Table:
    """Rows of a fragments/chains/errors part whose input is not in `inputs`."""
    drop = set(inputs)
    keep = [input_of(uri) not in drop for uri in table.column("source_uri").to_pylist()]
    return table.filter(pa.array(keep, type=pa.bool_()))
