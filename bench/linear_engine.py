"""Cost curve of the built-in engine: 10^3, 10^4 and 10^5 synthetic fragments on this machine.

Each size is written by `bench/synthetic.py` (real fragments of the shared sets, perturbed; heavy-
tailed families) and clustered by `rayfold cluster` in a subprocess (its own local Ray, every CPU
of the machine, default settings). While it runs, the bench samples every process of its tree once
a second: the driver's resident memory, the largest Ray worker's, and the CPU time of all of them.

Printed per size: wall time, CPU time per fragment, seconds and TM-align calls per fragment, the
cascade's representatives per round, driver and worker peak RSS; then the ratios the issue sets
(seconds per fragment at 10^5 vs 10^4 <= 1.3; CPU per fragment <= 72 ms; driver memory per
fragment beyond the ids <= 100 bytes, from the difference of the two largest sizes).

Before clustering, a seeded sample of within-family pairs (length ratio >= 0.7) of each set is
TM-aligned: the share at min-TM >= 0.7 says whether the families are real. After clustering, exact
TM-align on random pairs both ways: recall (within-family pairs at min-TM >= 0.7 co-clustered) and
precision (co-clustered pairs at min-TM >= 0.5, and how many under 0.3).

    python bench/linear_engine.py [--sizes 1000 10000 100000] [--sources RUN_FOLDER] [--work DIR]
    python bench/linear_engine.py --evaluate WORK/n10000 WORK/n100000   # the check alone
"""

from __future__ import annotations

import os

for _var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ[_var] = "1"

import argparse
import json
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
import psutil

sys.path.insert(0, str(Path(__file__).resolve().parent))

from rayfold.align.tmalign import align  # noqa: E402
from rayfold.io.storage import read_parquet_dataset  # noqa: E402
from rayfold.model.fragset import FragmentSet  # noqa: E402
from synthetic import source_pool, write_set  # noqa: E402


def sources(folder: str | None) -> FragmentSet:
    """Passed fragments of the shared sets (`bench/cluster_semantics.py`'s: AFDB, SCOP, fold_tree,
    HOMSTRAD) without the 1,055 extra PF04034 members: as separate sources they made 60% of the
    families members of one Pfam family, so that the representatives' search met one dense family
    everywhere (a first run: 24 TM-align calls per fragment at 1,000 fragments)."""
    import pyarrow.compute as pc

    from cluster_semantics import fragments_table

    table = fragments_table(folder)
    table = table.filter(table.column("passed"))
    table = table.filter(pc.invert(pc.match_substring(table.column("source_uri"), "afdb_pf04034_family_more")))
    return FragmentSet.from_table(table)


def sample_pairs(label: np.ndarray, lengths: np.ndarray, count: int, rng: np.random.Generator,
                 min_ratio: float = 0.0) -> np.ndarray:
    """`count` random pairs (with repeats) within the groups of `label`: a group drawn by its number
    of pairs, two distinct members of it, kept when their length ratio is >= `min_ratio`."""
    order = np.argsort(label, kind="stable")
    starts = np.flatnonzero(np.r_[True, label[order][1:] != label[order][:-1]])
    sizes = np.diff(np.r_[starts, len(order)])
    multi = sizes > 1
    starts, sizes = starts[multi], sizes[multi]
    if not len(sizes):
        return np.zeros((0, 2), np.int64)
    weights = sizes.astype(np.float64) * (sizes - 1)
    out = []
    while len(out) < count:
        g = rng.choice(len(sizes), p=weights / weights.sum())
        i, j = order[starts[g] + rng.choice(sizes[g], size=2, replace=False)].tolist()
        if min(lengths[i], lengths[j]) >= min_ratio * max(lengths[i], lengths[j]):
            out.append((i, j))
    return np.array(out, np.int64)


def min_tms(fs: FragmentSet, pairs: np.ndarray) -> np.ndarray:
    scores = []
    for i, j in pairs.tolist():
        a = align(fs.coords[i], fs.sequences[i], fs.coords[j], fs.sequences[j])
        scores.append(min(a.tm_a, a.tm_b))
    return np.array(scores)


