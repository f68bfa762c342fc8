import numpy as np
import pytest

from rayfold.fragment.spectral import (
    Edges,
    LaplacianSolves,
    _components,
    _upper_laplacian,
    fiedler,
    knn_edges,
    knn_graph,
    recursive_bisection,
)


def blob(n: int, centre, radius: float, rng: np.random.Generator) -> np.ndarray:
    """Points spread through a ball, about as dense as C-alphas in a protein (3.8 A spacing)."""
    points = rng.normal(size=(n, 3))
    points /= np.linalg.norm(points, axis=1, keepdims=True)
    points *= radius * rng.uniform(size=(n, 1)) ** (1 / 3)
    return points + np.asarray(centre, dtype=float)


def dumbbell(rng: np.random.Generator, n_ball: int = 150, linker: int = 12) -> tuple[np.ndarray, np.ndarray]:
    a = blob(n_ball, (0, 0, 0), 15.0, rng)
    b = blob(n_ball, (50, 0, 0), 15.0, rng)
    bridge = np.column_stack([np.linspace(16, 34, linker), np.zeros(linker), np.zeros(linker)])
    coords = np.vstack([a, bridge, b])
    bridge_index = np.arange(n_ball, n_ball + linker)
    return coords, bridge_index


def test_dumbbell_is_cut_at_the_bridge():
    coords, bridge = dumbbell(np.random.default_rng(0))
    result = recursive_bisection(coords, scaled_threshold=0.8)
    assert len(result.leaves) == 2
    assert set(result.linkers.tolist()) <= set(bridge.tolist())
    sizes = sorted(len(leaf) for leaf in result.leaves)
    assert sizes[0] >= 150 and sizes[1] <= 150 + 12


def test_disconnected_parts_split_without_linkers():
    rng = np.random.default_rng(1)
    coords = np.vstack([blob(80, (0, 0, 0), 12, rng), blob(80, (200, 0, 0), 12, rng)])
    result = recursive_bisection(coords, scaled_threshold=0.8)
    assert [len(leaf) for leaf in result.leaves] == [80, 80]
    assert len(result.linkers) == 0


def test_small_parts_are_not_split():
    coords, _ = dumbbell(np.random.default_rng(2), n_ball=20, linker=4)
    result = recursive_bisection(coords, min_partition_size=50)
    assert len(result.leaves) == 1 and len(result.linkers) == 0


def test_isolated_node_does_not_break_the_solver():
    coords, _ = dumbbell(np.random.default_rng(3))
    w = knn_graph(coords, 15, 8.0).tolil()
    w[5, :] = 0
    w[:, 5] = 0
    value, vector = fiedler(w.tocsr(), solver="sparse", dense_below=0)
    dense_value, _ = fiedler(w.tocsr(), solver="dense")
    assert np.isfinite(vector).all()
    assert value == pytest.approx(dense_value, abs=1e-8)


@pytest.mark.parametrize("seed", range(5))
def test_sparse_solver_matches_dense_on_large_graphs(seed):
    rng = np.random.default_rng(seed)
    coords = np.vstack([blob(400, (0, 0, 0), 22, rng), blob(400, (40, 0, 0), 22, rng), blob(300, (20, 38, 0), 20, rng)])
    sparse = recursive_bisection(coords, solver="sparse", dense_below=0)
    dense = recursive_bisection(coords, solver="dense")
    assert [leaf.tolist() for leaf in sparse.leaves] == [leaf.tolist() for leaf in dense.leaves]
    assert sparse.linkers.tolist() == dense.linkers.tolist()
    np.testing.assert_allclose(sparse.fiedler_values, dense.fiedler_values, atol=1e-8)


def brute_force_knn(coords: np.ndarray, k: int, sigma: float) -> np.ndarray:
    """Dense weight matrix of the symmetric k-NN graph, straight from the definition."""
    d = np.linalg.norm(coords[:, None] - coords[None], axis=2)
    w = np.zeros_like(d)
    for i in range(len(coords)):
        nearest = np.argsort(d[i], kind="stable")[1 : k + 1]
        w[i, nearest] = np.exp(-d[i, nearest] ** 2 / (2 * sigma**2))
    return np.maximum(w, w.T)


def test_knn_edges_are_the_symmetric_knn_graph_in_csr_order():
    coords = blob(120, (0, 0, 0), 14.0, np.random.default_rng(4))
    g = knn_edges(coords, 15, 8.0)
    keys = g.rows * g.n + g.cols
    assert (np.diff(keys) > 0).all()  # sorted by (row, col), no duplicates
    np.testing.assert_allclose(g.to_csr().toarray(), brute_force_knn(coords, 15, 8.0), rtol=1e-12, atol=0)


def test_laplacian_from_edge_arrays_matches_the_definition():
    coords = blob(90, (0, 0, 0), 12.0, np.random.default_rng(5))
    g = knn_edges(coords, 15, 8.0).subgraph(np.arange(0, 90, 2))
    w = g.to_csr().toarray()
    d = w.sum(axis=1)
    expected = np.eye(g.n) - w / np.sqrt(np.outer(d, d)) + 1e-3 * np.eye(g.n)
    upper = _upper_laplacian(g, 1e-3)
    assert upper.has_sorted_indices
    np.testing.assert_allclose(upper.toarray(), np.triu(expected), rtol=0, atol=1e-15)


