import numpy as np

from rayfold.model.unionfind import KeyedUnionFind, UnionFind


def test_union_find_groups_and_labels():
    uf = UnionFind(6)
    assert uf.union(4, 5)
    assert uf.union(1, 4)
    assert not uf.union(5, 1)  # already joined
    assert uf.groups() == [[0], [1, 4, 5], [2], [3]]
    np.testing.assert_array_equal(uf.labels(), [0, 1, 2, 3, 1, 1])


def test_union_find_long_chain_is_compressed():
    n = 10_000
    uf = UnionFind(n)
    for i in range(n - 1):
        uf.union(i, i + 1)
    assert uf.find(n - 1) == uf.find(0)
    assert len(uf.groups()) == 1


def test_keyed_union_find():
    uf = KeyedUnionFind(["a", "b", "c", "d"])
    uf.union("a", "c")
    uf.union("d", "c")
    groups = sorted(sorted(g) for g in uf.groups().values())
    assert groups == [["a", "c", "d"], ["b"]]


def test_a_forest_labels_components_by_their_smallest_node():
    from rayfold.model.unionfind import forest_from_edges, forest_labels

    rng = np.random.default_rng(0)
    a = rng.integers(0, 300, size=400)
    b = rng.integers(0, 300, size=400)
    whole = UnionFind(300)
    for x, y in zip(a.tolist(), b.tolist()):
        whole.union(x, y)
    np.testing.assert_array_equal(forest_labels(forest_from_edges(a, b), 300), whole.labels())
