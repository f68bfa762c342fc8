"""min-TM scores of fragment pairs already aligned, kept in sorted NumPy arrays.

The guard, cohesion and the audit reuse every alignment the first pass made. A Python dict of
(int, int) -> float costs ~200 bytes a pair on the driver; these arrays cost 16, so the driver's
memory grows with the number of alignments kept at a tenth of the rate.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

import numpy as np

_SHIFT = np.int64(32)  # key = lower index << 32 | higher index (indices < 2^31)


def pair_keys(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    a, b = np.asarray(a, np.int64), np.asarray(b, np.int64)
    return (np.minimum(a, b) << _SHIFT) | np.maximum(a, b)


def find_sorted(sorted_keys: np.ndarray, keys: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(found, where) per key in an ascending array: one binary search each, temporaries the size of
    `keys` only (`np.isin` sorts both arrays on every call). `where` is a valid index when found."""
    keys = np.asarray(keys)
    if not len(sorted_keys):
        return np.zeros(len(keys), bool), np.zeros(len(keys), np.int64)
    where = np.minimum(np.searchsorted(sorted_keys, keys), len(sorted_keys) - 1)
    return sorted_keys[where] == keys, where


class DistinctPairs:
    """Unordered pairs folded as they come (a pair found from both ends, or twice, counts once):
    the distinct keys at 8 bytes a pair, compacted whenever the pending keys pass the kept ones, so
    a search's candidates never sit on the driver all at once with their copies."""

    def __init__(self) -> None:
        self.kept = np.zeros(0, np.int64)
        self.pending: list[np.ndarray] = []
        self.pending_rows = 0

    def add(self, pairs: np.ndarray) -> None:
        pairs = np.asarray(pairs, dtype=np.int64).reshape(-1, 2)
        pairs = pairs[pairs[:, 0] != pairs[:, 1]]
        self.pending.append(pair_keys(pairs[:, 0], pairs[:, 1]))
        self.pending_rows += len(pairs)
        if self.pending_rows > max(65_536, len(self.kept)):
            self._compact()

    def _compact(self) -> None:
        self.kept = np.unique(np.concatenate([self.kept, *self.pending]))
        self.pending, self.pending_rows = [], 0

    def pairs(self) -> np.ndarray:
        """(i < j) rows, unique, sorted: what `rayfold.cluster.algorithm.unique_pairs` gives."""
        self._compact()
        return np.column_stack([self.kept >> _SHIFT, self.kept & np.int64((1 << 32) - 1)])


class PairScores:
    """Unordered pair -> min-TM. Later scores of a pair replace earlier ones (as dict updates do)."""

    def __init__(self, a: np.ndarray | None = None, b: np.ndarray | None = None,
                 tm: np.ndarray | None = None) -> None:
        self._key = np.zeros(0, np.int64)
        self._tm = np.zeros(0, np.float64)
        if a is not None and b is not None and tm is not None:
            self.update(a, b, tm)

    @classmethod
    def of(cls, known: PairScores | Mapping[tuple[int, int], float] | None) -> PairScores:
        """A copy of `known` (a dict of pair -> score, or another PairScores)."""
        out = cls()
        if isinstance(known, PairScores):
            out._key, out._tm = known._key.copy(), known._tm.copy()
        elif known:
            pairs = np.array(list(known.keys()), np.int64).reshape(-1, 2)
            out.update(pairs[:, 0], pairs[:, 1], np.fromiter(known.values(), np.float64, len(known)))
        return out

    @classmethod
    def from_columns(cls, column_sets: Iterable[Mapping[str, np.ndarray]]) -> PairScores:
        """min(tm_a, tm_b) of alignment columns (i, j, tm_a, tm_b); later sets win on a repeated pair."""
        out = cls()
        for columns in column_sets:
            out.update(columns["i"], columns["j"], np.minimum(columns["tm_a"], columns["tm_b"]))
        return out

    @classmethod
    def from_keys(cls, key: np.ndarray, tm: np.ndarray) -> PairScores:
        """Scores of `pair_keys` in order (a repeated key: the later score wins)."""
        out = cls()
        out._merge(np.asarray(key, np.int64), np.asarray(tm, np.float64))
        return out

    def update(self, a: np.ndarray, b: np.ndarray, tm: np.ndarray) -> None:
        self._merge(pair_keys(a, b), np.asarray(tm, np.float64))

    def absorb(self, other: PairScores, *, wins: bool = True) -> None:
        """`other`'s scores added to these; where both have a pair, other's wins (`wins`) or this
        one's stays. With `wins=False` a caller can absorb the smaller set into the bigger one, which
        is then copied once (the other way round, the bigger set's keys are sorted, searched and
        copied as well)."""
        self._merge(other._key, other._tm, overwrite=wins)

    def _merge(self, key: np.ndarray, tm: np.ndarray, overwrite: bool = True) -> None:
        """The new scores sorted (a repeated key: the later wins); those of known pairs written in
        place (`overwrite`), the others inserted in one copy. The driver's peak is the kept scores
        twice over (~32 B a pair) while they grow, not a sort of old and new together (~72 B): the
        guard and cohesion add a few thousand scores at a time to hundreds of thousands."""
        presorted = bool(np.all(key[1:] > key[:-1]))  # another PairScores' keys (`absorb`) are sorted already
        if not presorted:
            order = np.argsort(key, kind="stable")
            key, tm = key[order], tm[order]
            del order
            last = np.r_[key[1:] != key[:-1], True]
            key, tm = key[last], tm[last]
        if not len(self._key):
            # never the caller's arrays, which may change (what was sorted here is a copy already)
            self._key, self._tm = (key.copy(), tm.copy()) if presorted else (key, tm)
            return
        found, where = find_sorted(self._key, key)
        if overwrite:
            self._tm[where[found]] = tm[found]
        new = ~found
        del found, where
        if new.any():
            at = np.searchsorted(self._key, key[new])
            self._key, self._tm = np.insert(self._key, at, key[new]), np.insert(self._tm, at, tm[new])

    def lookup(self, a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(found, min-TM) per pair (a[k], b[k]); min-TM is NaN where not found."""
        found, where = find_sorted(self._key, pair_keys(a, b))
        return found, np.where(found, self._tm[where] if len(self._tm) else np.nan, np.nan)

    def __contains__(self, pair: tuple[int, int]) -> bool:
        return bool(self.lookup(np.array([pair[0]]), np.array([pair[1]]))[0][0])

    def __getitem__(self, pair: tuple[int, int]) -> float:
        found, tm = self.lookup(np.array([pair[0]]), np.array([pair[1]]))
        if not found[0]:
            raise KeyError(pair)
        return float(tm[0])

    def __len__(self) -> int:
        return len(self._key)

    @property
    def nbytes(self) -> int:
        return int(self._key.nbytes + self._tm.nbytes)
