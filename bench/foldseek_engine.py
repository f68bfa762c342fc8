"""The Foldseek engine against the method run by hand: wall time side by side in one run, with recall.

The set: whole chains (`rayfold fragment --whole-chains --export-structures`: no masking, no
cutting) of the 191 Mycoplasma models and the 96 PF04034 models in ../shared/data, the same
C-alpha files for both pipelines (Foldseek rebuilds the backbone of a C-alpha-only chain).

1. **By hand**, as the method's script runs it: `foldseek createdb` + `foldseek cluster` with the
   method's parameters + `createtsv`; one `foldseek easy-search` of the representatives against
   themselves (`-e 10`); every hit pair within length ratio 0.7 TM-aligned (tmtools, one process
   per CPU; the pairs below cannot reach min-TM 0.7, so this is the method's result at less cost
   than its script, which aligns every hit); clusters whose representatives reach
   min(TM_a, TM_b) >= 0.7 merged with union-find.
2. **rayfold**: `rayfold cluster --engine foldseek` as a user runs it (its own local Ray, start-up
   included).
3. **Truth**: exhaustive TM-align of every pair with length ratio >= 0.7 (no pair below can reach
   min-TM 0.7), cached under the work folder. Recall: the share of pairs at min-TM >= 0.7 that end
   co-clustered. Precision: of the co-clustered pairs in that length range (all of them, exact),
   the share at min-TM >= 0.5 and the count under 0.3.

Target: rayfold <= 2x the by-hand wall time.

    python bench/foldseek_engine.py --foldseek /path/to/foldseek [--work DIR] [--threads 2]
"""

from __future__ import annotations

import os

for _var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ[_var] = "1"

import argparse
import hashlib
import json
import shutil
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np

from rayfold.align.tmalign import align
from rayfold.engines.foldseek import (
    CLUSTER_ARGS,
    EntryNames,
    find_foldseek,
    foldseek_version,
    parse_cluster_tsv,
    parse_search_tsv,
)
from rayfold.io.storage import read_parquet_dataset
from rayfold.model.fragset import FragmentSet
from rayfold.model.unionfind import KeyedUnionFind

DATA = Path(os.environ.get("RAYFOLD_SHARED_DATA", Path(__file__).resolve().parents[2] / "shared" / "data"))
FOLDERS = ("afdb_mycoplasma_mycoides_pdb/structures", "afdb_pf04034_knotted_mmcif_v3/structures")
MERGE_TM = 0.7

_SET: FragmentSet | None = None


def _init(units: str) -> None:
    global _SET
    _SET = fragment_set(Path(units))


def _min_tm(pair: tuple[int, int]) -> float:
    assert _SET is not None
    i, j = pair
    a = align(_SET.coords[i], _SET.sequences[i], _SET.coords[j], _SET.sequences[j])
    return min(a.tm_a, a.tm_b)


def min_tms(units: Path, pairs: list[tuple[int, int]], workers: int) -> np.ndarray:
    """Exact min(TM_a, TM_b) per pair, in `workers` processes."""
    if not pairs:
        return np.zeros(0)
    with ProcessPoolExecutor(workers, initializer=_init, initargs=(str(units),)) as pool:
        return np.fromiter(pool.map(_min_tm, pairs, chunksize=16), np.float64, len(pairs))


