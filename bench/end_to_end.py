"""End-to-end `rayfold run` on the shared AFDB sets: scaling, stages, memory, incremental cost.

    .venv/bin/python bench/end_to_end.py [--quick]

Each measurement is one release in a fresh local Ray (own process, own temp dir), side by side in
one invocation:
- wall time with 1 and with 2 CPUs (parallel efficiency = T1 / (2 T2); target >= 0.8);
- the release's per-stage seconds (list, fragment, load, cluster, write);
- peak resident memory of any Ray worker process (and the driver) for 1x and 4x the input
  (target: flat), sampled every 0.1 s with psutil;
- a release adding 10% new inputs to a run over the other 90% vs a full run (target <= 0.2x).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

for _var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("RAYFOLD_SHARED_DATA", REPO.parent / "shared" / "data"))
# The Mycoplasma proteome (diverse) and 24 PF04034 models (one dense family: all 96 make the first
# pass ~15,000 TM-align calls of ~300-residue cores, 25 minutes per run on 2 CPUs).
SETS = {"afdb_mycoplasma_mycoides_pdb/structures": None, "afdb_pf04034_knotted_mmcif_v3/structures": 24}


def inputs() -> list[Path]:
    files = []
    for s, cap in SETS.items():
        files += sorted(p for p in (SHARED / s).iterdir() if p.name.endswith((".pdb.gz", ".cif.gz")))[:cap]
    return files


def _peak_sampler(stop: threading.Event, peaks: dict) -> None:
    import psutil

    me = psutil.Process()
    while not stop.is_set():
        workers = 0
        for p in psutil.process_iter(["name", "cmdline", "memory_info"]):
            try:
                cmd = " ".join(p.info["cmdline"] or [])
                rss = p.info["memory_info"].rss
            except (psutil.NoSuchProcess, psutil.AccessDenied, TypeError):
                continue
            if p.info["name"].startswith("ray::") or "default_worker.py" in cmd:
                workers = max(workers, rss)
        peaks["worker"] = max(peaks.get("worker", 0), workers)
        peaks["driver"] = max(peaks.get("driver", 0), me.memory_info().rss)
        stop.wait(0.1)


def child(args: argparse.Namespace) -> None:
    """One or more releases in a fresh local Ray with `--cpus` CPUs; prints one JSON line per release."""
    import logging

    import ray

    from rayfold.cluster.rules import ClusterConfig
    from rayfold.release.run import ReleaseConfig, run_release

    os.environ["RAY_AUTH_MODE"] = "disabled"
    ray.init(address="local", num_cpus=args.cpus, include_dashboard=False, logging_level=logging.ERROR,
             _temp_dir=tempfile.mkdtemp(prefix="rfb-", dir="/tmp"))
    config = ReleaseConfig(cluster=ClusterConfig(engine="builtin"))
    for folder in args.folders:
        peaks: dict = {}
        stop = threading.Event()
        sampler = threading.Thread(target=_peak_sampler, args=(stop, peaks), daemon=True)
        sampler.start()
        started = time.perf_counter()
        summary = run_release([folder], args.out, config=config, progress=False, analytics=False)
        wall = time.perf_counter() - started
        stop.set()
        sampler.join()
        print("RESULT " + json.dumps({
            "folder": folder, "wall": wall, "release": summary.release, "new_inputs": summary.new_inputs,
            "fragments": summary.fragments, "new_fragments": summary.new_fragments,
            "clusters": summary.clusters, "alignments": summary.alignments, "stages": summary.stage_seconds,
            "peak_worker_mb": peaks.get("worker", 0) / 2**20, "peak_driver_mb": peaks.get("driver", 0) / 2**20,
        }), flush=True)
    ray.shutdown()


def run_child(cpus: int, out: Path, *folders: Path) -> list[dict]:
    argv = [sys.executable, __file__, "--child", "--cpus", str(cpus), "--out", str(out), *map(str, folders)]
    done = subprocess.run(argv, capture_output=True, text=True, check=False)
    results = [json.loads(line[7:]) for line in done.stdout.splitlines() if line.startswith("RESULT ")]
    if done.returncode != 0 or len(results) != len(folders):
        sys.exit(f"child failed:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}")
    return results


def stage_line(label: str, r: dict) -> str:
    stages = "  ".join(f"{k} {v:6.1f}" for k, v in r["stages"].items())
    return (f"{label:<28} {r['wall']:7.1f} s  fragments {r['fragments']:4d} (new {r['new_fragments']:4d})  "
            f"alignments {r['alignments']:6d}  | {stages}")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--child", action="store_true")
    parser.add_argument("--cpus", type=int, default=2)
    parser.add_argument("--out")
    parser.add_argument("--quick", action="store_true", help="a quarter of the inputs")
    parser.add_argument("folders", nargs="*")
    args = parser.parse_args()
    if args.child:
        child(args)
        return

    files = inputs()
    if args.quick:
        files = files[::4]
    work = Path(tempfile.mkdtemp(prefix="rayfold-e2e-"))
    try:
        def folder(name: str, members: list[Path]) -> Path:
            path = work / name
            path.mkdir()
            for p in members:
                shutil.copy2(p, path / p.name)
            return path

        full = folder("full", files)
        quarter = folder("quarter", files[::4])
        grow = folder("grow", [p for k, p in enumerate(files) if k % 10 != 9])
        print(f"inputs: {len(files)} AFDB models ({', '.join(SETS)}); quarter {len(files[::4])}; machine: "
              f"{os.cpu_count()} CPUs")

        (t2,) = run_child(2, work / "out-2cpu", full)
        (t1,) = run_child(1, work / "out-1cpu", full)
        (q,) = run_child(2, work / "out-quarter", quarter)
        base, = run_child(2, work / "out-inc", grow)
        for p in files:
            if not (grow / p.name).exists():
                shutil.copy2(p, grow / p.name)
        (inc,) = run_child(2, work / "out-inc", grow)

        print()
        print(stage_line("full, 1 CPU", t1))
        print(stage_line("full, 2 CPUs", t2))
        print(stage_line("quarter input, 2 CPUs", q))
        print(stage_line("90% of inputs, 2 CPUs", base))
        print(stage_line("+10% release, 2 CPUs", inc))
        print()
        efficiency = t1["wall"] / (2 * t2["wall"])
        print(f"parallel efficiency (T1 / 2 T2):        {efficiency:.2f}   (target >= 0.8)")
        for stage in t1["stages"]:
            if t2["stages"].get(stage, 0) > 0.5:
                print(f"  {stage:<8} T1 {t1['stages'][stage]:6.1f} s  T2 {t2['stages'][stage]:6.1f} s  "
                      f"efficiency {t1['stages'][stage] / (2 * t2['stages'][stage]):.2f}")
        print(f"peak worker RSS, 1x input:              {q['peak_worker_mb']:7.0f} MB  (driver {q['peak_driver_mb']:.0f} MB)")
        print(f"peak worker RSS, 4x input:              {t2['peak_worker_mb']:7.0f} MB  (driver {t2['peak_driver_mb']:.0f} MB)")
        print(f"  ratio 4x / 1x:                        {t2['peak_worker_mb'] / q['peak_worker_mb']:.2f}  (target: flat)")
        print(f"incremental +10% release / full run:    {inc['wall'] / t2['wall']:.2f}x   (target <= 0.2x; "
              f"alignments {inc['alignments']} vs {t2['alignments']})")
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
