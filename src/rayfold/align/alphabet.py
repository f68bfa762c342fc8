"""3Di structural alphabet (Foldseek's 20 states) from backbone coordinates, via mini3di.

`encode_3di(n, ca, c, cb)` gives one letter per residue, exactly as `mini3di.Encoder` (a NumPy port
of Foldseek's encoder) writes it: ``ACDEFGHIKLMNPQRSTVWY``. Residues whose descriptors cannot be
computed (the first and last residue of the chain, a residue next to one with a missing N, CA or C,
or whose nearest partner is such a residue) get Foldseek's invalid state, state 2, which is the
letter ``D`` - the same convention as Foldseek, so strings compare and score like Foldseek's
(that is why 3Di strings often start and end with ``D``). A missing CB (glycine) is rebuilt from
N, CA and C, as Foldseek does.

Encode each fragment on its own residues (the 3Di state of a residue depends on its nearest
neighbour in space, so it can change when the rest of the chain is cut away - as it would in
Foldseek run on the fragment file). The cost grows with length squared (a distance matrix):
~10 us per residue for a domain-sized fragment.

`encode_3di_ca(ca)` is a C-alpha-only approximation, used when only C-alpha traces are at hand
(`rayfold.model.fragset.FragmentSet` keeps C-alpha only): N and C are placed at ideal positions
computed from the neighbouring C-alphas, then encoded with mini3di. Its states agree with the
full-backbone ones for ~85% of residues on AlphaFold models (81-90% per chain on 30
Mycoplasma models; checked in tests/align/test_alphabet.py); good enough for a k-mer prefilter that
compares like with like, never mix the two encodings in one comparison.
"""

from __future__ import annotations

import threading

import numpy as np

__all__ = [
    "ALPHABET_3DI",
    "INVALID_STATE_LETTER",
    "encode_3di",
    "encode_3di_ca",
    "encode_fragment",
    "encode_states",
]

ALPHABET_3DI = "ACDEFGHIKLMNPQRSTVWY"  # state i -> letter i (mini3di / Foldseek order)
INVALID_STATE_LETTER = "D"  # Foldseek's invalid state (2)

_LOCAL = threading.local()


def _encoder():
    """One mini3di Encoder per process (and thread: the encoder is not documented thread-safe)."""
    enc = getattr(_LOCAL, "encoder", None)
    if enc is None:
        from mini3di import Encoder  # imported lazily: loads the network weights once

        enc = Encoder()
        _LOCAL.encoder = enc
    return enc


def _as_xyz(a: np.ndarray, name: str, k: int | None) -> np.ndarray:
    arr = np.asarray(a, dtype=np.float32)
    if arr.ndim != 2 or arr.shape[1] != 3:
        raise ValueError(f"{name} must be a (k, 3) array, got shape {arr.shape}")
    if k is not None and arr.shape[0] != k:
        raise ValueError(f"{name} has {arr.shape[0]} rows, expected {k}")
    return arr


def encode_states(n: np.ndarray, ca: np.ndarray, c: np.ndarray, cb: np.ndarray) -> np.ndarray:
    """3Di state numbers (uint8, 0-19) per residue; invalid residues get state 2 (Foldseek's)."""
    ca = _as_xyz(ca, "ca", None)
    k = ca.shape[0]
    n, c, cb = _as_xyz(n, "n", k), _as_xyz(c, "c", k), _as_xyz(cb, "cb", k)
    if k == 0:
        return np.zeros(0, dtype=np.uint8)
    if k < 3:  # no residue has both sequence neighbours: every state is invalid
        return np.full(k, 2, dtype=np.uint8)
    return _states(_encoder(), ca, cb, n, c)


def _states(encoder, ca: np.ndarray, cb: np.ndarray, n: np.ndarray, c: np.ndarray) -> np.ndarray:
    """`encoder.encode_atoms(...).filled()`, with the nearest-partner search on plain arrays when
    no residue lacks N, CA or C (nearly always): mini3di runs it on masked arrays, whose boolean
    mask product made it 60% of the 3Di time. A chain with such a residue takes mini3di's path."""
    features = encoder.feature_encoder
    centres = features.vc_encoder.encode_atoms(ca, cb, n, c)  # masked where N, CA or C is missing
    missing = np.ma.getmaskarray(centres)[:, 0]
    if missing.any():
        return np.asarray(encoder.encode_atoms(ca=ca, cb=cb, n=n, c=c).filled(), dtype=np.uint8)
    partner = nearest_partner(np.ma.getdata(centres))
    descriptors = features._calc_conformation_descriptors(ca, partner)
    invalid = features._create_descriptor_mask(missing, partner)[:, 0]
    states = np.asarray(encoder.vae_encoder(descriptors), dtype=np.uint8)
    states[invalid] = encoder._INVALID_STATE
    return states