def run(argv: list[str], cwd: Path) -> None:
    done = subprocess.run(argv, cwd=cwd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    if done.returncode:
        raise SystemExit(f"{' '.join(argv)} failed ({done.returncode}):\n{done.stderr[-3000:]}")


def make_units(work: Path) -> Path:
    units = work / "units"
    if not (units / "fragments").exists():
        shutil.rmtree(units, ignore_errors=True)
        run([sys.executable, "-m", "rayfold", "fragment", *(str(DATA / f) for f in FOLDERS), "--out", str(units),
             "--whole-chains", "--export-structures", "--no-progress"], work)
    return units


def by_hand(binary: str, units: Path, work: Path, threads: int, workers: int,
            known: dict[tuple[int, int], float] | None = None) -> tuple[dict[str, str], dict]:
    """fragment id -> cluster key of the method's three steps, and their figures. With `known` (the
    truth's scores: the same tmtools call on the same pairs) the TM-align step looks its scores up
    instead of aligning, and its time is not measured."""
    folder = work / "by_hand"
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir()
    structures = units / "structures"
    names = EntryNames.from_folder(structures)
    common = ["--threads", str(threads), "-v", "1"]
    times = {}
    start = time.perf_counter()
    run([binary, "createdb", str(structures), "db", *common], folder)
    run([binary, "cluster", "db", "clu", "tmp", *common, *CLUSTER_ARGS], folder)
    run([binary, "createtsv", "db", "db", "clu", "clu.tsv", *common], folder)
    times["cluster"] = time.perf_counter() - start
    first = dict((member, rep) for rep, member in parse_cluster_tsv(folder / "clu.tsv", names))
    reps = sorted(set(first.values()))
    (folder / "reps").mkdir()
    for rep in reps:
        (folder / "reps" / f"{rep}.pdb").symlink_to(structures / f"{rep}.pdb")
    t = time.perf_counter()
    run([binary, "easy-search", "reps", "reps", "hits.tsv", "tmp2", *common, "-e", "10",
         "--format-output", "query,target"], folder)
    times["search"] = time.perf_counter() - t
    hits = parse_search_tsv(folder / "hits.tsv", ("query", "target"), names)
    hit_pairs = sorted({tuple(sorted((h.query, h.target))) for h in hits if h.query != h.target})
    t = time.perf_counter()
    index, lengths = fragment_index(units), fragment_lengths(units)
    # exact pruning: below length ratio 0.7 min-TM cannot reach 0.7 (the method's script aligns every
    # hit; this baseline is the cheaper one)
    pairs = [(a, b) for a, b in hit_pairs if min(lengths[a], lengths[b]) >= MERGE_TM * max(lengths[a], lengths[b])]
    indexed = [(min(index[a], index[b]), max(index[a], index[b])) for a, b in pairs]
    if known is None:
        scores = min_tms(units, indexed, workers)
        times["tm-align"] = time.perf_counter() - t
    else:
        scores = np.array([known[p] for p in indexed], dtype=np.float64)
    if known is None:
        times["total"] = time.perf_counter() - start
    union = KeyedUnionFind(first.values())
    for (a, b), score in zip(pairs, scores.tolist(), strict=True):
        if score >= MERGE_TM:
            union.union(a, b)
    label = {member: union.find(rep) for member, rep in first.items()}
    figures = {**{f"{k} s": round(v, 1) for k, v in times.items()}, "first-pass clusters": len(reps),
               "hit pairs": len(hit_pairs), "TM-align calls (hit pairs within length ratio 0.7)": len(pairs),
               "merges": int((scores >= MERGE_TM).sum())}
    if known is not None:
        figures["TM-align"] = "scores looked up from the truth, not timed"
    return label, figures


def with_rayfold(binary: str, units: Path, work: Path) -> tuple[dict[str, str], dict]:
    out = work / "rayfold"
    shutil.rmtree(out, ignore_errors=True)
    start = time.perf_counter()
    run([sys.executable, "-m", "rayfold", "cluster", str(units), "--out", str(out), "--engine", "foldseek",
         "--foldseek", binary, "--no-progress"], work)
    wall = time.perf_counter() - start
    members = read_parquet_dataset(str(out / "members"))
    label = dict(zip(members.column("fragment_id").to_pylist(), members.column("cluster_id").to_pylist(),
                     strict=True))
    row = read_parquet_dataset(str(out / "cluster_runs")).to_pylist()[0]
    steps = json.loads(row["steps"] or "{}")
    figures = {"total s": round(wall, 1), "first-pass clusters": row["first_pass_clusters"],
               "TM-align calls": row["alignments"], "merges": row.get("merges"),
               "steps (s, calls)": {k: (round(v["seconds"], 1), v["alignments"]) for k, v in steps.items()}}
    return label, figures


def passed_fragments(units: Path) -> Any:
    table = read_parquet_dataset(str(units / "fragments"))
    return table.filter(table.column("passed"))


def fragment_set(units: Path) -> FragmentSet:
    """The passed fragments as the TM-align workers hold them (FragmentSet orders them by id): the
    one index every pair in this bench is written in."""
    return FragmentSet.from_table(passed_fragments(units))


def fragment_index(units: Path) -> dict[str, int]:
    return {f: k for k, f in enumerate(fragment_set(units).ids)}


def fragment_lengths(units: Path) -> dict[str, int]:
    fragments = fragment_set(units)
    return dict(zip(fragments.ids, fragments.lengths.tolist(), strict=True))


def truth(units: Path, work: Path, workers: int) -> tuple[np.ndarray, np.ndarray]:
    """(pairs, min-TM) over every pair within length ratio 0.7, computed once per set."""
    fragments = fragment_set(units)
    lengths, ids = np.asarray(fragments.lengths, np.int64), list(fragments.ids)
    digest = hashlib.sha256(json.dumps([ids, lengths.tolist()]).encode()).hexdigest()[:16]
    cache = work / f"truth-{digest}.npz"
    if cache.exists():
        saved = np.load(cache)
        return saved["pairs"], saved["min_tm"]
    i, j = np.triu_indices(len(ids), 1)
    keep = np.minimum(lengths[i], lengths[j]) >= 0.7 * np.maximum(lengths[i], lengths[j])
    pairs = np.column_stack([i[keep], j[keep]])
    t = time.perf_counter()
    scores = min_tms(units, [tuple(p) for p in pairs.tolist()], workers)
    print(f"truth: {len(pairs):,} pairs of {len(i):,} within length ratio 0.7, TM-aligned in "
          f"{time.perf_counter() - t:.0f} s", flush=True)
    np.savez(cache, pairs=pairs, min_tm=scores)
    return pairs, scores


def quality(label: dict[str, str], index: dict[str, int], pairs: np.ndarray, scores: np.ndarray) -> dict:
    ids = sorted(index, key=index.__getitem__)
    key = np.array([label[f] for f in ids])
    together = key[pairs[:, 0]] == key[pairs[:, 1]]
    positive = scores >= MERGE_TM
    return {"clusters": len(set(label.values())),
            "recall (min-TM >= 0.7 pairs co-clustered)": f"{int((together & positive).sum())} / "
                                                         f"{int(positive.sum())} = "
                                                         f"{(together & positive).sum() / max(1, positive.sum()):.4f}",
            "co-clustered pairs (length ratio >= 0.7) at min-TM >= 0.5":
                f"{(scores[together] >= 0.5).mean() if together.any() else float('nan'):.4f} of {int(together.sum())}",
            "co-clustered pairs under min-TM 0.3": int((scores[together] < 0.3).sum())}


def audit_candidates(units: Path, work: Path, index: dict[str, int], pairs: np.ndarray, scores: np.ndarray) -> str:
    """How many representative pairs at min-TM >= 0.7 the by-hand audit search proposed (the
    TM-align confirmation can only merge what the search finds)."""
    folder = work / "by_hand"
    names = EntryNames.from_folder(units / "structures")
    reps = {index[rep] for rep, _ in parse_cluster_tsv(folder / "clu.tsv", names)}
    hits = {tuple(sorted((index[h.query], index[h.target])))
            for h in parse_search_tsv(folder / "hits.tsv", ("query", "target"), names)}
    true = {(a, b) for (a, b), s in zip(pairs.tolist(), scores.tolist(), strict=True)
            if s >= MERGE_TM and a in reps and b in reps}
    return f"{len(true & hits)} / {len(true)}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--foldseek", help="foldseek binary (default: on PATH)")
    parser.add_argument("--work", help="work folder (default: a temp folder); the truth is cached there")
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1, help="Foldseek threads by hand")
    parser.add_argument("--hand-scores-from-truth", action="store_true",
                        help="by hand: look TM-align scores up in the truth instead of aligning (recall only; "
                             "no by-hand wall time)")
    args = parser.parse_args()
    binary = find_foldseek(args.foldseek)
    if binary is None:
        raise SystemExit("no foldseek binary: pass --foldseek or put one on PATH")
    work = Path(args.work or tempfile.mkdtemp(prefix="rayfold-bench-foldseek-"))
    work.mkdir(parents=True, exist_ok=True)
    workers = os.cpu_count() or 1
    print(f"foldseek {foldseek_version(binary)} at {binary}; work folder {work}", flush=True)
    units = make_units(work)
    index = fragment_index(units)
    print(f"units: {len(index)} whole chains", flush=True)
    pairs, scores = truth(units, work, workers)
    known = ({(int(a), int(b)): float(t) for (a, b), t in zip(pairs.tolist(), scores.tolist(), strict=True)}
             if args.hand_scores_from_truth else None)
    hand_label, hand = by_hand(binary, units, work, args.threads, workers, known)
    ours_label, ours = with_rayfold(binary, units, work)
    hand.update(quality(hand_label, index, pairs, scores))
    hand["representative pairs at min-TM >= 0.7 among the search's hits"] = audit_candidates(units, work, index,
                                                                                              pairs, scores)
    ours.update(quality(ours_label, index, pairs, scores))
    print(f"\nby hand:                 {json.dumps(hand)}")
    print(f"rayfold --engine foldseek: {json.dumps(ours)}")
    if known is None:
        print(f"\nwall time, rayfold / by hand: {ours['total s'] / hand['total s']:.2f}x (target <= 2x)")


if __name__ == "__main__":
    main()
