"""Recursive spectral bisection of a C-alpha k-nearest-neighbour graph.

A compact domain is a dense region of the residue graph; a linker between domains is a narrow
bridge. The Fiedler vector of the normalized Laplacian L = I - D^-1/2 W D^-1/2 changes sign across
the weakest bridge, and its eigenvalue (the algebraic connectivity) says how weak that bridge is.

Two solvers give the same partitions: `dense` (numpy eigh on the full matrix, the straightforward
reference, O(n^3)) and `sparse` (scipy eigsh in shift-invert mode around a small negative shift,
which factorises the sparse Laplacian once and converges to the two smallest eigenvalues in a few
iterations). Plain `eigsh(which='SM')` is avoided: it returned the wrong eigenvalue at n >= 1000.
Sub-problems below `dense_below` nodes go to the dense solver, where it is the faster one.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import scipy.sparse as sp
from scipy.sparse.csgraph import connected_components
from scipy.sparse.linalg import eigsh
from scipy.spatial import cKDTree

SOLVERS = ("sparse", "dense")


@dataclass(frozen=True)
class SpectralResult:
    """Leaves of the recursion (index arrays into the input, sorted) and the linker indices cut out."""

    leaves: list[np.ndarray]
    linkers: np.ndarray
    fiedler_values: list[float] = field(default_factory=list)  # one per accepted split, for diagnostics


def knn_graph(coords: np.ndarray, k: int, sigma: float) -> sp.csr_matrix:
    """Symmetric k-NN graph with Gaussian weights exp(-d^2 / 2 sigma^2); an edge exists if either end picked it."""
    n = len(coords)
    k_eff = min(k, n - 1)
    if k_eff < 1:
        return sp.csr_matrix((n, n))
    distances, neighbours = cKDTree(coords).query(coords, k=k_eff + 1)
    rows = np.repeat(np.arange(n), k_eff)
    cols = neighbours[:, 1:].ravel()
    weights = np.exp(-(distances[:, 1:].ravel() ** 2) / (2.0 * sigma**2))
    w = sp.csr_matrix((weights, (rows, cols)), shape=(n, n))
    return w.maximum(w.T).tocsr()


def _normalized_laplacian(w: sp.csr_matrix) -> sp.csr_matrix:
    degree = np.asarray(w.sum(axis=1)).ravel()
    inv_sqrt = np.zeros_like(degree)
    nonzero = degree > 0
    inv_sqrt[nonzero] = 1.0 / np.sqrt(degree[nonzero])  # an isolated node keeps L_ii = 1, far from 0
    d = sp.diags(inv_sqrt)
    return (sp.identity(w.shape[0], format="csr") - d @ w @ d).tocsr()


def fiedler(w: sp.csr_matrix, solver: str = "sparse", dense_below: int = 200) -> tuple[float, np.ndarray]:
    """Second-smallest eigenpair of the normalized Laplacian of `w`."""
    n = w.shape[0]
    lap = _normalized_laplacian(w)
    if solver == "dense" or n < dense_below:
        values, vectors = np.linalg.eigh(lap.toarray())
        return float(values[1]), vectors[:, 1]
    if solver != "sparse":
        raise ValueError(f"unknown solver {solver!r}; choose one of {SOLVERS}")
    # A fixed start vector makes ARPACK deterministic run to run.
    v0 = np.linspace(1.0, 2.0, n)
    values, vectors = eigsh(lap.tocsc(), k=2, sigma=-1e-3, which="LM", v0=v0, tol=1e-10)
    order = np.argsort(values)
    return float(values[order[1]]), vectors[:, order[1]]


def recursive_bisection(
    coords: np.ndarray,
    *,
    k: int = 15,
    sigma: float = 8.0,
    connectivity_threshold: float = 0.05,
    scaled_threshold: float | None = None,
    boundary_size: int = 4,
    min_partition_size: int = 50,
    solver: str = "sparse",
    dense_below: int = 200,
) -> SpectralResult:
    """Split `coords` (N, 3) at spectral bottlenecks until every part has lambda_2 > threshold.

    `scaled_threshold`, when given, also stops at lambda_2 * N^(2/3) > scaled_threshold: lambda_2 of
    a compact globule falls as N^(-2/3), so a fixed threshold splits every large domain in two.
    The graph is built once over all of `coords`; each part is split on its induced sub-graph.
    A part whose sub-graph falls apart into several connected components is split into those
    components without cutting any linker (the Fiedler vector is not unique there, so eigen-solvers
    would disagree); parts smaller than `min_partition_size` are leaves.
    """
    coords = np.asarray(coords, dtype=np.float64)
    if coords.ndim != 2 or coords.shape[1] != 3:
        raise ValueError("coords must have shape (N, 3)")
    n = len(coords)
    w_full = knn_graph(coords, k, sigma) if n >= 2 else sp.csr_matrix((n, n))
    leaves: list[np.ndarray] = []
    linkers: list[int] = []
    values: list[float] = []
    stack = [np.arange(n)]
    while stack:
        idx = stack.pop()
        if len(idx) < min_partition_size:
            leaves.append(idx)
            continue
        sub = w_full[idx][:, idx].tocsr()
        n_comp, labels = connected_components(sub, directed=False)
        if n_comp > 1:
            # Components in order of their first residue, pushed so the first is processed first.
            parts = [idx[labels == c] for c in range(n_comp)]
            stack.extend(sorted(parts, key=lambda p: p[0], reverse=True))
            continue
        value, vector = fiedler(sub, solver=solver, dense_below=dense_below)
        if value > connectivity_threshold or (
            scaled_threshold is not None and value * len(idx) ** (2.0 / 3.0) > scaled_threshold
        ):
            leaves.append(idx)
            continue
        values.append(value)
        boundary = np.argsort(np.abs(vector), kind="stable")[:boundary_size]
        linkers.extend(idx[boundary].tolist())
        keep = np.ones(len(idx), dtype=bool)
        keep[boundary] = False
        side_a = idx[keep & (vector < 0)]
        side_b = idx[keep & (vector >= 0)]
        for part in sorted((side_a, side_b), key=lambda p: p[0] if len(p) else n, reverse=True):
            if len(part):
                stack.append(part)
    leaves.sort(key=lambda p: p[0])
    return SpectralResult(leaves=leaves, linkers=np.array(sorted(linkers), dtype=np.int64), fiedler_values=values)
