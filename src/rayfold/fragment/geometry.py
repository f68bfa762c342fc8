"""Shape of a set of C-alphas, against the compact globule a protein domain of that length would be."""

from __future__ import annotations

import numpy as np


def expected_radius_of_gyration(n_residues: int | np.ndarray) -> np.ndarray | float:
    """Radius of gyration of a compact globular protein of that length, 2.2 N^0.38 Angstrom."""
    return 2.2 * np.power(n_residues, 0.38)


def squared_distances(coords: np.ndarray, i: np.ndarray, j: np.ndarray) -> np.ndarray:
    """|coords[i] - coords[j]|^2 per pair, summed x, y, z in that order: the bits of
    ((coords[i] - coords[j]) ** 2).sum(axis=1), about 4x faster on a few thousand pairs (a NumPy
    reduction over a length-3 axis costs far more than three gathers of contiguous columns)."""
    x, y, z = (np.ascontiguousarray(column) for column in np.asarray(coords, dtype=np.float64).T)
    dx, dy, dz = x[i] - x[j], y[i] - y[j], z[i] - z[j]
    return dx * dx + dy * dy + dz * dz


def radius_of_gyration(coords: np.ndarray) -> float:
    centred = coords - coords.mean(axis=0)
    return float(np.sqrt((centred**2).sum(axis=1).mean()))
