"""Cluster semantics side by side: guarded (default), single (every member pair merges) and method
(representative pairs only), from ONE clustering run on the same fragments and the same evidence.

The run uses the default linkage (guarded); `single` and `method` are recomputed from its merge
evidence (every row is in `merges/` with its decision), so the three differ only in which evidence
joins clusters. Each partition is then checked with exact TM-align (tmtools), both ways:

- recall: a seeded random sample of fragment pairs (within one source set, length ratio >= 0.7,
  the bound below which min-TM cannot reach 0.7) is aligned; of those at min-TM >= 0.7, the share
  co-clustered (target >= 0.95);
- precision: a seeded random sample of co-clustered pairs (uniform over pairs) is aligned: share at
  min-TM >= 0.5 (target >= 0.97) and count under 0.3 (target 0).

Default set: the shared Mycoplasma proteome (191), PF04034 (96 + 1,055 more), the SCOP globins,
fold_tree and HOMSTRAD, fragmented with the default configuration (SCOP and HOMSTRAD, crystal structures without pLDDT,
as whole chains).

A second, small part runs the chaining set (`rayfold.eval.chaining`: nested windows of one
Mycoplasma chain, the helical slabs of F4MNX4/F4MNX8/F4MNY0 and unrelated fragments) and scores
every co-clustered pair of each semantics exactly.

    python bench/cluster_semantics.py [--fragments DIR] [--recall-pairs 4000] [--precision-pairs 600]
    python bench/cluster_semantics.py --chaining-only
"""

from __future__ import annotations

import os

for _var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ[_var] = "1"

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
import ray

from rayfold.cluster.algorithm import min_tm
from rayfold.cluster.linkage import IGNORED, REFUSED
from rayfold.cluster.rules import ClusterConfig
from rayfold.config import FragmentConfig
from rayfold.io.storage import read_parquet_dataset
from rayfold.model.fragset import FragmentSet
from rayfold.model.unionfind import UnionFind
from rayfold.runtime.clustering import RayAligner, cluster_fragments
from rayfold.runtime.fragmenting import run_fragment
from rayfold.runtime.session import ray_session

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
SETS = {
    "mycoplasma": "afdb_mycoplasma_mycoides_pdb/structures",
    "pf04034": "afdb_pf04034_knotted_mmcif_v3/structures",
    "pf04034_more": "afdb_pf04034_family_more/structures",
    "scop": "foldseek/foldseek_example_scop",
    "fold_tree": "foldseek/fold_tree_testdata",
    "homstrad": "foldseek/foldseek_regression_homstrad",
}
FAMILY = {"pf04034_more": "pf04034"}  # one family across two folders


EXPERIMENTAL = ("scop", "homstrad")  # crystal structures: B-factors, no pLDDT, so whole chains


def fragments_table(folder: str | None):
    if folder is None:
        folder = tempfile.mkdtemp(prefix="rayfold-bench-semantics-")
        run_fragment([str(DATA / d) for k, d in SETS.items() if k not in EXPERIMENTAL], folder, progress=False)
        run_fragment([str(DATA / SETS[k]) for k in EXPERIMENTAL], folder, progress=False,
                     config=FragmentConfig(whole_chains=True))
    return read_parquet_dataset(str(Path(folder) / "fragments"))


def source_set(uri: str) -> str:
    for name, folder in SETS.items():
        if folder in uri:
            return FAMILY.get(name, name)
    return "other"


def partitions(tables, n: int, index: dict[str, int]) -> dict[str, np.ndarray]:
    """Cluster label per fragment index for each semantics, from the run's members and merges."""
    members = tables["members"]
    fid = [index[f] for f in members.column("fragment_id").to_pylist()]
    label = {"guarded": np.empty(n, np.int64)}
    label["guarded"][fid] = [index[c] for c in members.column("cluster_id").to_pylist()]
    first = np.empty(n, np.int64)
    first[fid] = [index[c] for c in members.column("first_pass_cluster_id").to_pylist()]
    merges = tables["merges"]
    a = np.array([index[x] for x in merges.column("representative_a").to_pylist()], np.int64)
    b = np.array([index[x] for x in merges.column("representative_b").to_pylist()], np.int64)
    source = np.array(merges.column("source").to_pylist(), dtype=object)
    for name, use in (("single", np.ones(len(a), bool)), ("method", source == "representatives")):
        forest = UnionFind(n)
        for x, y in zip(a[use].tolist(), b[use].tolist()):
            forest.union(x, y)
        label[name] = forest.labels()[first]
    return label


def co_clustered_sample(label: np.ndarray, k: int, rng) -> np.ndarray:
    """k pairs drawn uniformly from all co-clustered pairs."""
    groups = [np.flatnonzero(label == c) for c in np.unique(label)]
    groups = [g for g in groups if len(g) > 1]
    weights = np.array([len(g) * (len(g) - 1) / 2 for g in groups], dtype=np.float64)
    picks = rng.choice(len(groups), size=k, p=weights / weights.sum())
    pairs = [rng.choice(groups[g], size=2, replace=False) for g in picks.tolist()]
    return np.sort(np.array(pairs, dtype=np.int64), axis=1)


def random_pairs(groups: np.ndarray, lengths: np.ndarray, k: int, rng) -> np.ndarray:
    """k distinct pairs within one source set and length ratio >= 0.7."""
    chosen: set[tuple[int, int]] = set()
    sets = [np.flatnonzero(groups == g) for g in np.unique(groups)]
    sizes = np.array([len(s) * (len(s) - 1) / 2 for s in sets], dtype=np.float64)
    while len(chosen) < k:
        s = sets[rng.choice(len(sets), p=sizes / sizes.sum())]
        i, j = sorted(rng.choice(s, size=2, replace=False).tolist())
        if min(lengths[i], lengths[j]) >= 0.7 * max(lengths[i], lengths[j]):
            chosen.add((i, j))
    return np.array(sorted(chosen), dtype=np.int64)


