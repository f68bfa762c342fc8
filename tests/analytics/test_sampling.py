"""rayfold.analytics.sampling: gamma weights, effective clusters, reproducible draws (hand-computed cases)."""

from __future__ import annotations

import itertools
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from rayfold.analytics.sampling import (
    SamplingConfig,
    cluster_probabilities,
    draw_sample,
    effective_clusters,
    fragment_weights,
    gamma_table,
    inverse_simpson,
    read_weights,
    sample_fragments,
    top_mass,
    write_sampling,
)
from rayfold.model import schema

EXACT = 1e-12


def _members(clusters: dict[str, int]) -> pa.Table:
    """Members of clusters named by size: {'X': 4} -> X_0..X_3 in cluster X."""
    ids = [f"{c}_{i}" for c, n in clusters.items() for i in range(n)]
    cids = [c for c, n in clusters.items() for _ in range(n)]
    return pa.table({"fragment_id": ids, "cluster_id": cids, "first_pass_cluster_id": cids}, schema=schema.MEMBERS)


def _weights_of(table: pa.Table) -> dict[str, float]:
    return dict(zip(table.column("fragment_id").to_pylist(), table.column("weight").to_pylist(), strict=True))


# --------------------------------------------------------------------------------------------
# cluster probabilities and diagnostics


def test_square_root_weighting_of_sizes_100_and_1():
    p = cluster_probabilities([100, 1], 0.5)  # masses 10 and 1
    assert p.tolist() == pytest.approx([10 / 11, 1 / 11], abs=EXACT)
    assert effective_clusters([100, 1], 0.5) == pytest.approx(1 / ((10 / 11) ** 2 + (1 / 11) ** 2), abs=EXACT)
    assert effective_clusters([100, 1], 0.5) == pytest.approx(121 / 101, abs=EXACT)
    assert top_mass([1, 100, 1], 0.5, 1) == pytest.approx(10 / 12, abs=EXACT)


def test_gamma_0_is_every_cluster_equal_and_gamma_1_the_data_distribution():
    sizes = np.array([100, 7, 3, 1, 1])
    assert cluster_probabilities(sizes, 0.0).tolist() == pytest.approx([0.2] * 5, abs=EXACT)
    assert effective_clusters(sizes, 0.0) == pytest.approx(5.0, abs=EXACT)
    assert cluster_probabilities(sizes, 1.0).tolist() == pytest.approx((sizes / 112).tolist(), abs=EXACT)
    # gamma = 1: (sum N)^2 / sum N^2
    assert effective_clusters(sizes, 1.0) == pytest.approx(112**2 / (100**2 + 49 + 9 + 1 + 1), abs=EXACT)
    assert top_mass(sizes, 0.0, 2) == pytest.approx(0.4, abs=EXACT)
    assert top_mass(sizes, 1.0, 2) == pytest.approx(107 / 112, abs=EXACT)
    assert top_mass(sizes, 1.0, 1000) == pytest.approx(1.0, abs=EXACT)


def test_effective_clusters_fall_as_gamma_rises():
    sizes = np.array([1000, 100, 10, 10, 1, 1, 1])
    values = [effective_clusters(sizes, g) for g in np.linspace(0, 1, 11)]
    assert all(a > b for a, b in itertools.pairwise(values))
    assert inverse_simpson(np.array([])) == 0.0
    with pytest.raises(ValueError):
        cluster_probabilities([3, 0], 0.5)


def test_gamma_table_has_both_populations():
    grid = (0.0, 0.5, 1.0)
    table = gamma_table(np.array([100, 1]), grid)
    assert table.schema.equals(schema.SAMPLING)
    rows = {(r["population"], r["gamma"]): r for r in table.to_pylist()}
    assert len(rows) == 6
    assert rows[("all", 0.5)]["effective_clusters"] == pytest.approx(121 / 101, abs=EXACT)
    assert rows[("all", 0.5)]["largest_cluster_mass"] == pytest.approx(10 / 11, abs=EXACT)
    assert (rows[("all", 0.0)]["clusters"], rows[("all", 0.0)]["fragments"]) == (2, 101)
    # singletons out of the denominator: one cluster left, it gets all the mass
    only = rows[("multi_member", 0.0)]
    assert (only["clusters"], only["fragments"], only["effective_clusters"], only["top1000_mass"]) == (1, 100, 1.0, 1.0)


# --------------------------------------------------------------------------------------------
# fragment weights


def test_fragment_weight_is_cluster_mass_over_size():
    members = _members({"X": 4, "Y": 1})
    w = _weights_of(fragment_weights(members, 0.5))  # masses 2 and 1 -> p = 2/3, 1/3
    assert w == pytest.approx({"X_0": 1 / 6, "X_1": 1 / 6, "X_2": 1 / 6, "X_3": 1 / 6, "Y_0": 1 / 3}, abs=EXACT)
    assert _weights_of(fragment_weights(members, 0.0)) == pytest.approx(
        {"X_0": 1 / 8, "X_1": 1 / 8, "X_2": 1 / 8, "X_3": 1 / 8, "Y_0": 1 / 2}, abs=EXACT)
    assert _weights_of(fragment_weights(members, 1.0)) == pytest.approx(dict.fromkeys(w, 1 / 5), abs=EXACT)
    multi = fragment_weights(members, 0.5, population="multi_member")
    assert _weights_of(multi) == pytest.approx({f"X_{i}": 1 / 4 for i in range(4)}, abs=EXACT)