def family_of(ids: list[str]) -> np.ndarray:
    """The family of each synthetic fragment, from its id (syn{family}_{member}_f1)."""
    return np.array([int(x[3:].split("_")[0]) for x in ids], np.int64)


def check_families(out: Path, pairs: int, seed: int) -> tuple[int, int, float]:
    """(pairs aligned, at min-TM >= 0.7, lowest) of a sample of within-family pairs."""
    fs = FragmentSet.from_table(read_parquet_dataset(str(out)))
    s = min_tms(fs, sample_pairs(family_of(fs.ids), fs.lengths, pairs, np.random.default_rng(seed), 0.7))
    return len(s), int((s >= 0.7).sum()), float(s.min())


def check_clusters(folder: Path, pairs: int, seed: int) -> dict:
    """Exact TM-align on random pairs both ways: within-family pairs (length ratio >= 0.7) at
    min-TM >= 0.7 that ended co-clustered (recall), and co-clustered pairs at min-TM >= 0.5 and
    under 0.3 (precision)."""
    fs = FragmentSet.from_table(read_parquet_dataset(str(folder / "fragments")))
    index = {f: k for k, f in enumerate(fs.ids)}
    members = read_parquet_dataset(str(folder / "clusters" / "members"))
    cluster = np.empty(len(fs), np.int64)
    cluster[[index[f] for f in members.column("fragment_id").to_pylist()]] = [
        index[c] for c in members.column("cluster_id").to_pylist()]
    rng = np.random.default_rng(seed)
    family = sample_pairs(family_of(fs.ids), fs.lengths, pairs, rng, 0.7)
    family_tm = min_tms(fs, family)
    true = family_tm >= 0.7
    together = cluster[family[:, 0]] == cluster[family[:, 1]]
    co = sample_pairs(cluster, fs.lengths, pairs, rng)
    co_tm = min_tms(fs, co)
    return {"recall": f"{int((true & together).sum())}/{int(true.sum())}",
            "precision_0.5": f"{int((co_tm >= 0.5).sum())}/{len(co_tm)}", "under_0.3": int((co_tm < 0.3).sum())}


class Sampler(threading.Thread):
    """Peak RSS of the driver (the kernel's high-water mark, VmHWM, so no transient peak between two
    samples is missed) and of the largest worker (sampled), and CPU seconds of the whole process tree."""

    def __init__(self, pid: int) -> None:
        super().__init__(daemon=True)
        self.root = psutil.Process(pid)
        self.driver_peak = self.worker_peak = 0
        self.cpu: dict[int, float] = {}
        self.stop = False

    def run(self) -> None:
        while not self.stop:
            try:
                procs = [self.root, *self.root.children(recursive=True)]
            except psutil.NoSuchProcess:
                return
            for p in procs:
                try:
                    rss = p.memory_info().rss
                    times = p.cpu_times()
                    self.cpu[p.pid] = times.user + times.system + times.children_user + times.children_system
                    if p.pid == self.root.pid:
                        self.driver_peak = max(self.driver_peak, rss, high_water_mark(p.pid))
                    elif "ray::" in " ".join(p.cmdline()[:1]):
                        self.worker_peak = max(self.worker_peak, rss)
                except (psutil.NoSuchProcess, psutil.AccessDenied, OSError):
                    continue
            time.sleep(1.0)


def high_water_mark(pid: int) -> int:
    """The process's peak resident memory so far, in bytes (Linux /proc)."""
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    return 0