def test_subgraph_needs_increasing_indices():
    g = knn_edges(blob(60, (0, 0, 0), 10.0, np.random.default_rng(6)), 15, 8.0)
    with pytest.raises(ValueError):
        g.subgraph(np.array([5, 3, 9]))


def test_components_of_a_split_graph():
    rng = np.random.default_rng(8)
    coords = np.vstack([blob(40, (0, 0, 0), 10, rng), blob(30, (300, 0, 0), 10, rng), blob(20, (0, 300, 0), 8, rng)])
    n_comp, labels = _components(knn_edges(coords, 15, 8.0))
    assert n_comp == 3
    assert sorted(np.bincount(labels).tolist()) == [20, 30, 40]
    assert len(set(labels[:40])) == len(set(labels[40:70])) == len(set(labels[70:])) == 1


@pytest.mark.parametrize("n", [250, 600])
def test_deflated_sparse_fiedler_matches_dense(n):
    coords, _ = dumbbell(np.random.default_rng(n), n_ball=n // 2, linker=10)
    g = knn_edges(coords, 15, 8.0)
    value, vector = fiedler(g, solver="sparse", dense_below=0)
    dense_value, dense_vector = fiedler(g, solver="dense")
    assert value == pytest.approx(dense_value, abs=1e-10)
    assert abs(vector @ dense_vector) == pytest.approx(1.0, abs=1e-8)


@pytest.mark.parametrize("dense_below", [0, 10_000])  # the LDL^T inertia test, the Cholesky test
def test_a_proven_stop_agrees_with_the_eigenvalue(dense_below):
    """`exceeds(bound)` is True only when lambda_2 > bound, and is True when lambda_2 clears the bound
    by 1%: on random graphs (blobs, dumbbells, sub-graphs) and bounds on both sides of lambda_2."""
    rng = np.random.default_rng(21)
    checked = proven = 0
    for trial in range(40):
        n_ball = int(rng.integers(40, 160))
        coords, _ = dumbbell(rng, n_ball=n_ball, linker=int(rng.integers(2, 14))) if trial % 2 else (
            blob(2 * n_ball, (0, 0, 0), float(rng.uniform(10, 25)), rng), None)
        g = knn_edges(coords, 15, 8.0)
        value = fiedler(g, solver="dense")[0]
        if value < 1e-6:  # fell apart (a bridge too short): the next test's case
            continue
        for factor in (0.5, 0.9, 0.99, 1.01, 1.1, 2.0):
            bound = value * factor
            if bound >= 1:
                continue
            got = LaplacianSolves(g, dense_below).exceeds(bound)
            assert not got or value > bound
            if factor <= 0.99:
                assert got, (trial, factor, value)
            checked += 1
            proven += got
    assert checked >= 200 and 0 < proven < checked


@pytest.mark.parametrize("dense_below", [0, 10_000])
def test_no_stop_is_proven_for_a_disconnected_graph(dense_below):
    rng = np.random.default_rng(22)
    apart = knn_edges(np.vstack([blob(80, (0, 0, 0), 12, rng), blob(80, (200, 0, 0), 12, rng)]), 15, 8.0)
    assert not LaplacianSolves(apart, dense_below).exceeds(0.01)
    # an isolated node: its row is eigenvalue 1's, so lambda_2 of the rest could clear the bound
    g = knn_edges(blob(120, (0, 0, 0), 14, rng), 15, 8.0)
    keep = (g.rows != 7) & (g.cols != 7)
    isolated = Edges(g.rows[keep], g.cols[keep], g.weights[keep], g.n)
    assert LaplacianSolves(g, dense_below).exceeds(0.01)
    assert not LaplacianSolves(isolated, dense_below).exceeds(0.01)


def test_proven_stops_leave_the_cuts_of_the_dense_reference():
    """Leaves proven without an eigen-solve are the leaves the eigenvalue gives (the dense solver
    never takes the shortcut)."""
    rng = np.random.default_rng(23)
    for n_ball in (60, 140, 260):
        coords, _ = dumbbell(rng, n_ball=n_ball, linker=8)
        sparse = recursive_bisection(coords, scaled_threshold=0.8, solver="sparse")
        dense = recursive_bisection(coords, scaled_threshold=0.8, solver="dense")
        assert [leaf.tolist() for leaf in sparse.leaves] == [leaf.tolist() for leaf in dense.leaves]
        assert sparse.linkers.tolist() == dense.linkers.tolist()


def test_a_zero_pivot_is_no_proof_and_the_solve_still_runs():
    """L - bound*I singular (bound = an eigenvalue of a 2-node graph: lambda_2 = 2) stops QDLDL;
    the answer is then False, and the Fiedler pair is still computed."""
    pair = Edges(np.array([0, 1]), np.array([1, 0]), np.array([1.0, 1.0]), 2)
    solves = LaplacianSolves(pair, dense_below=0)
    assert solves.exceeds(0.5)  # lambda_2 = 2 > 0.5: one negative pivot
    singular = LaplacianSolves(pair, dense_below=0)
    assert not singular.exceeds(1.0)  # L - I has a zero pivot
    value, vector = singular.fiedler()
    assert value == pytest.approx(2.0) and abs(vector @ np.array([-1.0, 1.0])) == pytest.approx(np.sqrt(2))
