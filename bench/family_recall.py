"""Recall and precision on one real dense family, side by side for several runs of `rayfold run`.

The set: ../shared/data/afdb_pf04034_family_more (1,055 models) and afdb_pf04034_knotted_mmcif_v3
(96), one Pfam family of 1,151 members, plus the 191 Mycoplasma models. Each run folder given with
`--run` is a finished `rayfold run` over those three folders (made with whatever engine or commit
the label says; `--make` runs today's default engine into the first folder when it is missing).

For each run, with exact TM-align (tmtools), on samples drawn once and shared by all runs:
- recall: >= `--pairs` random pairs of family fragments with length ratio >= 0.7; of those at
  min-TM >= 0.7, the share the run co-clusters (target >= 0.97);
- precision: `--pairs` random co-clustered pairs of the run (uniform over pairs, the whole set):
  share at min-TM >= 0.5 (target >= 0.97) and count under 0.3 (target 0).

    python bench/family_recall.py --run /tmp/fam_new:cascade --run /tmp/fam_old:allpairs [--make]
"""

from __future__ import annotations

import os

for _var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ[_var] = "1"

import argparse
import subprocess
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np

from rayfold.align.tmalign import align
from rayfold.io.storage import read_parquet_dataset
from rayfold.model.fragset import FragmentSet

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
FOLDERS = ("afdb_pf04034_family_more/structures", "afdb_pf04034_knotted_mmcif_v3/structures",
           "afdb_mycoplasma_mycoides_pdb/structures")

_SET: FragmentSet | None = None


def _init(path: str) -> None:
    global _SET
    table = read_parquet_dataset(str(Path(path) / "fragments"))
    _SET = FragmentSet.from_table(table.filter(table.column("passed")))


def _score(pair: tuple[int, int]) -> float:
    assert _SET is not None
    i, j = pair
    a = align(_SET.coords[i], _SET.sequences[i], _SET.coords[j], _SET.sequences[j])
    return min(a.tm_a, a.tm_b)


def labels(run: Path, index: dict[str, int]) -> np.ndarray:
    members = read_parquet_dataset(str(run / "members"))
    label = np.full(len(index), -1, np.int64)
    label[[index[f] for f in members.column("fragment_id").to_pylist()]] = [
        index[c] for c in members.column("cluster_id").to_pylist()]
    return label


def co_clustered(label: np.ndarray, k: int, rng: np.random.Generator) -> list[tuple[int, int]]:
    groups = [g for g in (np.flatnonzero(label == c) for c in np.unique(label)) if len(g) > 1]
    weights = np.array([len(g) * (len(g) - 1) / 2 for g in groups], dtype=np.float64)
    picks = rng.choice(len(groups), size=k, p=weights / weights.sum())
    return [tuple(sorted(rng.choice(groups[g], size=2, replace=False).tolist())) for g in picks.tolist()]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run", action="append", required=True, help="RUN_FOLDER:LABEL")
    parser.add_argument("--make", action="store_true", help="run today's default engine into the first folder")
    parser.add_argument("--pairs", type=int, default=1000)
    parser.add_argument("--seed", type=int, default=11)
    args = parser.parse_args()
    runs = [(Path(r.rsplit(":", 1)[0]), r.rsplit(":", 1)[1] if ":" in r else r) for r in args.run]
    if args.make and not (runs[0][0] / "members").exists():
        tick = time.perf_counter()
        subprocess.run([sys.executable, "-m", "rayfold", "run", *[str(DATA / f) for f in FOLDERS],
                        "--out", str(runs[0][0]), "--engine", "builtin", "--no-progress", "--no-report"], check=True)
        print(f"rayfold run into {runs[0][0]}: {time.perf_counter() - tick:.0f} s")
    table = read_parquet_dataset(str(runs[0][0] / "fragments"))
    table = table.filter(table.column("passed"))
    fragments = FragmentSet.from_table(table)
    index = fragments.index()
    sources = dict(zip(table.column("fragment_id").to_pylist(), table.column("source_uri").to_pylist()))
    family = np.array(["pf04034" in sources[f] for f in fragments.ids])
    lengths = fragments.lengths
    print(f"{len(fragments)} fragments, {int(family.sum())} of them in the PF04034 family")

    rng = np.random.default_rng(args.seed)
    members = np.flatnonzero(family)
    truth: set[tuple[int, int]] = set()
    while len(truth) < args.pairs:
        i, j = sorted(rng.choice(members, size=2, replace=False).tolist())
        if min(lengths[i], lengths[j]) >= 0.7 * max(lengths[i], lengths[j]):
            truth.add((i, j))
    recall_pairs = sorted(truth)
    label = {name: labels(path, index) for path, name in runs}
    precision_pairs = {name: co_clustered(lab, args.pairs, rng) for name, lab in label.items()}
    todo = sorted(set(recall_pairs).union(*precision_pairs.values()))
    with ProcessPoolExecutor(max_workers=os.cpu_count() or 2, initializer=_init,
                             initargs=(str(runs[0][0]),)) as pool:
        score = dict(zip(todo, pool.map(_score, todo, chunksize=16)))
    positive = [p for p in recall_pairs if score[p] >= 0.7]
    print(f"recall sample: {len(recall_pairs)} family pairs, {len(positive)} at min-TM >= 0.7\n")
    print("| run | clusters | largest | TM-align calls | clustering s | recall (min-TM >= 0.7 pairs co-clustered) "
          "| co-clustered pairs >= 0.5 | under 0.3 |")
    print("|---|---|---|---|---|---|---|---|")
    for path, name in runs:
        lab = label[name]
        run = read_parquet_dataset(str(path / "cluster_runs")).to_pylist()[-1]
        kept = sum(lab[i] == lab[j] for i, j in positive)
        s = np.array([score[p] for p in precision_pairs[name]])
        _, counts = np.unique(lab, return_counts=True)
        print(f"| {name} | {run['clusters']:,} | {counts.max():,} | {run['alignments']:,} | {run['seconds']:.0f} | "
              f"{kept / max(1, len(positive)):.3f} ({kept}/{len(positive)}) | {float((s >= 0.5).mean()):.3f} | "
              f"{int((s < 0.3).sum())} |")


if __name__ == "__main__":
    main()
