"""The alignments later steps may need, kept where the driver does not hold them: evidence.

The first pass TM-aligns about one pair per fragment (more for a family's hard members) and keeps
the rows that can still matter (`worth_keeping`: first-pass edges, pairs at min-TM >= the guard).
Later steps read only small slices of them: the rows among the representatives (search rounds,
audit, guard), the rows across first-pass clusters at min-TM >= the merge threshold (merge
evidence), and the few pairs cohesion samples. An `Evidence` store takes rows as they are aligned
and answers those slices (`select`) by one scan, block by block: the whole of it is never in memory
at once. With a `spill` folder its blocks are files there (the runtime's choice: the driver's
memory stays flat however many fragments there are); without, they stay in memory (tests, small
runs). Rows keep the order they were added in, so "later rows win" holds for every slice.

The files are NumPy's (`.npz`), not Arrow IPC: Arrow's IPC writer allocates from Arrow's C++
default pool (mimalloc), which `pa.set_memory_pool` does not change, and the driver's first spill
mapped a mimalloc arena and kept 2-4 MB of it written for the rest of the run.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, cast

import numpy as np

from rayfold.cluster.pairscores import PairScores, find_sorted, pair_keys
from rayfold.cluster.rules import ClusterConfig

Columns = dict[str, np.ndarray]  # i, j, tm_a, tm_b, rmsd, aligned_length, seq_identity, cov_a, cov_b
COLUMNS = ("i", "j", "tm_a", "tm_b", "rmsd", "aligned_length", "seq_identity", "cov_a", "cov_b")
_DTYPES = {"i": np.int64, "j": np.int64, "aligned_length": np.int32}  # the rest float64, as `align_pairs` gives

# a row filter over a block of columns
RowRule = Callable[[Columns], np.ndarray]

I_REPRESENTS_J, J_REPRESENTS_I = np.uint8(1), np.uint8(2)  # bits of `edge_bits`


def empty_columns() -> Columns:
    return {k: np.zeros(0, _DTYPES.get(k, np.float64)) for k in COLUMNS}


def concat_columns(parts: list[Columns]) -> Columns:
    parts = [p for p in parts if p is not None and len(p["i"])]
    if not parts:
        return empty_columns()
    return {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}


def take_rows(columns: Columns, keep: np.ndarray) -> Columns:
    return {k: v[keep] for k, v in columns.items()}


def worth_keeping(columns: Columns, config: ClusterConfig) -> np.ndarray:
    """The alignment rows later steps can use: first-pass edges, and pairs at min-TM >= the guard
    (possible merge evidence, guard and cohesion scores). A failed try is dropped."""
    tm = np.minimum(columns["tm_a"], columns["tm_b"])
    covered = (columns["cov_a"] >= config.coverage) & (columns["cov_b"] >= config.coverage)
    edge = covered & (np.maximum(columns["tm_a"], columns["tm_b"]) >= config.tm_threshold)
    return edge | (tm >= min(config.guard_threshold, config.merge_threshold))


def edge_bits(columns: Columns, config: ClusterConfig) -> np.ndarray:
    """Per row, Foldseek's representative rule both ways (both coverages >= coverage, TM normalised
    by the representative >= tm_threshold): bit 1 when i can represent j, bit 2 when j can represent i.
    One byte per pair is all the cascade's decisions need of an alignment."""
    covered = (columns["cov_a"] >= config.coverage) & (columns["cov_b"] >= config.coverage)
    i_rep = covered & (columns["tm_a"] >= config.tm_threshold)  # tm_a: normalised by i's length
    j_rep = covered & (columns["tm_b"] >= config.tm_threshold)
    return (np.where(i_rep, I_REPRESENTS_J, 0) | np.where(j_rep, J_REPRESENTS_I, 0)).astype(np.uint8)


