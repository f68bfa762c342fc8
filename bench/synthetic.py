"""Synthetic fragment sets of any size, built from real fragments (for the engine's cost curve).

Sources: the passed fragments of the shared AlphaFold DB and structure sets (fragmented once with
the default configuration), plus the two halves of every source longer than 200 residues (distinct
structural units of at least 100 residues), so that there are a few thousand families.

A set of N fragments draws each fragment's family from a Zipf law over the families (exponent
`ZIPF`, chosen so that at N = 10^5 the 1,000 largest families hold about 70% of the fragments, as
in the method's MGnify clustering), then makes the member from the family's source with these
perturbations (seeded per member):

- rigid motion: a random rotation and a translation of up to 50 A;
- coordinate noise: Gaussian, sigma drawn in [0.2, 0.8] A per member;
- terminal trims: up to 6% of the residues at each end;
- loop deletions: 0-2 deletions of 2-4 residues away from the ends.

The first member of a family is the source itself. 3Di states are computed from the perturbed
C-alpha trace (`encode_3di_ca`, the approximation the prefilter uses without a backbone), for every
member alike, so k-mers see what the perturbation did. `check_families` TM-aligns a sample of
within-family pairs to show that they really reach min-TM 0.7.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
from scipy.spatial.transform import Rotation

from rayfold.align.alphabet import encode_3di_ca
from rayfold.io.storage import write_parquet
from rayfold.model.fragset import FragmentSet

ZIPF = 0.6
PART_ROWS = 500


def source_pool(fragments: FragmentSet) -> list[tuple[str, np.ndarray, str, float]]:
    """(name, C-alpha, sequence, mean pLDDT) of every source and of the halves of long ones."""
    pool = []
    for k in range(len(fragments)):
        ca, seq, plddt = fragments.coords[k], fragments.sequences[k], float(fragments.mean_plddt[k])
        pool.append((fragments.ids[k], ca, seq, plddt))
        if len(ca) > 200:
            half = len(ca) // 2
            pool.append((fragments.ids[k] + "_h1", ca[:half], seq[:half], plddt))
            pool.append((fragments.ids[k] + "_h2", ca[half:], seq[half:], plddt))
    return pool


def family_sizes(n: int, families: int, seed: int) -> np.ndarray:
    """Members per family: n draws from a Zipf law over `families` (a seeded permutation of the pool)."""
    weights = 1.0 / np.arange(1, families + 1) ** ZIPF
    rng = np.random.default_rng(seed)
    return rng.multinomial(n, weights / weights.sum())


def perturb(ca: np.ndarray, seq: str, rng: np.random.Generator) -> tuple[np.ndarray, str]:
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
    xyz = xyz + rng.normal(scale=rng.uniform(0.2, 0.8), size=xyz.shape)
    return xyz, "".join(c for c, k in zip(seq, keep.tolist()) if k)


def write_set(pool: list, n: int, out: Path, seed: int = 0) -> dict:
    """Write N synthetic fragments as a fragments dataset under `out`; returns family facts."""
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(pool))
    sizes = family_sizes(n, len(pool), seed)
    rows: list[dict] = []
    family_of: list[int] = []
    part = 0

    def flush() -> None:
        nonlocal part, rows
        if rows:
            table = pa.Table.from_pylist(rows, schema=SCHEMA)
            write_parquet(table, str(out / f"part-{part:05d}.parquet"))
            part += 1
            rows = []

    for family, size in enumerate(sizes.tolist()):
        name, ca, seq, plddt = pool[int(order[family])]
        for member in range(size):
            member_rng = np.random.default_rng([seed, family, member])
            xyz, s = (ca - ca.mean(axis=0), seq) if member == 0 else perturb(ca, seq, member_rng)
            rows.append({"fragment_id": f"syn{family:05d}_{member:06d}_f1", "n_residues": len(xyz),
                         "mean_plddt": float(np.clip(plddt + member_rng.normal(scale=2.0), 65, 100)),
                         "passed": True, "sequence": s, "states_3di": encode_3di_ca(xyz),
                         "ca_coords": xyz.astype(np.float32).tolist(), "source": name})
            family_of.append(family)
            if len(rows) >= PART_ROWS:
                flush()
    flush()
    sizes_sorted = np.sort(sizes)[::-1]
    return {"fragments": n, "families": int((sizes > 0).sum()), "largest": int(sizes_sorted[0]),
            "top1000_share": float(sizes_sorted[:1000].sum() / n), "family_of": np.array(family_of)}


SCHEMA = pa.schema([
    pa.field("fragment_id", pa.string()), pa.field("n_residues", pa.int32()), pa.field("mean_plddt", pa.float32()),
    pa.field("passed", pa.bool_()), pa.field("sequence", pa.string()), pa.field("states_3di", pa.string()),
    pa.field("ca_coords", pa.list_(pa.list_(pa.float32(), 3))), pa.field("source", pa.string()),
])
