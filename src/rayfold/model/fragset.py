"""The fragments the clustering stages work on, as NumPy arrays indexed 0..n-1.

Loaded once from the fragments table (only `passed` fragments by default); alignment, prefilter
and clustering code take indices into a `FragmentSet` instead of re-reading tables or files.
Coordinates live in one flat array plus offsets, so `ray.put` of a set is one zero-copy buffer
that every alignment task on a node shares.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import cached_property
from typing import Protocol

import numpy as np
import pyarrow as pa

from rayfold.model.ids import IdColumn


class Fragments(Protocol):
    """What the clustering's bookkeeping needs per fragment (a FragmentSet or a FragmentIndex)."""

    mean_plddt: np.ndarray

    @property
    def ids(self) -> Sequence[str]: ...  # a list, or an `IdColumn` (one Arrow array) on a driver

    @property
    def lengths(self) -> np.ndarray: ...

    def __len__(self) -> int: ...

    def index(self) -> dict[str, int]: ...


class FragmentIndex:
    """Ids, lengths and mean pLDDT only: what a driver holds when the coordinates live in shards
    (the ids as one Arrow array, `IdColumn`)."""

    def __init__(self, ids: Sequence[str] | pa.Array | pa.ChunkedArray, lengths: np.ndarray,
                 mean_plddt: np.ndarray) -> None:
        self.ids = ids if isinstance(ids, IdColumn) else IdColumn(ids)
        self._lengths = np.asarray(lengths, dtype=np.int32)
        self.mean_plddt = np.asarray(mean_plddt, dtype=np.float32)
        if not len(self.ids) == len(self._lengths) == len(self.mean_plddt):
            raise ValueError("ids, lengths and mean_plddt disagree in length")

    @property
    def lengths(self) -> np.ndarray:
        return self._lengths

    def __len__(self) -> int:
        return len(self.ids)

    def index(self) -> dict[str, int]:
        return {fid: i for i, fid in enumerate(self.ids)}


class FragmentSet:
    def __init__(
        self,
        ids: Sequence[str],
        flat_coords: np.ndarray,
        offsets: np.ndarray,
        sequences: Sequence[str],
        mean_plddt: Sequence[float] | np.ndarray,
        states_3di: Sequence[str] | None = None,
    ) -> None:
        self.ids = list(ids)  # fragment_id; sorted when loaded from a table, so index order is deterministic
        self.flat_coords = np.ascontiguousarray(flat_coords, dtype=np.float64).reshape(-1, 3)  # C-alpha, Angstrom
        self.offsets = np.asarray(offsets, dtype=np.int64)  # fragment i is flat_coords[offsets[i]:offsets[i+1]]
        self.sequences = list(sequences)
        self.mean_plddt = np.asarray(mean_plddt, dtype=np.float64)
        self.states_3di = list(states_3di) if states_3di is not None else None
        if len(self.offsets) != len(self.ids) + 1 or len(self.sequences) != len(self.ids):
            raise ValueError("ids, offsets and sequences disagree in length")

    @classmethod
    def from_arrays(
        cls,
        ids: Sequence[str],
        coords: Sequence[np.ndarray],
        sequences: Sequence[str],
        mean_plddt: Sequence[float] | np.ndarray | None = None,
        states_3di: Sequence[str] | None = None,
    ) -> FragmentSet:
        lengths = np.array([len(c) for c in coords], dtype=np.int64)
        offsets = np.concatenate([[0], np.cumsum(lengths)])
        flat = (
            np.concatenate([np.asarray(c, dtype=np.float64).reshape(-1, 3) for c in coords])
            if coords
            else np.zeros((0, 3))
        )
        plddt = np.zeros(len(ids)) if mean_plddt is None else mean_plddt
        return cls(ids, flat, offsets, sequences, plddt, states_3di)

    @classmethod
    def from_table(cls, table: pa.Table, *, passed_only: bool = True) -> FragmentSet:
        if passed_only and "passed" in table.column_names:
            table = table.filter(table.column("passed"))
        table = table.sort_by("fragment_id")
        column = table.column("ca_coords").combine_chunks()
        flat = column.values.values.to_numpy(zero_copy_only=False).reshape(-1, 3)
        offsets = column.offsets.to_numpy() - column.offsets[0].as_py()
        states = table.column("states_3di").to_pylist() if "states_3di" in table.column_names else None
        return cls(
            table.column("fragment_id").to_pylist(),
            flat,
            offsets,
            table.column("sequence").to_pylist(),
            table.column("mean_plddt").to_numpy(),
            states,
        )

    def __len__(self) -> int:
        return len(self.ids)

    def __reduce__(self):  # pickle the flat arrays, never the cached per-fragment views
        return (
            FragmentSet,
            (self.ids, self.flat_coords, self.offsets, self.sequences, self.mean_plddt, self.states_3di),
        )

    @cached_property
    def coords(self) -> list[np.ndarray]:
        """Per-fragment (L_i, 3) views into the flat array."""
        return [self.flat_coords[self.offsets[i] : self.offsets[i + 1]] for i in range(len(self.ids))]

    @cached_property
    def lengths(self) -> np.ndarray:
        return np.diff(self.offsets)

    def index(self) -> dict[str, int]:
        return {fid: i for i, fid in enumerate(self.ids)}

    def subset(self, indices: Sequence[int] | np.ndarray) -> FragmentSet:
        idx = [int(i) for i in indices]
        return FragmentSet.from_arrays(
            [self.ids[i] for i in idx],
            [self.coords[i] for i in idx],
            [self.sequences[i] for i in idx],
            self.mean_plddt[idx] if idx else np.zeros(0),
            [self.states_3di[i] for i in idx] if self.states_3di is not None else None,
        )
