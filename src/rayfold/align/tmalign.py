"""TM-align scores for pairs of C-alpha traces (tmtools: the TM-align C++ code, one call a pair).

Every merge the clustering makes is confirmed here. Pure NumPy + tmtools (no Ray: the Ray layer
batches calls to `align_pairs`).

What TM-align reports and how it is read back
---------------------------------------------
`tmtools.tm_align(x, y, seqx, seqy)` returns the two TM-scores, the RMSD and the three alignment
strings. TM-align's "Aligned length" is the number of aligned pairs within its distance cutoff
(``n_ali8``); exactly those pairs are printed as aligned columns, ``:`` (d < 5 A) or ``.``, in the
match line ``seqM`` (other positions are blank). So ``aligned_length`` = non-blank characters of
``seqM`` and ``seq_identity`` = identical residues among those columns / ``aligned_length``, as
TM-align prints ``Seq_ID=n_identical/n_aligned``.

Against the TMalign program (Fortran, 20190822; tmtools bundles the C++ code, 20210224) on 1,501
real pairs (tests/align/test_tmalign.py): 1,363 give the same numbers to the printed precision; on the
other 138 the two versions' alignment searches end on different alignments (up to 0.06 apart in
TM-score, 89 pairs over 1e-3), while scoring the program's own alignment here reproduces its
numbers. Deterministic: the same inputs give bit-identical results, in any process. The wrapper's
own work costs ~20 us a pair (< 0.1% of TM-align's time on 150-residue chains).

Input rules (measured on tmtools 0.3.0)
---------------------------------------
* Coordinates: (n, 3) finite numbers, passed as C-contiguous float64 (no copy when they already
  are). NaN coordinates make TM-align loop forever, so they are rejected here.
* Length: TM-align refuses chains with fewer than 3 residues (``RuntimeError: Sequence is too
  short <3!``); `align` raises ValueError for those before calling it. Chains of 3-4 residues are
  scored (TM-align's own small-chain d0 rules apply).
* Sequences: one letter a residue, same length as the coordinates (TM-align checks the byte length
  of the string, so a non-ASCII letter breaks it). TM-align accepts any byte and only compares
  letters for identity; ``-`` is its gap letter. Letters are upper-cased and anything outside
  ``A-Z`` becomes ``X`` (TM-align's own code for an unknown residue), so identity counts are not
  affected by case and gap letters never appear inside a sequence.
"""

from __future__ import annotations

import string
from dataclasses import dataclass

import numpy as np
import pyarrow as pa
from tmtools import tm_align as _tm_align

from rayfold.model.fragset import FragmentSet

__all__ = [
    "MIN_RESIDUES",
    "Alignment",
    "align",
    "align_pairs",
    "align_pairs_table",
    "clean_sequence",
]

MIN_RESIDUES = 3  # TM-align refuses shorter chains

_UPPER = frozenset(string.ascii_uppercase)
# str.translate table: a-z -> A-Z; every other code point that is not A-Z -> X (built lazily per
# code point through a dict subclass, so any Unicode letter maps too).


class _ToX(dict):
    def __missing__(self, key: int) -> int:
        ch = chr(key)
        if ch in _UPPER:
            value = key
        elif "a" <= ch <= "z":
            value = ord(ch.upper())
        else:
            value = ord("X")
        if len(self) < 4096:
            self[key] = value
        return value


_TRANSLATE = _ToX()


def estimated_seconds(len_a: np.ndarray, len_b: np.ndarray) -> np.ndarray:
    """Rough one-core seconds of TM-align per pair, for sizing tasks by work rather than by count:
    TM-align's cost grows faster than the product of the lengths (tmtools 0.3.0, FIELD-NOTES: ~10 ms
    at 100 x 100 residues, ~45 ms at 200, ~210 ms at 400, ~2 s at 800; (La Lb)^1.25 fits these
    within 2x)."""
    product = np.asarray(len_a, np.float64) * np.asarray(len_b, np.float64)
    return 0.01 * (product / 1e4) ** 1.25


def clean_sequence(seq: str) -> str:
    """`seq` upper-cased with every character outside A-Z replaced by 'X' (same length)."""
    if seq.isascii() and seq.isalpha() and seq.isupper():
        return seq  # fast path: already plain upper-case letters
    return seq.translate(_TRANSLATE)


@dataclass(frozen=True)
class Alignment:
    """One TM-align result; chain a is TM-align's chain 1 (``x``), chain b its chain 2."""

    tm_a: float  # TM-score normalised by len(a)
    tm_b: float  # TM-score normalised by len(b)
    rmsd: float  # RMSD of the aligned pairs (TM-align's "RMSD=")
    aligned_length: int  # TM-align's "Aligned length="
    seq_identity: float  # identical aligned residues / aligned_length (0 when nothing is aligned)
    cov_a: float = 0.0  # span of a's aligned residues (first to last, inclusive) / len(a), as Foldseek's qcov
    cov_b: float = 0.0  # the same for b (tcov)

    @property
    def tm_min(self) -> float:
        """min(tm_a, tm_b) = TM-score normalised by the longer chain."""
        return min(self.tm_a, self.tm_b)

    @property
    def tm_max(self) -> float:
        return max(self.tm_a, self.tm_b)


def _prepare_coords(coords: np.ndarray, name: str) -> np.ndarray:
    x = np.ascontiguousarray(coords, dtype=np.float64)
    if x.ndim != 2 or x.shape[1] != 3:
        raise ValueError(f"{name}: coordinates must have shape (n, 3), got {x.shape}")
    if x.shape[0] < MIN_RESIDUES:
        raise ValueError(
            f"{name}: {x.shape[0]} residue(s); TM-align needs at least {MIN_RESIDUES} C-alpha atoms"
        )
    if not np.isfinite(x).all():
        raise ValueError(f"{name}: non-finite coordinates (TM-align would not terminate)")
    return x


