"""Sampling weights between "every fragment equal" and "every cluster equal".

Clusters of predicted-structure fragments are very skewed: a few large clusters hold most
fragments. Sampling fragments uniformly mostly revisits those; sampling clusters uniformly gives the
smallest ones too much influence. The balancing exponent gamma (`cluster_size_exponent`) sits in
between: a cluster of N fragments gets aggregate sampling mass proportional to N**gamma
(gamma = 1: the dataset's own distribution; gamma = 0: every cluster equal), and each of its
fragments gets that mass divided by N. Weights are normalised to sum to 1.

Diagnostics over a grid of gamma: effective clusters, the inverse Simpson number 1 / sum p_i**2 of
the cluster probabilities p_i (how many equally weighted clusters would give the same diversity),
and the mass the 100 / 1,000 largest clusters receive. Whether singletons are in the denominator
changes both, so the table has both populations: 'all' (every cluster, singletons included: what a
training loader over all clustered fragments sees) and 'multi_member' (singleton clusters left out,
as in the method's published figures).

Pure NumPy/Arrow functions, plus `write_sampling` / `sample_fragments` for a run folder and
`rayfold.runtime.datasets.sample_dataset` gives the same draw as a Ray Dataset.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from rayfold.analytics.stats import cluster_sizes
from rayfold.io import storage as io
from rayfold.io.runfolder import RunFolder
from rayfold.model import schema

__all__ = [
    "DEFAULT_SAMPLING",
    "POPULATIONS",
    "SamplingConfig",
    "cluster_probabilities",
    "draw_sample",
    "effective_clusters",
    "fragment_weights",
    "gamma_table",
    "inverse_simpson",
    "read_weights",
    "sample_fragments",
    "top_mass",
    "write_sampling",
]

POPULATIONS = ("all", "multi_member")
DEFAULT_GRID = tuple(round(0.1 * i, 1) for i in range(11))


def _parse_grid(grid: Any) -> tuple[float, ...]:
    """A grid from a sequence, or from text: '0,0.25,1' or 'start:stop:step' (stop included)."""
    if isinstance(grid, str):
        text = grid.strip()
        if ":" in text:
            start, stop, step = (float(x) for x in text.split(":"))
            if step <= 0:
                raise ValueError("grid step must be > 0")
            count = math.floor((stop - start) / step + 1e-9) + 1
            return tuple(round(start + i * step, 10) for i in range(count))
        return tuple(float(x) for x in text.split(",") if x.strip())
    return tuple(float(x) for x in grid)


@dataclass(frozen=True)
class SamplingConfig:
    """How fragments are weighted for sampling (``--set`` friendly: grid may be '0:1:0.1' or '0,0.5,1')."""

    gamma: float = 0.5  # cluster_size_exponent: a cluster's mass ~ N**gamma (0.5 = the method's start)
    grid: tuple[float, ...] = field(default=DEFAULT_GRID)  # gammas of OUT/sampling/ (gamma is added)
    population: str = "all"  # weights over 'all' clusters or 'multi_member' ones (singletons weight 0)
    seed: int = 0  # seed of the preview draw in the report (and a default for callers)

    def __post_init__(self) -> None:
        grid = _parse_grid(self.grid)
        if not all(math.isfinite(g) for g in (*grid, self.gamma)):
            raise ValueError("gamma and grid values must be finite")
        if self.population not in POPULATIONS:
            raise ValueError(f"population must be one of {POPULATIONS}, not {self.population!r}")
        object.__setattr__(self, "grid", tuple(sorted({*grid, float(self.gamma)})))


DEFAULT_SAMPLING = SamplingConfig()


# --------------------------------------------------------------------------------------------
# pure functions over cluster sizes


def cluster_probabilities(sizes: np.ndarray | Sequence[int], gamma: float) -> np.ndarray:
    """p_i = N_i**gamma / sum_j N_j**gamma for cluster sizes N_i >= 1 (float64, same order)."""
    s = np.asarray(sizes, dtype=np.float64)
    if s.size == 0:
        return s
    if np.any(s < 1):
        raise ValueError("cluster sizes must be >= 1")
    # scale by the largest size first: no overflow for large gamma, exact 1.0 for gamma = 0
    mass = (s / s.max()) ** float(gamma)
    return mass / mass.sum()


def inverse_simpson(probabilities: np.ndarray) -> float:
    """1 / sum p_i**2: the number of equally weighted clusters with the same diversity (0 if empty)."""
    p = np.asarray(probabilities, dtype=np.float64)
    if p.size == 0:
        return 0.0
    return float(1.0 / np.dot(p, p))


def effective_clusters(sizes: np.ndarray | Sequence[int], gamma: float) -> float:
    """Inverse Simpson number of the cluster probabilities at `gamma`.

    gamma = 0 gives the number of clusters; gamma = 1 gives (sum N)**2 / sum N**2.
    """
    return inverse_simpson(cluster_probabilities(sizes, gamma))


def top_mass(sizes: np.ndarray | Sequence[int], gamma: float, k: int) -> float:
    """Sampling mass of the `k` largest clusters at `gamma` (1.0 when there are <= k clusters)."""
    s = np.asarray(sizes, dtype=np.float64)
    if s.size == 0:
        return 0.0
    p = cluster_probabilities(s, gamma)
    order = np.argsort(-s, kind="stable")
    return float(p[order[:k]].sum())


def gamma_table(sizes: np.ndarray | Sequence[int], grid: Sequence[float]) -> pa.Table:
    """`schema.SAMPLING` rows for each gamma of `grid` and each population ('all', 'multi_member')."""
    s = np.asarray(sizes, dtype=np.int64)
    rows = []
    for population in POPULATIONS:
        pop = s if population == "all" else s[s >= 2]
        for g in grid:
            p = cluster_probabilities(pop, g)
            rows.append({
                "gamma": float(g),
                "population": population,
                "clusters": len(pop),
                "fragments": int(pop.sum()),
                "effective_clusters": inverse_simpson(p),
                "top100_mass": top_mass(pop, g, 100),
                "top1000_mass": top_mass(pop, g, 1000),
                "largest_cluster_mass": float(p.max()) if p.size else 0.0,
            })
    return pa.Table.from_pylist(rows, schema=schema.SAMPLING)


# --------------------------------------------------------------------------------------------
# fragment weights and draws


def fragment_weights(members: pa.Table, gamma: float, *, population: str = "all") -> pa.Table:
    """`schema.WEIGHTS` for the clustered fragments in `members` (fragment_id, cluster_id).

    weight = p(cluster) / N(cluster), so a cluster's fragments share its mass equally and all
    weights sum to 1. With population 'multi_member' fragments of singleton clusters are left out.
    Rows are sorted by fragment_id (a canonical order, whatever the part files' order).
    """
    if population not in POPULATIONS:
        raise ValueError(f"population must be one of {POPULATIONS}, not {population!r}")
    # canonical order first: the same content gives bit-identical weights whatever the part order
    members = members.select(["fragment_id", "cluster_id"]).sort_by([("fragment_id", "ascending"),
                                                                      ("cluster_id", "ascending")])
    if members.num_rows == 0:
        return schema.WEIGHTS.empty_table()
    encoded = pc.dictionary_encode(members.column("cluster_id")).combine_chunks()
    index = encoded.indices.to_numpy(zero_copy_only=False).astype(np.int64)
    sizes = np.bincount(index, minlength=len(encoded.dictionary))
    member_size = sizes[index]
    keep = member_size >= (2 if population == "multi_member" else 1)
    present = sizes >= (2 if population == "multi_member" else 1)
    p = np.zeros(len(sizes), dtype=np.float64)
    p[present] = cluster_probabilities(sizes[present], gamma)
    weight = p[index] / member_size
    table = pa.Table.from_arrays(
        [
            members.column("fragment_id"),
            members.column("cluster_id"),
            pa.array(member_size, pa.int64()),
            pa.array(weight, pa.float64()),
            pa.array(np.full(members.num_rows, float(gamma)), pa.float64()),
            pa.array([population] * members.num_rows, pa.string()),
        ],
        schema=schema.WEIGHTS,
    )
    return table.filter(pa.array(keep))


def draw_sample(weights_table: pa.Table, n: int, seed: int, replace: bool = True) -> pa.Table:
    """A reproducible weighted sample of `n` fragments (`schema.SAMPLE`), in draw order.

    Rows are put in fragment_id order before drawing and the draw uses
    ``numpy.random.default_rng(seed).choice``, so the same table content and seed give the same
    rows whatever order the table came in. Without `replace`, `n` may not exceed the number of
    fragments of non-zero weight.
    """
    if n < 0:
        raise ValueError("n must be >= 0")
    table = weights_table.select(["fragment_id", "cluster_id", "weight"]).sort_by("fragment_id")
    w = table.column("weight").to_numpy().astype(np.float64, copy=False)
    if n and (w.size == 0 or not np.isfinite(w).all() or w.sum() <= 0 or (w < 0).any()):
        raise ValueError("weights must be finite, >= 0 and not all 0")
    if not replace and n > int((w > 0).sum()):
        raise ValueError(f"cannot draw {n} fragments without replacement from {int((w > 0).sum())} with weight > 0")
    rng = np.random.default_rng(seed)
    idx = rng.choice(w.size, size=n, replace=replace, p=w / w.sum()) if n else np.zeros(0, dtype=np.int64)
    picked = table.take(pa.array(idx, pa.int64()))
    return pa.Table.from_arrays(
        [pa.array(np.arange(n, dtype=np.int64)), picked.column("fragment_id"), picked.column("cluster_id"),
         picked.column("weight")],
        schema=schema.SAMPLE,
    )


# --------------------------------------------------------------------------------------------
# run folders


def write_sampling(
    out: str,
    config: SamplingConfig = DEFAULT_SAMPLING,
    *,
    members: pa.Table | None = None,
    storage_options: dict[str, Any] | None = None,
) -> tuple[pa.Table, pa.Table]:
    """Replace ``OUT/sampling/`` (the gamma grid) and ``OUT/weights/`` (at `config.gamma`).

    One part file each, so re-runs never duplicate rows. Returns (sampling, weights).
    """
    if members is None:
        members = RunFolder(out, storage_options).table("members", columns=["fragment_id", "cluster_id"])
    members = members if members is not None else schema.MEMBERS.empty_table()
    sampling = gamma_table(cluster_sizes(members.column("cluster_id")), config.grid)
    weights = fragment_weights(members, config.gamma, population=config.population)
    io.write_parquet(sampling, io.join_uri(out, "sampling", "part-0.parquet"), storage_options)
    io.write_parquet(weights, io.join_uri(out, "weights", "part-0.parquet"), storage_options)
    return sampling, weights


def read_weights(
    out: str,
    gamma: float,
    *,
    population: str | None = None,
    storage_options: dict[str, Any] | None = None,
) -> pa.Table:
    """Weights at `gamma`: ``OUT/weights/`` when it was made with that gamma (and population), else
    recomputed from ``OUT/members/`` (population: the stored one, else 'all')."""
    stored = RunFolder(out, storage_options).table("weights")
    stored_population = None
    if stored is not None and stored.num_rows and "population" in stored.column_names:
        stored_population = stored.column("population")[0].as_py()
    want_population = population or stored_population or "all"
    if (
        stored is not None
        and stored.num_rows
        and "gamma" in stored.column_names
        and bool(np.all(np.abs(stored.column("gamma").to_numpy() - float(gamma)) <= 1e-12))
        and stored_population == want_population
    ):
        return stored
    members = RunFolder(out, storage_options).table("members", columns=["fragment_id", "cluster_id"])
    if members is None:
        raise FileNotFoundError(f"{io.join_uri(out, 'members')}: no clustering results to weight")
    return fragment_weights(members, gamma, population=want_population)


def sample_fragments(
    out: str,
    *,
    gamma: float,
    n: int,
    seed: int,
    storage_options: dict[str, Any] | None = None,
    replace: bool = True,
    population: str | None = None,
) -> pa.Table:
    """`n` fragments of run `out` drawn at `gamma` with `seed` (`schema.SAMPLE`), for `rayfold sample`.

    Uses ``OUT/weights/`` when its gamma matches, else recomputes the weights from ``OUT/members/``.
    """
    return draw_sample(read_weights(out, gamma, population=population, storage_options=storage_options),
                       n, seed, replace=replace)
