"""rayfold: measure and fix fold redundancy in large sets of predicted protein structures.

The algorithm modules (structure, fragment, spectral, unionfind, ...) are pure NumPy/SciPy and know
nothing of Ray; `rayfold.runtime` is the only package that orchestrates them on Ray.
"""

__version__ = "0.1.0"
