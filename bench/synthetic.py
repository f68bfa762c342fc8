"""Synthetic fragment sets of any size, built from real fragments (for the engine's cost curve).

Sources: the passed fragments of the shared AlphaFold DB and structure sets (fragmented once with
the default configuration), the two halves of every source longer than 200 residues (distinct
structural units of at least 100 residues), and windows of 50-90 residues cut from every source of
at least 100 residues, each window starting at least half its length after the last one (so two
windows of one source overlap by at most half and cannot be one cluster: coverage 0.8 and min-TM
0.7 both need more). The shared sets hold about a thousand distinct units; the windows make the long
tail of small, distinct families that a real set has (without them the 1,000 largest families held
100% of every set).

A set of N fragments draws each fragment's family from a Zipf law over the families, its exponent
solved so that the 1,000 largest families hold `TOP1000_SHARE` (70%) of the draws, as in the
method's MGnify clustering; the families are a seeded permutation of the pool (whole fragments,
halves and windows mixed). Each member is made from the family's source with these perturbations
(seeded per member):

- rigid motion: a random rotation and a translation of up to 50 A;
- coordinate noise: Gaussian, sigma drawn in [0.2, 0.8] A per member, scaled down by d0(L)/d0(150)
  for sources under 150 residues (TM-score's distance scale d0 shrinks with length: unscaled, it
  left 57 of 200 sampled within-family pairs of a 10^4 set below min-TM 0.7; scaled, 0 of 200);
- terminal trims: up to 6% of the residues at each end;
- loop deletions: 0-2 deletions of 2-4 residues away from the ends.

- 3Di states: the source's own (computed from its full backbone when it was fragmented), with the
  same trims and deletions, and a share of the states (drawn in [0.1, 0.35] per member)
  substituted, each by a letter drawn with probability proportional to 2^(score/2) in Foldseek's
  3Di substitution matrix (half-bit units), so the divergence looks like that between homologs.
  (States recomputed from the noisy C-alpha trace were tried first: isotropic noise of 0.2-0.8 A
  scrambles C-alpha-derived 3Di far more than real homologs differ, down to 0-12 shared 6-mers of
  ~150 between a source and its copy, while real PF04034 members share enough that 1,196 of 1,221
  find a family centre.)

The first member of a family is the source itself. `linear_engine.check_families` TM-aligns a
sample of within-family pairs to show that they really reach min-TM 0.7.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
from scipy.spatial.transform import Rotation

from rayfold.align.prefilter import MAT3DI
from rayfold.io.storage import write_parquet
from rayfold.model.fragset import FragmentSet

TOP1000_SHARE = 0.70
PART_ROWS = 500
WINDOW = (50, 90)  # residues of a tail window


LETTERS = "ACDEFGHIKLMNPQRSTVWY"  # MAT3DI order
_SUBSTITUTE = 2.0 ** (MAT3DI.astype(np.float64) / 2.0)
np.fill_diagonal(_SUBSTITUTE, 0.0)
_SUBSTITUTE /= _SUBSTITUTE.sum(axis=1, keepdims=True)


def source_pool(fragments: FragmentSet, seed: int = 0) -> list[tuple[str, np.ndarray, str, str, float]]:
    """(name, C-alpha, sequence, 3Di, mean pLDDT) of every source, of the halves of long ones and of
    the tail windows."""
    assert fragments.states_3di is not None
    rng = np.random.default_rng(seed)
    pool = []
    for k in range(len(fragments)):
        ca, seq, plddt = fragments.coords[k], fragments.sequences[k], float(fragments.mean_plddt[k])
        states, name = fragments.states_3di[k], fragments.ids[k]
        pool.append((name, ca, seq, states, plddt))
        if len(ca) > 200:
            h = len(ca) // 2
            pool.append((name + "_h1", ca[:h], seq[:h], states[:h], plddt))
            pool.append((name + "_h2", ca[h:], seq[h:], states[h:], plddt))
        if len(ca) >= 100:
            start = int(rng.integers(0, 20))
            while True:
                width = int(rng.integers(WINDOW[0], WINDOW[1] + 1))
                if start + width > len(ca):
                    break
                cut = slice(start, start + width)
                pool.append((f"{name}_w{start}", ca[cut], seq[cut], states[cut], plddt))
                start += -(-width // 2)
    return pool


def zipf_exponent(families: int, top_share: float = TOP1000_SHARE, top: int = 1000) -> float:
    """The exponent s for which the `top` largest of `families` Zipf weights 1/k^s hold `top_share`."""
    if families <= top:
        return 0.0
    k = np.arange(1, families + 1, dtype=np.float64)
    lo, hi = 0.0, 4.0
    for _ in range(60):
        s = (lo + hi) / 2
        w = k ** -s
        lo, hi = (s, hi) if w[:top].sum() / w.sum() < top_share else (lo, s)
    return (lo + hi) / 2


def mutate_states(states: str, rng: np.random.Generator) -> str:
    """A share of the states substituted by the 3Di matrix's odds (letters outside it kept)."""
    out = list(states)
    rate = rng.uniform(0.1, 0.35)
    for k in np.flatnonzero(rng.random(len(out)) < rate).tolist():
        i = LETTERS.find(out[k])
        if i >= 0:
            out[k] = LETTERS[int(rng.choice(20, p=_SUBSTITUTE[i]))]
    return "".join(out)


