"""Results as Ray Datasets, for training data loaders that stream from Ray."""

from __future__ import annotations

from typing import Any

import pyarrow as pa

from rayfold.analytics.sampling import draw_sample


def sample_dataset(weights_table: pa.Table, n: int, seed: int, replace: bool = True) -> Any:
    """`draw_sample` as a Ray Dataset (``ray.data.from_arrow``): the same rows for the same seed.

    Joins the Ray instance already running (or starts one, as Ray Data does by default).
    """
    import ray.data

    return ray.data.from_arrow(draw_sample(weights_table, n, seed, replace=replace))
