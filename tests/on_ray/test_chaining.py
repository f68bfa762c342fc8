"""Single-linkage chaining on real structures: the default linkage keeps clusters neighbourhoods.

The set: a ladder of nested windows of one well-predicted Mycoplasma protein (F4MPH2, 639
residues, no residue under pLDDT 65), each window about 1.3x the one before, the way a repeat
domain cut at 3, 4, 5, ... repeats grows; the helical slabs the fragmenter cut from F4MNX4,
F4MNX8 and F4MNY0 before its rod-cut veto (`chaining_set` still cuts them); and the fragments of
unrelated Mycoplasma models. Neighbouring windows share most of their structure (min-TM >= 0.7),
the ends of the ladder do not (min-TM ~0.2).
"""

from __future__ import annotations

import numpy as np
import pytest

from conftest import SHARED_DATA
from rayfold.align.tmalign import align_pairs
from rayfold.cluster.rules import ClusterConfig
from rayfold.eval.chaining import LADDER_WINDOWS, chaining_set
from rayfold.model.fragset import FragmentSet
from rayfold.runtime.clustering import cluster_fragments

pytestmark = [pytest.mark.ray,
              pytest.mark.skipif(not SHARED_DATA.is_dir(), reason=f"shared data not available at {SHARED_DATA}")]

MYCOPLASMA = SHARED_DATA / "afdb_mycoplasma_mycoides_pdb" / "structures"
LADDER = "F4MPH2"
WINDOWS = LADDER_WINDOWS
SLABS = ("F4MNX4", "F4MNX8", "F4MNY0")
UNRELATED = ("F4MNP7", "F4MPI1", "F4MPL3", "F4MP14", "F4MPG0", "F4MP81")


def chaining_fragments() -> FragmentSet:
    others = [MYCOPLASMA / f"{name}.pdb.gz" for name in SLABS + UNRELATED]
    return chaining_set(MYCOPLASMA / f"{LADDER}.pdb.gz", others, WINDOWS)


def co_clustered_pairs(tables, index: dict[str, int]) -> np.ndarray:
    members = tables["members"]
    by_cluster: dict[str, list[int]] = {}
    for fid, cid in zip(members.column("fragment_id").to_pylist(), members.column("cluster_id").to_pylist()):
        by_cluster.setdefault(cid, []).append(index[fid])
    pairs = [(a, b) for group in by_cluster.values() for k, a in enumerate(group) for b in group[k + 1 :]]
    return np.array(pairs, dtype=np.int64).reshape(-1, 2)


def test_guarded_linkage_keeps_a_growing_ladder_apart_and_single_linkage_chains_it(ray_local):
    fragments = chaining_fragments()
    index = fragments.index()
    ladder = [index[f"{LADDER}_w{length:03d}"] for length in WINDOWS]
    steps = align_pairs(fragments, np.column_stack([ladder[:-1], ladder[1:]]))
    assert (np.minimum(steps["tm_a"], steps["tm_b"]) >= 0.7).sum() >= 5  # the ladder is linked step by step
    ends = align_pairs(fragments, np.array([[ladder[0], ladder[-1]]]))
    assert min(ends["tm_a"][0], ends["tm_b"][0]) < 0.3

    results = {}
    for linkage in ("single", "guarded"):
        config = ClusterConfig(engine="builtin", singleton_sample=0, linkage=linkage)
        results[linkage] = cluster_fragments(fragments, config=config, progress=False)
    single = {m["fragment_id"]: m["cluster_id"] for m in results["single"]["members"].to_pylist()}
    assert single[f"{LADDER}_w060"] == single[f"{LADDER}_w373"], "the set must chain under single linkage"

    pairs = co_clustered_pairs(results["guarded"], index)
    scores = align_pairs(fragments, pairs)
    tm_min = np.minimum(scores["tm_a"], scores["tm_b"])
    worst = [(fragments.ids[a], fragments.ids[b], round(float(t), 3))
             for a, b, t in zip(pairs[:, 0], pairs[:, 1], tm_min) if t < 0.3]
    assert not worst, f"co-clustered pairs of unrelated folds: {worst}"
    run = results["guarded"]["cluster_runs"]
    assert run["guard_alignments"] > 0 and run["merges"] < results["single"]["cluster_runs"]["merges"]
    merges = results["guarded"]["merges"].to_pylist()
    assert any(m["decision"] == "refused" and m["guard_tm"] < 0.5 for m in merges)
    # the cohesion columns show it: each cluster's sampled members stay within reach of its representative
    for row in results["guarded"]["clusters"].to_pylist():
        if row["cohesion_sampled"]:
            assert row["cohesion_min_tm"] >= 0.3, row