def family_sizes(n: int, families: int, seed: int) -> np.ndarray:
    """Members per family: n draws from a Zipf law over `families` (a seeded permutation of the pool)."""
    weights = 1.0 / np.arange(1, families + 1) ** zipf_exponent(families)
    rng = np.random.default_rng(seed)
    return rng.multinomial(n, weights / weights.sum())


def _d0(length: int) -> float:
    return 1.24 * (max(length, 19) - 15) ** (1 / 3) - 1.8


def perturb(ca: np.ndarray, seq: str, states: str, rng: np.random.Generator) -> tuple[np.ndarray, str, str]:
    n = len(ca)
    keep = np.ones(n, bool)
    keep[: rng.integers(0, int(0.06 * n) + 1)] = False
    keep[n - rng.integers(0, int(0.06 * n) + 1):] = False
    for _ in range(rng.integers(0, 3)):
        width = int(rng.integers(2, 5))
        start = int(rng.integers(10, max(11, n - 10 - width)))
        keep[start:start + width] = False
    xyz = ca[keep] - ca[keep].mean(axis=0)
    xyz = Rotation.random(random_state=int(rng.integers(2**31))).apply(xyz) + rng.uniform(-50, 50, size=3)
    xyz = xyz + rng.normal(scale=rng.uniform(0.2, 0.8) * min(1.0, _d0(n) / _d0(150)), size=xyz.shape)
    kept = keep.tolist()
    return (xyz, "".join(c for c, k in zip(seq, kept) if k),
            mutate_states("".join(c for c, k in zip(states, kept) if k), rng))


def write_set(pool: list, n: int, out: Path, seed: int = 0) -> dict:
    """Write N synthetic fragments as a fragments dataset under `out`; returns family facts."""
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(pool))
    sizes = family_sizes(n, len(pool), seed)
    rows: list[dict] = []
    part = 0

    def flush() -> None:
        nonlocal part, rows
        if rows:
            table = pa.Table.from_pylist(rows, schema=SCHEMA)
            write_parquet(table, str(out / f"part-{part:05d}.parquet"))
            part += 1
            rows = []

    for family, size in enumerate(sizes.tolist()):
        name, ca, seq, states, plddt = pool[int(order[family])]
        for member in range(size):
            member_rng = np.random.default_rng([seed, family, member])
            xyz, s, st = (ca - ca.mean(axis=0), seq, states) if member == 0 else perturb(ca, seq, states, member_rng)
            rows.append({"fragment_id": f"syn{family:05d}_{member:06d}_f1", "n_residues": len(xyz),
                         "mean_plddt": float(np.clip(plddt + member_rng.normal(scale=2.0), 65, 100)),
                         "passed": True, "sequence": s, "states_3di": st,
                         "ca_coords": xyz.astype(np.float32).tolist(), "source": name})
            if len(rows) >= PART_ROWS:
                flush()
    flush()
    sizes_sorted = np.sort(sizes)[::-1]
    return {"fragments": n, "families": int((sizes > 0).sum()), "largest": int(sizes_sorted[0]),
            "top1000_share": float(sizes_sorted[:1000].sum() / n)}


SCHEMA = pa.schema([
    pa.field("fragment_id", pa.string()), pa.field("n_residues", pa.int32()), pa.field("mean_plddt", pa.float32()),
    pa.field("passed", pa.bool_()), pa.field("sequence", pa.string()), pa.field("states_3di", pa.string()),
    pa.field("ca_coords", pa.list_(pa.list_(pa.float32(), 3))), pa.field("source", pa.string()),
])
