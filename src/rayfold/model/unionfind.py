"""Union-find (disjoint sets) with path compression and union by size.

Used wherever "A touches B and B touches C" must become one group: re-joining segments in contact,
re-merging compact pieces, merging clusters, Foldseek's representative chains.
"""

from __future__ import annotations

from collections.abc import Hashable, Iterable
from typing import Generic, TypeVar

import numpy as np

K = TypeVar("K", bound=Hashable)


class UnionFind:
    """Disjoint sets over the integers 0..n-1."""

    def __init__(self, n: int) -> None:
        self.parent = np.arange(n, dtype=np.int64)
        self.size = np.ones(n, dtype=np.int64)

    def find(self, x: int) -> int:
        parent = self.parent
        root = x
        while parent[root] != root:
            root = parent[root]
        while parent[x] != root:  # path compression
            parent[x], x = root, parent[x]
        return int(root)

    def union(self, a: int, b: int) -> bool:
        """Join the sets of a and b; returns False when they already were one set."""
        ra, rb = self.find(a), self.find(b)
        if ra == rb:
            return False
        if self.size[ra] < self.size[rb] or (self.size[ra] == self.size[rb] and rb < ra):
            ra, rb = rb, ra
        self.parent[rb] = ra
        self.size[ra] += self.size[rb]
        return True

    def labels(self) -> np.ndarray:
        """Component label of every element: the smallest member of its set (deterministic)."""
        n = len(self.parent)
        roots = np.array([self.find(i) for i in range(n)], dtype=np.int64)
        smallest = np.full(n, n, dtype=np.int64)
        np.minimum.at(smallest, roots, np.arange(n))
        return smallest[roots]

    def groups(self) -> list[list[int]]:
        """Sets as sorted lists, ordered by their smallest member."""
        out: dict[int, list[int]] = {}
        for i, label in enumerate(self.labels().tolist()):
            out.setdefault(label, []).append(i)
        return [out[k] for k in sorted(out)]


class KeyedUnionFind(Generic[K]):
    """Union-find over arbitrary hashable keys (fragment ids, representative ids)."""

    def __init__(self, keys: Iterable[K] = ()) -> None:
        self._parent: dict[K, K] = {}
        self._size: dict[K, int] = {}
        for key in keys:
            self.add(key)

    def add(self, key: K) -> None:
        if key not in self._parent:
            self._parent[key] = key
            self._size[key] = 1

    def find(self, key: K) -> K:
        self.add(key)
        parent = self._parent
        root = key
        while parent[root] != root:
            root = parent[root]
        while parent[key] != root:
            parent[key], key = root, parent[key]
        return root

    def union(self, a: K, b: K) -> bool:
        ra, rb = self.find(a), self.find(b)
        if ra == rb:
            return False
        if self._size[ra] < self._size[rb]:
            ra, rb = rb, ra
        self._parent[rb] = ra
        self._size[ra] += self._size[rb]
        return True

    def groups(self) -> dict[K, list[K]]:
        """Root -> members; callers choose their own deterministic naming of groups."""
        out: dict[K, list[K]] = {}
        for key in self._parent:
            out.setdefault(self.find(key), []).append(key)
        return out


# --- Compact form ------------------------------------------------------------------------------
# A forest is the compact result of a batch of edges: for every node the batch touched, the
# smallest node of its component (the singleton audit's components are read from one).

Forest = tuple[np.ndarray, np.ndarray]  # (nodes, roots), both int64, nodes sorted and unique


def forest_from_edges(a: np.ndarray, b: np.ndarray) -> Forest:
    """Reduce edges (a[k], b[k]) over integer node ids to a forest."""
    a = np.asarray(a, dtype=np.int64)
    b = np.asarray(b, dtype=np.int64)
    nodes = np.unique(np.concatenate([a, b]))
    if len(nodes) == 0:
        return nodes, nodes.copy()
    local = UnionFind(len(nodes))
    for x, y in zip(np.searchsorted(nodes, a).tolist(), np.searchsorted(nodes, b).tolist()):
        local.union(x, y)
    return nodes, nodes[local.labels()]


def forest_labels(forest: Forest, n: int) -> np.ndarray:
    """Component label (smallest member) of every node 0..n-1; untouched nodes are their own."""
    labels = np.arange(n, dtype=np.int64)
    nodes, roots = forest
    labels[nodes] = roots
    return labels
