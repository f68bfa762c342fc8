"""Alignments kept from one release to the next, so that a release re-runs the whole clustering and
TM-aligns only the pairs no earlier release aligned.

A release's clusters are the clusters of one run over every current fragment: the same code, over
the same fragments, asking for the same pairs. What makes that affordable is that a TM-align result
depends on the two fragments' contents alone: each release stores the alignments it computed (with
both fragments' ids and content digests), and the next one answers from them every pair whose two
fragments still exist with the same content. A fresh run is the same computation with nothing
stored, so its tables and a release's are the same by construction (the tests compare them).

A fragment's content digest is taken from its input's SHA-256 and its fragment id: a fragment is a
deterministic function of its input's bytes, so new bytes under an old name (a replaced model)
give new digests and its old alignments are never used again.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from rayfold.cluster.evidence import COLUMNS, Columns, Evidence, OfPairs, empty_columns
from rayfold.cluster.pairscores import find_sorted
from rayfold.model import schema

VALUES = COLUMNS[2:]  # what an alignment gives: tm_a, tm_b, rmsd, aligned_length, seq_identity, cov_a, cov_b
SWAPPED = {"tm_a": "tm_b", "tm_b": "tm_a", "cov_a": "cov_b", "cov_b": "cov_a"}  # i and j exchanged


def content_digests(input_sha256: Sequence[str], fragment_ids: Sequence[str]) -> np.ndarray:
    """int64 digest per fragment of (its input's SHA-256, its id): equal digests, equal contents."""
    out = np.empty(len(fragment_ids), np.int64)
    for k, (sha, fid) in enumerate(zip(input_sha256, fragment_ids)):
        digest = hashlib.blake2b(f"{sha}\0{fid}".encode(), digest_size=8).digest()
        out[k] = int.from_bytes(digest, "little", signed=True)
    return out


def _directed(i: np.ndarray, j: np.ndarray) -> np.ndarray:
    return (np.asarray(i, np.int64) << np.int64(32)) | np.asarray(j, np.int64)


def oriented(pairs: np.ndarray, have: Columns, *, flipped: bool) -> tuple[np.ndarray, Columns]:
    """(found, columns) for `pairs` from the rows of `have`, zeros where not found: a row (i, j)
    answers the pair (i, j); with `flipped`, a row (j, i) answers it too where no (i, j) row does,
    with tm_a/tm_b and cov_a/cov_b exchanged. The earliest matching row wins.

    TM-align is not exactly symmetric (the superposition search starts from the first structure),
    so only a row in the asked orientation is the value a fresh alignment would give."""
    pairs = np.asarray(pairs, dtype=np.int64).reshape(-1, 2)
    out = {k: np.zeros(len(pairs), v.dtype) for k, v in empty_columns().items()}
    out["i"], out["j"] = pairs[:, 0].copy(), pairs[:, 1].copy()
    found = np.zeros(len(pairs), bool)
    if not len(have["i"]) or not len(pairs):
        return found, out
    key = _directed(have["i"], have["j"])
    order = np.argsort(key, kind="stable")  # the earliest row of a key first
    sorted_key = key[order]
    for flip in (False, True) if flipped else (False,):
        a, b = (pairs[:, 1], pairs[:, 0]) if flip else (pairs[:, 0], pairs[:, 1])
        wanted = _directed(a, b)
        present, where = find_sorted(sorted_key, wanted)
        hit = ~found & present
        rows = order[where[hit]]
        for k in VALUES:
            out[k][hit] = have[SWAPPED.get(k, k) if flip else k][rows]
        found |= hit
    return found, out


class AlignmentMemo:
    """The stored alignments whose fragments are current, over today's fragment indices, in an
    `Evidence` store (spilled to disk by the runtime: the driver never holds them all)."""

    def __init__(self, store: Evidence | None = None) -> None:
        self.store = store if store is not None else Evidence()

    def __len__(self) -> int:
        return len(self.store)

    def lookup(self, pairs: np.ndarray) -> tuple[np.ndarray, Columns]:
        """(found, columns) of `pairs`: stored rows in the asked orientation only (one scan)."""
        pairs = np.asarray(pairs, dtype=np.int64).reshape(-1, 2)
        have = self.store.select(OfPairs.of(pairs)) if len(self.store) and len(pairs) else empty_columns()
        return oriented(pairs, have, flipped=False)


def memo_table(columns: Columns, ids: pa.Array, digests: np.ndarray) -> pa.Table:
    """Alignment rows over today's indices as the ALIGNMENTS table (ids and digests of both ends)."""
    i, j = (pa.array(np.asarray(columns[k], np.int64)) for k in ("i", "j"))
    return pa.Table.from_arrays(
        [ids.take(i), ids.take(j), pa.array(digests[columns["i"]]), pa.array(digests[columns["j"]]),
         *(pa.array(np.asarray(columns[k], dtype=schema.ALIGNMENTS.field(k).type.to_pandas_dtype())) for k in VALUES)],
        schema=schema.ALIGNMENTS)


def current_rows(table: pa.Table, ids: pa.Array, digests: np.ndarray) -> Columns:
    """The rows of an ALIGNMENTS table whose two fragments are among today's `ids` (sorted, unique)
    with the same digests, as columns over today's indices."""
    if not len(ids):
        return empty_columns()
    i = pc.index_in(table.column("fragment_a"), value_set=ids)
    j = pc.index_in(table.column("fragment_b"), value_set=ids)
    ok = np.asarray(pc.and_(pc.is_valid(i), pc.is_valid(j)).to_numpy(zero_copy_only=False), bool)
    i = i.fill_null(0).to_numpy().astype(np.int64)
    j = j.fill_null(0).to_numpy().astype(np.int64)
    ok &= (digests[i] == table.column("digest_a").to_numpy()) & (digests[j] == table.column("digest_b").to_numpy())
    out = {"i": i[ok], "j": j[ok]}
    for k in VALUES:
        out[k] = table.column(k).to_numpy()[ok].astype(empty_columns()[k].dtype)
    return out