def cluster(fragments: Path, out: Path) -> dict:
    command = [sys.executable, "-m", "rayfold", "cluster", str(fragments), "--out", str(out),
               "--engine", "builtin", "--no-progress"]
    start = time.perf_counter()
    process = subprocess.Popen(command)
    sampler = Sampler(process.pid)
    sampler.start()
    code = process.wait()
    sampler.stop = True
    wall = time.perf_counter() - start
    if code:
        raise SystemExit(f"rayfold cluster failed with exit code {code}")
    run = read_parquet_dataset(str(out / "cluster_runs")).to_pylist()[0]
    return {"wall": wall, "cpu": sum(sampler.cpu.values()), "driver_peak": sampler.driver_peak,
            "worker_peak": sampler.worker_peak, "run": run}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[1000, 10_000, 100_000])
    parser.add_argument("--sources", help="a run folder with fragments/ of the shared sets (default: fragment them)")
    parser.add_argument("--work", help="where the sets and results go (default: a temp folder)")
    parser.add_argument("--check-pairs", type=int, default=200)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", help="write the figures here too")
    parser.add_argument("--evaluate", nargs="+", metavar="FOLDER",
                        help="only the recall and precision check of sets clustered already (WORK/nN folders)")
    args = parser.parse_args()
    if args.evaluate:
        for folder in args.evaluate:
            print(folder, json.dumps(check_clusters(Path(folder), args.check_pairs, args.seed)), flush=True)
        return
    work = Path(args.work or tempfile.mkdtemp(prefix="rayfold-bench-linear-"))
    pool = source_pool(sources(args.sources))
    print(f"source pool: {len(pool)} structures (fragments and halves of long ones); work folder {work}")
    results = []
    for n in args.sizes:
        folder = work / f"n{n}"
        tick = time.perf_counter()
        facts = write_set(pool, n, folder / "fragments", seed=args.seed)
        made = time.perf_counter() - tick
        checked, good, lowest = check_families(folder / "fragments", args.check_pairs, args.seed)
        print(f"\n{n} fragments: {facts['families']} families, largest {facts['largest']}, top 1,000 hold "
              f"{facts['top1000_share']:.0%}; written in {made:.0f} s; within-family sample: {good}/{checked} at "
              f"min-TM >= 0.7 (lowest {lowest:.2f})", flush=True)
        r = cluster(folder / "fragments", folder / "clusters")
        run = r["run"]
        quality = check_clusters(folder, args.check_pairs, args.seed)
        row = {"fragments": n, "wall_s": r["wall"], "cpu_ms_per_fragment": 1000 * r["cpu"] / n,
               "s_per_fragment": r["wall"] / n, "tm_calls_per_fragment": run["alignments"] / n,
               "rounds": run["first_pass_rounds"], "clusters": run["clusters"],
               "driver_peak_mb": r["driver_peak"] / 2**20, "worker_peak_mb": r["worker_peak"] / 2**20,
               "families": facts["families"], "top1000_share": facts["top1000_share"],
               "within_family_ok": f"{good}/{checked}", **quality}
        results.append(row)
        print(json.dumps(row), flush=True)

    print("\n| fragments | wall (2 CPUs) | CPU ms / fragment | s / fragment | TM-align / fragment | "
          "representatives per round | clusters | driver peak RSS | worker peak RSS | recall | "
          "co-clustered >= 0.5 | < 0.3 |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|")
    for r in results:
        print(f"| {r['fragments']:,} | {r['wall_s']:.0f} s | {r['cpu_ms_per_fragment']:.1f} | "
              f"{r['s_per_fragment'] * 1000:.1f} ms | {r['tm_calls_per_fragment']:.2f} | {r['rounds']} | "
              f"{r['clusters']:,} | {r['driver_peak_mb']:.0f} MB | {r['worker_peak_mb']:.0f} MB | {r['recall']} | "
              f"{r['precision_0.5']} | {r['under_0.3']} |")
    if len(results) >= 2:
        a, b = results[-2], results[-1]
        ids_bytes = 90  # a Python str of ~20 characters in a list: object + pointer
        per = (b["driver_peak_mb"] - a["driver_peak_mb"]) * 2**20 / (b["fragments"] - a["fragments"])
        print(f"\nseconds per fragment, {b['fragments']:,} vs {a['fragments']:,}: "
              f"{b['s_per_fragment'] / a['s_per_fragment']:.2f}x (target <= 1.3)")
        print(f"driver peak memory per added fragment: {per:.0f} bytes, ~{per - ids_bytes:.0f} beyond the ids "
              "(target <= 100)")
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
