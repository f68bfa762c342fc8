"""Synthetic C-alpha traces for fragmenter tests: compact domains and ideal helices."""

from __future__ import annotations

import numpy as np

from rayfold.fragment.geometry import expected_radius_of_gyration


def compact_walk(n: int, rng: np.random.Generator, centre=(0.0, 0.0, 0.0), radius: float | None = None) -> np.ndarray:
    """A chain of 3.8 A steps confined to a ball: a crude compact domain."""
    radius = radius or float(expected_radius_of_gyration(n)) * 1.29  # ball radius for that Rg
    points = [np.asarray(centre, dtype=float)]
    while len(points) < n:
        step = rng.normal(size=3)
        step *= 3.8 / np.linalg.norm(step)
        candidate = points[-1] + step
        if np.linalg.norm(candidate - centre) <= radius:
            points.append(candidate)
    return np.array(points)


def helix(n: int, start=(0.0, 0.0, 0.0), direction: float = 1.0) -> np.ndarray:
    """Ideal alpha-helix C-alphas: radius 2.3 A, 100 degrees and 1.5 A rise per residue, along z."""
    t = np.arange(n)
    return np.column_stack(
        [2.3 * np.cos(np.radians(100.0 * t)), 2.3 * np.sin(np.radians(100.0 * t)), direction * 1.5 * t]
    ) + np.asarray(start)
