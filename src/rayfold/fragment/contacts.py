"""C-alpha pairs of one chain within a radius, found once and shared by every fragmenting step.

Re-joining segments, re-merging pieces (once per merge) and the packing filter (once per fragment)
each asked a new KD-tree for the pairs within 8 or 10 A of a subset of the chain; one query over the
whole chain at the largest radius answers all of them by filtering: a pair of two residues of a
subset within r of each other is the same pair in the chain.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.spatial import cKDTree

from rayfold.fragment.geometry import squared_distances


@dataclass(frozen=True)
class ContactPairs:
    """Pairs (first < second, global residue indices) with their squared C-alpha distance."""

    first: np.ndarray
    second: np.ndarray
    squared_distance: np.ndarray
    radius: float

    @classmethod
    def within(cls, coords: np.ndarray, radius: float, among: np.ndarray | None = None) -> ContactPairs:
        """`among`: only pairs of these residues (sorted indices), e.g. the residues a fragment can
        hold; the pairs still carry global indices."""
        coords = np.asarray(coords, dtype=np.float64)
        points = coords if among is None else coords[among]
        pairs = (cKDTree(points).query_pairs(radius, output_type="ndarray") if len(points) > 1
                 else np.zeros((0, 2), dtype=np.int64))
        first, second = pairs[:, 0], pairs[:, 1]
        if among is not None:  # a sorted index keeps first < second
            first, second = among[first], among[second]
        return cls(first, second, squared_distances(coords, first, second), radius)

    def closer_than(self, distance: float) -> tuple[np.ndarray, np.ndarray]:
        """The pairs within `distance` (at most the radius they were found with)."""
        if distance > self.radius:
            raise ValueError(f"pairs were found within {self.radius} A, not {distance}")
        keep = self.squared_distance <= distance * distance
        return self.first[keep], self.second[keep]
