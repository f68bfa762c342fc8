"""Fragment ids as one Arrow string column, for the driver.

A Python list of str costs ~85 bytes an id on the driver (a pointer, an object header and the
characters); the same ids in one Arrow array cost their characters and a 4-byte offset (~30 bytes
for AlphaFold DB fragment ids), and the clustering tables take them without a copy. Code that
needs Python strings takes them a slice at a time (`chunks`, `take`), never a list of all.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import overload

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

CHUNK = 8_192  # ids turned into Python strings at once (~0.6 MB of them)


class IdColumn(Sequence[str]):
    """Unique fragment ids in global index order (an immutable sequence of str)."""

    def __init__(self, ids: pa.Array | pa.ChunkedArray | Sequence[str]) -> None:
        if isinstance(ids, pa.ChunkedArray):
            ids = ids.combine_chunks() if ids.num_chunks else pa.array([], pa.string())
        if not isinstance(ids, pa.Array):
            ids = pa.array(list(ids), pa.string())
        # 4-byte offsets while the characters fit (2 GiB: ~80 M AlphaFold DB ids), 8-byte beyond
        if pa.types.is_large_string(ids.type) and ids.nbytes < 2**31 - 1:
            ids = ids.cast(pa.string())
        elif not (pa.types.is_string(ids.type) or pa.types.is_large_string(ids.type)):
            raise TypeError(f"fragment ids must be strings, not {ids.type}")
        if ids.null_count:
            raise ValueError("fragment ids must not be null")
        self.arrow: pa.Array = ids
        self._sorted: bool | None = None

    def __len__(self) -> int:
        return len(self.arrow)

    @overload
    def __getitem__(self, k: int) -> str: ...

    @overload
    def __getitem__(self, k: slice) -> list[str]: ...

    def __getitem__(self, k: int | slice) -> str | list[str]:
        if isinstance(k, slice):
            start, stop, step = k.indices(len(self))
            return self.take(np.arange(start, stop, step))
        k = int(k)
        if k < 0:
            k += len(self)
        if not 0 <= k < len(self):
            raise IndexError("fragment index out of range")
        return self.arrow[k].as_py()

    def __iter__(self) -> Iterator[str]:
        for chunk in self.chunks():
            yield from chunk

    def chunks(self, size: int = CHUNK) -> Iterator[list[str]]:
        """The ids as Python strings, `size` at a time, in order."""
        for start in range(0, len(self), size):
            yield self.arrow.slice(start, size).to_pylist()

    def take(self, index: np.ndarray) -> list[str]:
        """ids[index] as Python strings (for a slice of fragments, not all of them)."""
        return self.arrow.take(pa.array(np.asarray(index, dtype=np.int64))).to_pylist()

    def is_sorted(self) -> bool:
        """Strictly increasing, as Python compares str (Arrow compares the UTF-8 bytes: the same order)."""
        if self._sorted is None:
            n = len(self)
            self._sorted = n < 2 or bool(pc.all(pc.less(self.arrow.slice(0, n - 1), self.arrow.slice(1))).as_py())
        return self._sorted

    def sort_indices(self) -> np.ndarray:
        return np.asarray(pc.sort_indices(self.arrow), dtype=np.int64)


def id_array(ids: Sequence[str]) -> pa.Array:
    """The ids as an Arrow string array: the column itself when it is one, else one copy."""
    return ids.arrow if isinstance(ids, IdColumn) else pa.array(list(ids), pa.string())