def nearest_partner(centres: np.ndarray) -> np.ndarray:
    """Each residue's nearest other residue by virtual centre, the first and last residue never
    chosen: mini3di's `PartnerIndexEncoder._find_residue_partners` step for step (the same float32
    arithmetic, NaN for the ends, the diagonal's inf made the largest finite value by nan_to_num),
    so the index, ties included, is the one mini3di gives."""
    r = np.sum(centres * centres, axis=-1).reshape(-1, 1)
    r[0] = r[-1] = np.nan
    distance = r - 2 * np.dot(centres, centres.T) + r.T
    distance[np.diag_indices_from(distance)] = np.inf
    return np.nan_to_num(distance, copy=False, nan=np.inf).argmin(axis=1)


_LETTERS = np.frombuffer(ALPHABET_3DI.encode("ascii"), dtype=np.uint8)


def encode_3di(n: np.ndarray, ca: np.ndarray, c: np.ndarray, cb: np.ndarray) -> str:
    """3Di string (one letter per residue) from N, CA, C, CB coordinates ((k, 3) each, NaN = missing)."""
    return _LETTERS[encode_states(n, ca, c, cb)].tobytes().decode("ascii")


def encode_fragment(entry, chain_id: str, residue_index: np.ndarray) -> str:
    """3Di string of the given residues of one chain of a parsed entry (see `encode_3di`)."""
    from rayfold.io.structure import backbone_atoms

    n, ca, c, cb = backbone_atoms(entry, chain_id, np.asarray(residue_index))
    return encode_3di(n, ca, c, cb)


# Backbone N and C around a C-alpha, in the frame of its two C-alpha bonds: N_i - CA_i (and C_i -
# CA_i) = a*u + b*w + q*(u x w)/|u x w| with u, w the unit vectors CA_i - CA_{i-1}, CA_{i+1} - CA_i.
# Least-squares fit over 30 AlphaFold models (Mycoplasma set, ~10k residues): RMS error 0.22 A
# for N, 0.51 A for C (C depends on psi, which the three C-alphas do not fix).
_N_COEF = (-1.3949, -0.1032, -0.3033)
_C_COEF = (0.1914, 1.3956, 0.0586)


def _ideal_nc(ca: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Approximate N and C positions from a C-alpha trace (NaN at the two chain ends)."""
    k = ca.shape[0]
    n = np.full((k, 3), np.nan, dtype=np.float64)
    c = np.full((k, 3), np.nan, dtype=np.float64)
    if k < 3:
        return n, c
    x = ca.astype(np.float64)
    u = x[1:-1] - x[:-2]
    w = x[2:] - x[1:-1]
    u /= np.linalg.norm(u, axis=1, keepdims=True) + 1e-9
    w /= np.linalg.norm(w, axis=1, keepdims=True) + 1e-9
    p = np.cross(u, w)
    p /= np.linalg.norm(p, axis=1, keepdims=True) + 1e-9
    a, b, q = _N_COEF
    n[1:-1] = x[1:-1] + a * u + b * w + q * p
    a, b, q = _C_COEF
    c[1:-1] = x[1:-1] + a * u + b * w + q * p
    # the ends: reuse the neighbour's frame so that the second and second-to-last residues keep a
    # valid descriptor (mini3di masks a residue when a neighbour has no N or C)
    n[0] = x[0] + (n[1] - x[1])
    c[0] = x[0] + (c[1] - x[1])
    n[-1] = x[-1] + (n[-2] - x[-2])
    c[-1] = x[-1] + (c[-2] - x[-2])
    return n, c


def encode_3di_ca(ca: np.ndarray) -> str:
    """Approximate 3Di string from C-alpha coordinates only (see the module docstring)."""
    ca = _as_xyz(ca, "ca", None)
    n, c = _ideal_nc(ca)
    cb = np.full_like(n, np.nan)
    return encode_3di(n, ca, c, cb)
