"""Clustering cost and recall against exhaustive all-pairs TM-align, measured side by side.

1. On one set of fragments: TM-align calls of the built-in engine (first pass + representative
   audit) as a fraction of all pairs (target <= 5%), recall of the pairs at min-TM >= 0.7 that end
   co-clustered (target >= 0.95; the ground truth is the exhaustive run itself), false pairs
   (min-TM < 0.3 co-clustered, target 0), and wall time against exhaustive all-pairs TM-align on
   the same Ray.
2. Audit throughput: the Ray-batched aligner against a bare tmtools loop on the same pairs
   (target >= 0.9x per core).

    python bench/cluster_speed.py [--set pf04034|scop|mixed] [--limit N]
"""

from __future__ import annotations

import os

for _var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ[_var] = "1"

import argparse
import time
from pathlib import Path

import numpy as np

from rayfold.align.tmalign import align_pairs
from rayfold.cluster.rules import ClusterConfig
from rayfold.config import FragmentConfig
from rayfold.fragment.stage import FragmentStage
from rayfold.io.storage import list_inputs
from rayfold.model.fragset import FragmentSet
from rayfold.runtime.clustering import RayAligner, cluster_fragments
from rayfold.runtime.session import ray_session

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
SETS = {
    "pf04034": ["afdb_pf04034_knotted_mmcif_v3/structures"],
    "scop": ["foldseek/foldseek_example_scop"],
    "mixed": ["afdb_pf04034_knotted_mmcif_v3/structures", "foldseek/foldseek_example_scop",
              "foldseek/fold_tree_testdata", "foldseek/foldseek_regression_homstrad"],
    # a proteome's diversity plus the families above: closer to what a real release looks like
    "diverse": ["afdb_mycoplasma_mycoides_pdb/structures", "afdb_pf04034_knotted_mmcif_v3/structures",
                "foldseek/foldseek_example_scop", "foldseek/fold_tree_testdata",
                "foldseek/foldseek_regression_homstrad"],
}


def load(set_name: str, limit: int | None) -> FragmentSet:
    """Default fragments (pLDDT-masked, cut) of the set's structures: what users cluster."""
    refs = list_inputs([str(DATA / d) for d in SETS[set_name]])
    table = FragmentStage(FragmentConfig()).process(refs).fragments
    fragments = FragmentSet.from_table(table)
    if limit and len(fragments) > limit:
        fragments = fragments.subset(np.linspace(0, len(fragments) - 1, limit).astype(int))
    return fragments


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--set", default="diverse", choices=sorted(SETS))
    parser.add_argument("--limit", type=int, default=300, help="at most this many fragments (evenly spaced)")
    parser.add_argument("--throughput-pairs", type=int, default=2000)
    args = parser.parse_args()
    fragments = load(args.set, args.limit)
    n = len(fragments)
    all_pairs = np.column_stack(np.triu_indices(n, k=1))
    print(f"set {args.set}: {n} fragments, {len(all_pairs)} pairs, median length {int(np.median(fragments.lengths))}")

    import ray

    with ray_session(None):
        cpus = int(ray.cluster_resources().get("CPU", 1))
        config = ClusterConfig(engine="builtin", singleton_sample=0)
        start = time.perf_counter()
        tables = cluster_fragments(fragments, config=config, progress=False)
        ours = time.perf_counter() - start
        run = tables["cluster_runs"]

        aligner = RayAligner(ray.put(fragments), config.pairs_per_task, progress=False)
        start = time.perf_counter()
        exhaustive = aligner.align(all_pairs, desc="exhaustive")
        brute = time.perf_counter() - start

        members = tables["members"]
        cluster = dict(zip(members.column("fragment_id").to_pylist(), members.column("cluster_id").to_pylist()))
        ids = fragments.ids
        same = np.array([cluster[ids[i]] == cluster[ids[j]] for i, j in zip(exhaustive["i"], exhaustive["j"])])
        tm_min = np.minimum(exhaustive["tm_a"], exhaustive["tm_b"])
        positives = tm_min >= 0.7
        recall = same[positives].mean() if positives.any() else float("nan")
        print("\n## built-in engine vs exhaustive all-pairs TM-align (same Ray, "
              f"{cpus} CPUs)")
        print("| measure | built-in | exhaustive |")
        print("|---|---|---|")
        print(f"| TM-align calls | {run['alignments']} ({run['alignments'] / len(all_pairs):.2%} of pairs) | {len(all_pairs)} |")
        print(f"| wall time, s | {ours:.1f} | {brute:.1f} |")
        print(f"| clusters | {run['clusters']} (first pass {run['first_pass_clusters']}, merges {run['merges']}) | - |")
        print(f"recall of {positives.sum()} pairs at min-TM >= 0.7: {recall:.3f} (target >= 0.95); "
              f"co-clustered pairs at min-TM < 0.3: {int((same & (tm_min < 0.3)).sum())} (target 0); "
              f"speed-up {brute / ours:.1f}x")

        # 2. throughput on the same pairs, Ray batches vs a bare loop on one core
        rng = np.random.default_rng(0)
        sample = all_pairs[rng.choice(len(all_pairs), size=min(args.throughput_pairs, len(all_pairs)), replace=False)]
        start = time.perf_counter()
        align_pairs(fragments, sample)
        bare = time.perf_counter() - start
        start = time.perf_counter()
        aligner.align(sample, desc="throughput")
        batched = time.perf_counter() - start
        per_core = (len(sample) / batched / cpus) / (len(sample) / bare)
        print(f"\n## audit throughput on {len(sample)} pairs")
        print(f"bare tmtools loop (1 core): {len(sample) / bare:.1f} pairs/s; Ray batches ({cpus} CPUs): "
              f"{len(sample) / batched:.1f} pairs/s; per core {per_core:.2f}x the bare loop (target >= 0.9x)")


if __name__ == "__main__":
    main()
