"""Shape of a set of C-alphas, against the compact globule a protein domain of that length would be."""

from __future__ import annotations

import numpy as np


def expected_radius_of_gyration(n_residues: int | np.ndarray) -> np.ndarray | float:
    """Radius of gyration of a compact globular protein of that length, 2.2 N^0.38 Angstrom."""
    return 2.2 * np.power(n_residues, 0.38)


def radius_of_gyration(coords: np.ndarray) -> float:
    centred = coords - coords.mean(axis=0)
    return float(np.sqrt((centred**2).sum(axis=1).mean()))