def test_fragment_weights_table_is_canonical_and_sums_to_one():
    members = _members({"B": 3, "A": 5, "C": 1, "D": 2})
    table = fragment_weights(members, 0.3)
    assert table.schema.equals(schema.WEIGHTS)
    assert table.column("fragment_id").to_pylist() == sorted(members.column("fragment_id").to_pylist())
    assert sum(table.column("weight").to_pylist()) == pytest.approx(1.0, abs=EXACT)
    assert set(table.column("gamma").to_pylist()) == {0.3}
    sizes = dict(zip(table.column("fragment_id").to_pylist(), table.column("cluster_size").to_pylist(), strict=True))
    assert (sizes["A_0"], sizes["C_0"]) == (5, 1)
    shuffled = members.take(pa.array(np.random.default_rng(1).permutation(members.num_rows)))
    assert fragment_weights(shuffled, 0.3).equals(table)


# --------------------------------------------------------------------------------------------
# draws


def test_draw_sample_is_reproducible_and_order_independent():
    weights = fragment_weights(_members({"X": 4, "Y": 1, "Z": 2}), 0.5)
    first = draw_sample(weights, 50, seed=7)
    assert first.schema.equals(schema.SAMPLE)
    assert first.column("draw").to_pylist() == list(range(50))
    assert draw_sample(weights, 50, seed=7).equals(first)
    reversed_rows = weights.take(pa.array(np.arange(weights.num_rows)[::-1]))
    assert draw_sample(reversed_rows, 50, seed=7).equals(first)
    assert draw_sample(weights, 50, seed=8).column("fragment_id").to_pylist() != first.column("fragment_id").to_pylist()


def test_draw_sample_frequencies_follow_the_weights():
    weights = fragment_weights(_members({"X": 4, "Y": 1}), 0.0)  # Y_0 gets half the mass
    ids = np.array(draw_sample(weights, 100_000, seed=0).column("fragment_id").to_pylist())
    assert abs((ids == "Y_0").mean() - 0.5) < 0.01
    assert abs((ids == "X_2").mean() - 0.125) < 0.01


def test_draw_sample_without_replacement():
    weights = fragment_weights(_members({"X": 4, "Y": 1}), 0.5)
    got = draw_sample(weights, 5, seed=3, replace=False).column("fragment_id").to_pylist()
    assert sorted(got) == ["X_0", "X_1", "X_2", "X_3", "Y_0"]
    with pytest.raises(ValueError, match="without replacement"):
        draw_sample(weights, 6, seed=3, replace=False)
    assert draw_sample(weights, 0, seed=3).num_rows == 0


# --------------------------------------------------------------------------------------------
# config and run folders


def test_sampling_config_grid():
    assert SamplingConfig().grid == tuple(round(0.1 * i, 1) for i in range(11))
    assert SamplingConfig(gamma=0.33, grid="0:1:0.25").grid == (0.0, 0.25, 0.33, 0.5, 0.75, 1.0)
    assert SamplingConfig(grid="0, 1").grid == (0.0, 0.5, 1.0)
    with pytest.raises(ValueError):
        SamplingConfig(population="some")


def _write_members(out: Path, members: pa.Table) -> None:
    (out / "members").mkdir(parents=True)
    pq.write_table(members, out / "members" / "part-0.parquet")


def test_write_sampling_replaces_the_tables(tmp_path: Path):
    _write_members(tmp_path, _members({"X": 4, "Y": 1}))
    config = SamplingConfig(gamma=0.5, grid=(0.0, 1.0))
    for _ in range(2):
        sampling, weights = write_sampling(str(tmp_path), config)
    on_disk = pq.read_table(tmp_path / "sampling")
    assert on_disk.num_rows == 6 and sampling.num_rows == 6  # {0, 0.5, 1} x {all, multi_member}
    assert pq.read_table(tmp_path / "weights").num_rows == 5
    assert set(weights.column("gamma").to_pylist()) == {0.5}
    assert sorted(p.name for p in (tmp_path / "weights").iterdir()) == ["part-0.parquet"]


def test_sample_fragments_uses_stored_weights_only_at_their_gamma(tmp_path: Path):
    members = _members({"X": 4, "Y": 1})
    _write_members(tmp_path, members)
    # stored weights at gamma 0.5 that put all the mass on X_1: used as they are
    stored = fragment_weights(members, 0.5)
    stored = stored.set_column(3, "weight", pa.array([0.0, 1.0, 0.0, 0.0, 0.0]))
    (tmp_path / "weights").mkdir()
    pq.write_table(stored, tmp_path / "weights" / "part-0.parquet")
    got = sample_fragments(str(tmp_path), gamma=0.5, n=20, seed=1)
    assert set(got.column("fragment_id").to_pylist()) == {"X_1"}
    # another gamma: recomputed from OUT/members
    assert read_weights(str(tmp_path), 0.0).equals(fragment_weights(members, 0.0))
    other = sample_fragments(str(tmp_path), gamma=0.0, n=2000, seed=1)
    assert other.equals(draw_sample(fragment_weights(members, 0.0), 2000, 1))
    assert len(set(other.column("fragment_id").to_pylist())) == 5


def test_sample_fragments_without_clustering_says_so(tmp_path: Path):
    with pytest.raises(FileNotFoundError, match="members"):
        sample_fragments(str(tmp_path), gamma=0.5, n=1, seed=0)


@pytest.mark.ray
def test_sample_dataset_is_the_same_sample_as_a_ray_dataset(ray_local):
    from rayfold.runtime.datasets import sample_dataset

    weights = fragment_weights(_members({"X": 4, "Y": 1, "Z": 3}), 0.5)
    ds = sample_dataset(weights, 30, seed=11)
    rows = sorted(ds.take_all(), key=lambda r: r["draw"])
    assert [r["fragment_id"] for r in rows] == draw_sample(weights, 30, 11).column("fragment_id").to_pylist()