def _prepare_seq(seq: str, n: int, name: str) -> str:
    if not isinstance(seq, str):
        raise TypeError(f"{name}: sequence must be a str, not {type(seq).__name__}")
    if len(seq) != n:
        raise ValueError(f"{name}: sequence has {len(seq)} letters but there are {n} C-alpha atoms")
    return clean_sequence(seq)


def _coverage(aligned_columns: np.ndarray, row: str) -> float:
    """Span of one chain's aligned residues over its length (gaps '-' do not advance the residue)."""
    present = np.frombuffer(row.encode("ascii", "replace"), dtype=np.uint8) != ord("-")
    length = int(present.sum())
    if length == 0 or len(aligned_columns) == 0:
        return 0.0
    residue = np.cumsum(present) - 1
    return float(residue[aligned_columns[-1]] - residue[aligned_columns[0]] + 1) / length


def _read_result(res) -> tuple[float, float, float, int, float, float, float]:  # noqa: ANN001 - tmtools TMResult
    seq_m = res.seqM
    n_aligned = len(seq_m) - seq_m.count(" ")
    sx, sy = res.seqxA, res.seqyA
    if n_aligned:
        identical = sum(1 for m, a, b in zip(seq_m, sx, sy) if m != " " and a == b)
        identity = identical / n_aligned
    else:
        identity = 0.0
    columns = np.flatnonzero(np.frombuffer(seq_m.encode("ascii", "replace"), dtype=np.uint8) != ord(" "))
    return (float(res.tm_norm_chain1), float(res.tm_norm_chain2), float(res.rmsd), n_aligned, identity,
            _coverage(columns, sx), _coverage(columns, sy))


def align(coords_a: np.ndarray, seq_a: str, coords_b: np.ndarray, seq_b: str) -> Alignment:
    """TM-align chain a (TM-align's chain 1) against chain b; deterministic.

    Raises ValueError for unusable input (shape, < 3 residues, non-finite coordinates, sequence
    length different from the number of coordinates).
    """
    x = _prepare_coords(coords_a, "chain a")
    y = _prepare_coords(coords_b, "chain b")
    sx = _prepare_seq(seq_a, x.shape[0], "chain a")
    sy = _prepare_seq(seq_b, y.shape[0], "chain b")
    return Alignment(*_read_result(_tm_align(x, y, sx, sy)))


_COLUMNS = ("i", "j", "tm_a", "tm_b", "rmsd", "aligned_length", "seq_identity", "cov_a", "cov_b")


def align_pairs(fragments: FragmentSet, pairs: np.ndarray) -> dict[str, np.ndarray]:
    """TM-align each (i, j) row of `pairs` (indices into `fragments`), in order, one after another.

    Returns columns i, j (int64), tm_a, tm_b, rmsd (float64), aligned_length (int32),
    seq_identity, cov_a, cov_b (float64); tm_a and cov_a refer to fragment i, tm_b and cov_b to j.
    """
    p = np.asarray(pairs)
    if p.size == 0:
        p = p.reshape(0, 2)
    if p.ndim != 2 or p.shape[1] != 2:
        raise ValueError(f"pairs must have shape (m, 2), got {p.shape}")
    if p.size and not np.issubdtype(p.dtype, np.integer):
        raise ValueError("pairs must be integer indices")
    p = p.astype(np.int64, copy=False)
    n = len(fragments)
    if p.size and (p.min() < 0 or p.max() >= n):
        raise IndexError(f"pair index out of range for {n} fragments")
    m = p.shape[0]
    tm_a = np.empty(m, dtype=np.float64)
    tm_b = np.empty(m, dtype=np.float64)
    rmsd = np.empty(m, dtype=np.float64)
    n_ali = np.empty(m, dtype=np.int32)
    ident = np.empty(m, dtype=np.float64)
    cov_a = np.empty(m, dtype=np.float64)
    cov_b = np.empty(m, dtype=np.float64)
    # prepare each fragment once (arrays and cleaned sequences are reused across its pairs)
    coords: dict[int, np.ndarray] = {}
    seqs: dict[int, str] = {}
    for k in np.unique(p):
        k = int(k)
        name = f"fragment {fragments.ids[k]}"
        coords[k] = _prepare_coords(fragments.coords[k], name)
        seqs[k] = _prepare_seq(fragments.sequences[k], coords[k].shape[0], name)
    for r, (i, j) in enumerate(p.tolist()):
        tm_a[r], tm_b[r], rmsd[r], n_ali[r], ident[r], cov_a[r], cov_b[r] = _read_result(
            _tm_align(coords[i], coords[j], seqs[i], seqs[j])
        )
    return {
        "i": p[:, 0].copy(),
        "j": p[:, 1].copy(),
        "tm_a": tm_a,
        "tm_b": tm_b,
        "rmsd": rmsd,
        "aligned_length": n_ali,
        "seq_identity": ident,
        "cov_a": cov_a,
        "cov_b": cov_b,
    }


def align_pairs_table(fragments: FragmentSet, pairs: np.ndarray) -> pa.Table:
    """`align_pairs` as a table with query_id / target_id (fragment ids of i / j) in front."""
    cols = align_pairs(fragments, pairs)
    ids = np.asarray(fragments.ids, dtype=object)
    return pa.table(
        {
            "query_id": pa.array(ids[cols["i"]].tolist() if len(cols["i"]) else [], type=pa.string()),
            "target_id": pa.array(ids[cols["j"]].tolist() if len(cols["j"]) else [], type=pa.string()),
            **{name: pa.array(cols[name]) for name in _COLUMNS},
        }
    )