def chaining_part() -> None:
    from rayfold.eval.chaining import chaining_set

    folder = DATA / SETS["mycoplasma"]
    others = [folder / f"{name}.pdb.gz" for name in ("F4MNX4", "F4MNX8", "F4MNY0", "F4MNP7", "F4MPI1", "F4MPL3",
                                                     "F4MP14", "F4MPG0", "F4MP81")]
    fragments = chaining_set(folder / "F4MPH2.pdb.gz", others)
    n = len(fragments)
    tables = cluster_fragments(fragments, config=ClusterConfig(engine="builtin", singleton_sample=0), progress=False)
    label = partitions(tables, n, fragments.index())
    aligner = RayAligner(ray.put(fragments), ClusterConfig().pairs_per_task, progress=False)
    print(f"\n## chaining set: {n} fragments (8 nested windows of F4MPH2, slabs, unrelated)")
    print("| semantics | clusters | largest (length range) | co-clustered pairs | at min-TM >= 0.5 | under 0.3 |")
    print("|---|---|---|---|---|---|")
    lengths = fragments.lengths
    for name in ("guarded", "single", "method"):
        lab = label[name]
        pairs = np.array([(a, b) for a in range(n) for b in range(a + 1, n) if lab[a] == lab[b]], dtype=np.int64)
        tm = min_tm(aligner, pairs, desc=name) if len(pairs) else np.zeros(0)
        values, counts = np.unique(lab, return_counts=True)
        big = lengths[lab == values[np.argmax(counts)]]
        print(f"| {name} | {len(values)} | {counts.max()} ({big.min()}-{big.max()}) | {len(pairs)} | "
              f"{int((tm >= 0.5).sum())} | {int((tm < 0.3).sum())} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--fragments", help="a run folder with fragments/ (default: fragment the shared sets)")
    parser.add_argument("--recall-pairs", type=int, default=4000)
    parser.add_argument("--precision-pairs", type=int, default=600)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--chaining-only", action="store_true", help="only the small chaining set")
    args = parser.parse_args()
    if args.chaining_only:
        with ray_session(None):
            chaining_part()
        return
    table = fragments_table(args.fragments)
    table = table.filter(table.column("passed")).sort_by("fragment_id")
    fragments = FragmentSet.from_table(table)
    n = len(fragments)
    groups = np.array([source_set(u) for u in table.column("source_uri").to_pylist()])
    print(f"{n} fragments; " + ", ".join(f"{g} {int((groups == g).sum())}" for g in np.unique(groups)))

    rng = np.random.default_rng(args.seed)
    with ray_session(None):
        start = time.perf_counter()
        tables = cluster_fragments(fragments, config=ClusterConfig(engine="builtin"), progress=False)
        seconds = time.perf_counter() - start
        run = tables["cluster_runs"]
        merges = tables["merges"]
        decisions = merges.column("decision").to_pylist()
        print(f"\none run: {seconds:.1f} s, {run['alignments']} TM-align calls (guard {run['guard_alignments']}, "
              f"cohesion {run['cohesion_alignments']}); linkage step {run['linkage_seconds']:.1f} s; "
              f"{merges.num_rows} evidence rows, {decisions.count('merged')} merged, "
              f"{decisions.count(REFUSED)} refused by the guard")
        label = partitions(tables, n, fragments.index())
        aligner = RayAligner(ray.put(fragments), ClusterConfig().pairs_per_task, progress=False)

        truth = random_pairs(groups, fragments.lengths, args.recall_pairs, rng)
        truth_tm = min_tm(aligner, truth, desc="recall sample")
        positive = truth_tm >= 0.7
        print(f"\nrecall sample: {len(truth)} pairs (same set, length ratio >= 0.7), {int(positive.sum())} at "
              "min-TM >= 0.7: " + ", ".join(f"{g} {int(positive[groups[truth[:, 0]] == g].sum())}"
                                            for g in np.unique(groups)))
        lengths = fragments.lengths
        print("\n| semantics | clusters | largest (length range) | recall of min-TM >= 0.7 | co-clustered pairs "
              ">= 0.5 | under 0.3 |")
        print("|---|---|---|---|---|---|")
        for name in ("guarded", "single", "method"):
            lab = label[name]
            same = lab[truth[:, 0]] == lab[truth[:, 1]]
            sample = co_clustered_sample(lab, args.precision_pairs, rng)
            tm = min_tm(aligner, sample, desc=f"precision {name}")
            values, counts = np.unique(lab, return_counts=True)
            big = values[np.argmax(counts)]
            big_len = lengths[lab == big]
            missed = int((positive & ~same).sum())
            print(f"| {name} | {len(values)} | {counts.max()} ({big_len.min()}-{big_len.max()}) | "
                  f"{same[positive].mean():.3f} ({int(positive.sum()) - missed}/{int(positive.sum())}) | "
                  f"{(tm >= 0.5).mean():.3f} | {int((tm < 0.3).sum())} of {len(tm)} |")
        clusters = tables["clusters"].sort_by([("size", "descending")]).slice(0, 10)
        print("\nlargest guarded clusters: size, length range, cohesion min / median min-TM to the representative")
        for row in clusters.to_pylist():
            print(f"  {row['cluster_id']}: {row['size']}, {row['min_length']}-{row['max_length']}, "
                  f"{row['cohesion_min_tm']:.3f} / {row['cohesion_median_tm']:.3f} ({row['cohesion_sampled']} sampled)")
        ignored = decisions.count(IGNORED)
        assert ignored == 0, "the default run ignores no evidence"
        chaining_part()


if __name__ == "__main__":
    main()