def edges_of(i: np.ndarray, j: np.ndarray, bits: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(representative, member) pairs the bits allow, i as representative first (as `first_pass_edges`)."""
    i_rep, j_rep = (bits & I_REPRESENTS_J) > 0, (bits & J_REPRESENTS_I) > 0
    return (np.concatenate([i[i_rep], j[j_rep]]).astype(np.int64),
            np.concatenate([j[i_rep], i[j_rep]]).astype(np.int64))


# --- the slices later steps read ---------------------------------------------------------------


@dataclass(frozen=True)
class Among:
    """Rows whose two fragments are both flagged (e.g. the representatives)."""

    flagged: np.ndarray  # bool per fragment

    def __call__(self, columns: Columns) -> np.ndarray:
        return self.flagged[columns["i"]] & self.flagged[columns["j"]]


@dataclass(frozen=True)
class Across:
    """Rows at min-TM >= threshold whose fragments sit in different first-pass clusters."""

    rep_of: np.ndarray
    threshold: float

    def __call__(self, columns: Columns) -> np.ndarray:
        return ((np.minimum(columns["tm_a"], columns["tm_b"]) >= self.threshold)
                & (self.rep_of[columns["i"]] != self.rep_of[columns["j"]]))


@dataclass(frozen=True)
class OfPairs:
    """Rows of the given unordered pairs (either orientation)."""

    keys: np.ndarray  # sorted unique `pair_keys`

    @classmethod
    def of(cls, pairs: np.ndarray) -> OfPairs:
        pairs = np.asarray(pairs, dtype=np.int64).reshape(-1, 2)
        return cls(np.unique(pair_keys(pairs[:, 0], pairs[:, 1])))

    def __call__(self, columns: Columns) -> np.ndarray:
        return find_sorted(self.keys, pair_keys(columns["i"], columns["j"]))[0]


@dataclass(frozen=True)
class Touches:
    """Rows with at least one flagged fragment."""

    flagged: np.ndarray  # bool per fragment

    def __call__(self, columns: Columns) -> np.ndarray:
        return self.flagged[columns["i"]] | self.flagged[columns["j"]]


@dataclass(frozen=True)
class Both:
    """Rows every rule keeps."""

    rules: tuple

    def __call__(self, columns: Columns) -> np.ndarray:
        return np.logical_and.reduce([np.ones(len(columns["i"]), bool), *(rule(columns) for rule in self.rules)])


@dataclass(frozen=True)
class Either:
    """Rows some rule keeps."""

    rules: tuple

    def __call__(self, columns: Columns) -> np.ndarray:
        return np.logical_or.reduce([np.zeros(len(columns["i"]), bool), *(rule(columns) for rule in self.rules)])


# --- the store ---------------------------------------------------------------------------------


class Evidence:
    """Alignment rows in the order they were added, held in memory or spilled to NumPy files in
    `spill` (a folder the caller owns) every `block_rows` rows: at most ~0.5 MB of rows waits on the
    driver (it was 65,536 rows, 4.4 MB)."""

    def __init__(self, spill: str | None = None, block_rows: int = 8_192) -> None:
        self.spill, self.block_rows = spill, block_rows
        self.blocks: list[Columns] = []  # in memory: all of them; spilling: the rows not written yet
        self.files: list[str] = []
        self.rows_added = self.rows_pending = 0

    def add(self, columns: Columns, keep: np.ndarray | None = None) -> None:
        columns = take_rows(columns, keep) if keep is not None else columns
        if not len(columns["i"]):
            return
        self.blocks.append({k: np.asarray(columns[k], dtype=_DTYPES.get(k, np.float64)) for k in COLUMNS})
        self.rows_added += len(columns["i"])
        self.rows_pending += len(columns["i"])
        if self.spill is not None and self.rows_pending >= self.block_rows:
            self._write()

    def _write(self) -> None:
        block = concat_columns(self.blocks)
        self.blocks, self.rows_pending = [], 0
        if not len(block["i"]):
            return
        path = os.path.join(str(self.spill), f"evidence-{len(self.files):06d}.npz")
        np.savez(path, **cast("dict[str, Any]", block))  # the columns by name (numpy's stubs type **kwds as its flags)
        self.files.append(path)

    def scan(self) -> Iterator[Columns]:
        """The rows in add order, a block at a time."""
        for path in self.files:
            # read into ordinary buffers (no memory map): only one block is resident at a time
            with np.load(path) as block:
                columns = {k: block[k] for k in COLUMNS}
            yield columns
            del columns
        yield from self.blocks

    def selected(self, rule: RowRule, *, since: int = 0) -> Iterator[Columns]:
        """The rows `rule` keeps among those added from row `since` on, a block at a time, in the
        order they were added (one scan): a caller that reduces each block never holds them all."""
        start = 0
        for block in self.scan():
            rows = len(block["i"])
            if start + rows > since:
                keep = rule(block)
                keep[:max(0, since - start)] = False
                yield take_rows(block, keep)
            start += rows

    def select(self, rule: RowRule, *, since: int = 0) -> Columns:
        """Every row `selected` gives, as one set of columns."""
        return concat_columns(list(self.selected(rule, since=since)))

    def scores(self, rule: RowRule) -> PairScores:
        """min-TM of the rows `rule` keeps, later rows winning (as `PairScores.from_columns` of
        `select`), merged in a block at a time: the peak is the kept scores twice over (16 B a row
        each), not every block's keys and their sorted copies at once."""
        out = PairScores()
        for block in self.scan():
            keep = rule(block)
            out.absorb(PairScores.from_keys(pair_keys(block["i"][keep], block["j"][keep]),
                                            np.minimum(block["tm_a"][keep], block["tm_b"][keep])))
        return out

    def flush(self) -> None:
        """Spill the rows not written yet (a spilling store): later steps only read, and the driver
        then holds none of them between scans."""
        if self.spill is not None and self.rows_pending:
            self._write()

    def rows(self) -> Columns:
        """Every row (tests and small runs)."""
        return concat_columns(list(self.scan()))

    def __len__(self) -> int:
        return self.rows_added
