"""Recursive spectral bisection of a C-alpha k-nearest-neighbour graph.

A compact domain is a dense region of the residue graph; a linker between domains is a narrow
bridge. The Fiedler vector of the normalized Laplacian L = I - D^-1/2 W D^-1/2 changes sign across
the weakest bridge, and its eigenvalue (the algebraic connectivity) says how weak that bridge is.

Two solvers give the same partitions: `dense` (numpy eigh of the full matrix, every eigenpair: the
seed's straightforward method, O(n^3), kept as the reference) and `sparse`, rayfold's default:
ARPACK in shift-invert mode around a small negative shift, which factorises L + 1e-3 I once (an
LDL^T factorisation of its upper triangle by QDLDL with an AMD ordering, 0.8 ms against SuperLU's
1.3 ms on a 400-residue part; no pivoting, since L + 1e-3 I is positive definite). The null vector of L is known
(D^1/2 1) and is projected out of the operator, so ARPACK looks for one eigenpair (k=1), the
Fiedler pair, instead of two. The graph lives in plain CSR-ordered edge arrays: the Laplacian's
CSC arrays and the connected-component check are built from them without scipy's COO conversion. Plain
`eigsh(which='SM')` is avoided: it returned the wrong eigenvalue at n >= 1000. Sub-problems below
`dense_below` nodes are solved densely, asking LAPACK for the two lowest eigenpairs only, which is
faster than any sparse method at that size. Most parts are leaves, and a stop is proven without an
eigen-solve where it can be (`LaplacianSolves.exceeds`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import qdldl
import scipy.sparse as sp
from pykdtree.kdtree import KDTree
from scipy.linalg import eigh as dense_eigh
from scipy.linalg.lapack import dpotrf
from scipy.sparse.csgraph import connected_components
from scipy.sparse.linalg import LinearOperator, eigsh

from rayfold.fragment.geometry import squared_distances

SOLVERS = ("sparse", "dense")
STOP_MARGIN = 1e-9  # a stop is proven without an eigen-solve only for lambda_2 above bound + this
# Stops are proven only for parts under this many nodes: the proof costs about one factorisation
# and saves the Lanczos iterations, and most larger parts split (on the 302 shared AFDB models 29
# of 92 parts of 400+ residues were leaves, against 86 of 142 at 200-400). Proving every part made
# the 16 chains over 1,000 residues 0.47 s against 0.42 s; the fragment step was the same at
# 300-400 within the bench's noise.
PROVE_BELOW = 400
_NCV = 6  # Lanczos vectors for the deflated k=1 problem; 3-8 measured within noise


@dataclass(frozen=True)
class SpectralResult:
    """Leaves of the recursion (index arrays into the input, sorted) and the linker indices cut out."""

    leaves: list[np.ndarray]
    linkers: np.ndarray
    fiedler_values: list[float] = field(default_factory=list)  # one per accepted split, for diagnostics


@dataclass(frozen=True)
class Edges:
    """A symmetric weighted graph as plain arrays, each edge listed in both directions.

    Edges are kept in CSR order (by row, then column) and without duplicates, so the CSR/CSC arrays
    of the graph and of its Laplacian are built directly, without scipy's COO conversion and sort.
    Sub-graphs are cut out with NumPy masks: far cheaper than slicing scipy matrices, whose
    construction overhead dominated the time on typical (300-500 residue) chains.
    """

    rows: np.ndarray
    cols: np.ndarray
    weights: np.ndarray
    n: int

    def subgraph(self, idx: np.ndarray) -> Edges:
        """Induced sub-graph on the nodes `idx` (strictly increasing); node i of it is idx[i]."""
        if len(idx) > 1 and not (np.diff(idx) > 0).all():
            raise ValueError("subgraph expects strictly increasing node indices")
        position = np.full(self.n, -1, dtype=np.int64)
        position[idx] = np.arange(len(idx))
        r, c = position[self.rows], position[self.cols]
        keep = (r >= 0) & (c >= 0)  # a monotone relabelling keeps the CSR order
        return Edges(r[keep], c[keep], self.weights[keep], len(idx))

    def indptr(self) -> np.ndarray:
        return np.concatenate(([0], np.cumsum(np.bincount(self.rows, minlength=self.n))))

    def to_csr(self) -> sp.csr_matrix:
        return sp.csr_matrix((self.weights, self.cols, self.indptr()), shape=(self.n, self.n))


def knn_edges(coords: np.ndarray, k: int, sigma: float) -> Edges:
    """Symmetric k-NN graph with Gaussian weights exp(-d^2 / 2 sigma^2); an edge exists if either end picked it."""
    coords = np.asarray(coords, dtype=np.float64)
    n = len(coords)
    k_eff = min(k, n - 1)
    if k_eff < 1:
        empty = np.zeros(0, dtype=np.int64)
        return Edges(empty, empty, np.zeros(0), n)
    # pykdtree answers the same k-NN query (identical neighbours on every shared chain) ~1.6x faster
    # than scipy's cKDTree on chains of a few hundred residues
    _, neighbours = KDTree(coords).query(coords, k=k_eff + 1)
    # Symmetrise: the union of both directions, each pair once per direction, in CSR order. A plain
    # sort of the keys is several times cheaper than np.unique(return_index=True), and int32 keys
    # (any chain under 46,341 residues) sort and divide in about half the time of int64; the
    # weights are recomputed from the coordinates (w_ij = w_ji).
    dtype = np.int32 if n * n < 2**31 else np.int64
    width = np.asarray(n, dtype=dtype)
    rows: np.ndarray = np.repeat(np.arange(n, dtype=dtype), k_eff)
    cols: np.ndarray = neighbours[:, 1:].astype(dtype).ravel()
    keys = np.concatenate([rows * width + cols, cols * width + rows])
    keys.sort()
    keys = keys[np.concatenate(([True], keys[1:] != keys[:-1]))]
    i, j = (x.astype(np.int64) for x in np.divmod(keys, width))
    d2 = squared_distances(coords, i, j)
    return Edges(i, j, np.exp(-d2 / (2.0 * sigma**2)), n)


def knn_graph(coords: np.ndarray, k: int, sigma: float) -> sp.csr_matrix:
    """`knn_edges` as a scipy CSR matrix."""
    return knn_edges(coords, k, sigma).to_csr()


def _as_edges(w: sp.spmatrix | Edges) -> Edges:
    if isinstance(w, Edges):
        return w
    csr = sp.csr_matrix(w, dtype=np.float64, copy=True)
    csr.eliminate_zeros()
    csr.sum_duplicates()  # also sorts the column indices
    rows = np.repeat(np.arange(csr.shape[0], dtype=np.int64), np.diff(csr.indptr))
    return Edges(rows, csr.indices.astype(np.int64), csr.data, csr.shape[0])


def _components(g: Edges) -> tuple[int, np.ndarray]:
    """Connected components. The graph is symmetric, so its strongly connected components are its
    components, and scipy's directed 'strong' algorithm skips the transpose that directed=False
    builds (about half the cost); the parts are ordered by their first node afterwards anyway."""
    return connected_components(g.to_csr(), directed=True, connection="strong")


def _laplacian_entries(g: Edges) -> tuple[np.ndarray, np.ndarray]:
    """(off-diagonal values -w_ij / sqrt(d_i d_j) in edge order, degrees)."""
    degree = np.bincount(g.rows, weights=g.weights, minlength=g.n)
    inv_sqrt = np.zeros_like(degree)
    nonzero = degree > 0
    inv_sqrt[nonzero] = 1.0 / np.sqrt(degree[nonzero])  # an isolated node keeps L_ii = 1, far from 0
    return -g.weights * inv_sqrt[g.rows] * inv_sqrt[g.cols], degree


def _dense_laplacian(g: Edges, off: np.ndarray) -> np.ndarray:
    laplacian = np.zeros((g.n, g.n))
    laplacian[g.rows, g.cols] = off
    laplacian[np.diag_indices(g.n)] = 1.0
    return laplacian


def _upper_laplacian(g: Edges, shift: float, off: np.ndarray | None = None) -> sp.csc_matrix:
    """The upper triangle of L + shift*I in CSC, straight from the edge arrays: the edges below the
    diagonal in CSR order are, read as columns, the upper triangle's rows in order; each column's
    diagonal entry goes last (its row is the largest). `off`: the off-diagonal values, when known."""
    if off is None:
        off, _ = _laplacian_entries(g)
    lower = g.cols < g.rows
    counts = np.bincount(g.rows[lower], minlength=g.n)
    ends = np.cumsum(counts)
    data = np.insert(off[lower], ends, 1.0 + shift)
    indices = np.insert(g.cols[lower], ends, np.arange(g.n, dtype=np.int64))
    indptr = np.concatenate(([0], ends + np.arange(1, g.n + 1)))
    return sp.csc_matrix((data, indices, indptr), shape=(g.n, g.n))


def fiedler(w: sp.spmatrix | Edges, solver: str = "sparse", dense_below: int = 200) -> tuple[float, np.ndarray]:
    """Second-smallest eigenpair of the normalized Laplacian of the graph `w`."""
    g = _as_edges(w)
    if solver == "dense":
        off, _ = _laplacian_entries(g)
        values, vectors = np.linalg.eigh(_dense_laplacian(g, off))
        return float(values[1]), vectors[:, 1]
    if solver != "sparse":
        raise ValueError(f"unknown solver {solver!r}; choose one of {SOLVERS}")
    return LaplacianSolves(g, dense_below).fiedler()


class LaplacianSolves:
    """The two questions bisection asks of one part's normalized Laplacian L: is lambda_2 above a
    stop bound (`exceeds`), and if not, the Fiedler pair (`fiedler`). Both share L's entries and,
    above `dense_below` nodes, QDLDL's symbolic factorisation (ordering and elimination tree: the
    second factorisation on the same pattern is a numeric update, 0.14 ms against 0.6 ms at 400)."""

    SHIFT = 1e-3  # shift-invert around -SHIFT: L + SHIFT*I is positive definite

    def __init__(self, g: Edges, dense_below: int = 200) -> None:
        self.g = g
        self.dense = g.n < dense_below
        self.off, self.degree = _laplacian_entries(g)
        self.factor: Any = None

    def _factorise(self, shift: float) -> Any:
        """QDLDL's LDL^T of L + shift*I (upper triangle), reusing the symbolic factorisation."""
        upper = _upper_laplacian(self.g, shift, self.off)
        if self.factor is None:
            self.factor = qdldl.Solver(upper, upper=True)
        else:
            self.factor.update(upper, upper=True)
        return self.factor

    def exceeds(self, bound: float) -> bool:
        """True when lambda_2 is proven to exceed `bound` (< 1) without an eigen-solve; False when
        it is not (lambda_2 <= bound, or too close to tell). True also proves the graph connected:
        with every degree positive, each component adds an eigenvalue 0.

        Most parts a bisection meets are leaves (475 of the 674 eigen-solves on the 302 shared AFDB
        models only confirmed a stop), and a stop needs lambda_2 > bound, not the Fiedler vector.
        L - bound*I has one negative eigenvalue (the null vector's) exactly when lambda_2 > bound:
        - below `dense_below` nodes: L - bound*I + v v^T, with v the unit null vector (D^1/2 1), is
          positive definite exactly then, and a Cholesky factorisation succeeds on it only then (it
          is backward stable: it cannot succeed on a matrix with an eigenvalue below about -1e-12);
        - above: the LDL^T factorisation (QDLDL, no pivoting) of L - bound*I has exactly one
          negative pivot (Sylvester's law of inertia). It is trusted only while every pivot stays
          well away from zero and bounded (no element growth); otherwise the answer is False and the
          caller solves.
        """
        g = self.g
        if not (self.degree > 0).all():  # an isolated node's row is that of eigenvalue 1, not 0
            return False
        if self.dense:
            null = np.sqrt(self.degree)
            null /= np.linalg.norm(null)
            shifted = _dense_laplacian(g, self.off) + np.outer(null, null)
            shifted[np.diag_indices(g.n)] -= bound
            _, info = dpotrf(shifted, lower=True, clean=False, overwrite_a=True)
            return bool(info == 0)
        try:
            _, pivots, _ = self._factorise(-bound).factors()
        except RuntimeError:  # QDLDL met a zero pivot: no factorisation to reuse either
            self.factor = None
            return False
        magnitude = np.abs(pivots)
        return bool((pivots < 0).sum() == 1 and magnitude.min() > 1e-8 and magnitude.max() < 1e8)

    def fiedler(self) -> tuple[float, np.ndarray]:
        g, n = self.g, self.g.n
        if self.dense:
            values, vectors = dense_eigh(_dense_laplacian(g, self.off), subset_by_index=[0, 1], driver="evr")
            return float(values[1]), vectors[:, 1]
        factor = self._factorise(self.SHIFT)
        # The null vector of L is known, D^1/2 1: project it out of the operator so that the Fiedler
        # pair is the largest eigenpair of P (L + shift I)^-1 P and ARPACK needs k=1.
        null = np.sqrt(self.degree)
        null /= np.linalg.norm(null)

        def solve(x: np.ndarray) -> np.ndarray:
            x = x.ravel()
            y = factor.solve(x - null * (null @ x))
            return y - null * (null @ y)

        inverse = LinearOperator((n, n), matvec=solve, dtype=np.float64)
        # A fixed start vector keeps ARPACK deterministic run to run.
        values, vectors = eigsh(inverse, k=1, which="LM", v0=np.linspace(1.0, 2.0, n), tol=1e-10, ncv=_NCV)
        return float(1.0 / values[0] - self.SHIFT), vectors[:, 0]


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
    accept_split: Callable[[np.ndarray, np.ndarray], bool] | None = None,
) -> SpectralResult:
    """Split `coords` (N, 3) at spectral bottlenecks until every part has lambda_2 > threshold.

    `scaled_threshold`, when given, also stops at lambda_2 * N^(2/3) > scaled_threshold: lambda_2 of
    a compact globule falls as N^(-2/3), so a fixed threshold splits every large domain in two.
    The graph is built once over all of `coords`; each part is split on its induced sub-graph.
    A part whose sub-graph falls apart into several connected components is split into those
    components without cutting any linker (the Fiedler vector is not unique there, so eigen-solvers
    would disagree); parts smaller than `min_partition_size` are leaves. `accept_split(a, b)`, when
    given, sees the two sides of a spectral cut (indices into `coords`) and can veto it: the part
    then stays a leaf.
    """
    coords = np.asarray(coords, dtype=np.float64)
    if coords.ndim != 2 or coords.shape[1] != 3:
        raise ValueError("coords must have shape (N, 3)")
    n = len(coords)
    if n < min_partition_size:  # nothing to split: no graph needed
        return SpectralResult(leaves=[np.arange(n)], linkers=np.zeros(0, dtype=np.int64))
    graph = knn_edges(coords, k, sigma)
    leaves: list[np.ndarray] = []
    linkers: list[int] = []
    values: list[float] = []
    stack = [np.arange(n)]
    while stack:
        idx = stack.pop()
        if len(idx) < min_partition_size:
            leaves.append(idx)
            continue
        sub = graph.subgraph(idx)
        # stop when lambda_2 > connectivity_threshold or lambda_2 * N^(2/3) > scaled_threshold
        bound = connectivity_threshold
        if scaled_threshold is not None:
            bound = min(bound, scaled_threshold / len(idx) ** (2.0 / 3.0))
        solves = LaplacianSolves(sub, dense_below) if solver == "sparse" else None
        if solves is not None and len(idx) < PROVE_BELOW and solves.exceeds(bound + STOP_MARGIN):
            leaves.append(idx)  # a proven stop (and a connected part: lambda_2 > 0): no eigen-solve
            continue
        n_comp, labels = _components(sub)
        if n_comp > 1:
            # Components in order of their first residue, pushed so the first is processed first.
            parts = [idx[labels == c] for c in range(n_comp)]
            stack.extend(sorted(parts, key=lambda p: p[0], reverse=True))
            continue
        if solves is not None:
            value, vector = solves.fiedler()
        else:
            value, vector = fiedler(sub, solver=solver, dense_below=dense_below)
        if value > connectivity_threshold or (
            scaled_threshold is not None and value * len(idx) ** (2.0 / 3.0) > scaled_threshold
        ):
            leaves.append(idx)
            continue
        boundary = np.argsort(np.abs(vector), kind="stable")[:boundary_size]
        keep = np.ones(len(idx), dtype=bool)
        keep[boundary] = False
        side_a = idx[keep & (vector < 0)]
        side_b = idx[keep & (vector >= 0)]
        if accept_split is not None and not accept_split(side_a, side_b):
            leaves.append(idx)
            continue
        values.append(value)
        linkers.extend(idx[boundary].tolist())
        for part in sorted((side_a, side_b), key=lambda p: p[0] if len(p) else n, reverse=True):
            if len(part):
                stack.append(part)
    leaves.sort(key=lambda p: p[0])
    return SpectralResult(leaves=leaves, linkers=np.array(sorted(linkers), dtype=np.int64), fiedler_values=values)
