"""Incremental releases against fresh runs on >= 1,000 real AFDB models: cost, storage, equality.

    .venv/bin/python bench/releases.py --work /tmp/releases [--base 1000]

A seeded shuffle of the shared PF04034 family (1,055 + 96 models: one dense family) and the
Mycoplasma proteome (191) is split into a base of `--base` models, then +10%, then three more
releases of +5% each. Every release is `python -m rayfold run --sync` in its own process with the
built-in engine, as a scheduled job would run it: on one Ray the bench starts, as jobs submitted to
a running cluster share it (`--own-ray`: each its own local Ray, start-up included), side by side
in one invocation:

- release 1 (the full run over the base) against release 2 (+10%): wall time and TM-align calls
  (targets: <= 0.15x each), and how many of release 2's calls were between fragments release 1
  already had (candidates that moved);
- after release 5, one fresh run over the same final inputs: the clustering tables must be equal
  row for row, and the run folder's size after 5 releases against the fresh run's (target <= 1.5x).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np

for _var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("RAYFOLD_SHARED_DATA", REPO.parent / "shared" / "data"))
SETS = ("afdb_pf04034_family_more/structures", "afdb_pf04034_knotted_mmcif_v3/structures",
        "afdb_mycoplasma_mycoides_pdb/structures")
CLUSTERING = ("clusters", "members", "merges", "singleton_audit")


def models(seed: int) -> list[Path]:
    files = sorted(p for s in SETS for p in (SHARED / s).iterdir() if p.name.endswith((".pdb.gz", ".cif.gz")))
    return [files[k] for k in np.random.default_rng(seed).permutation(len(files))]


def release(inputs: Path, out: Path, address: str | None, cluster_set: Sequence[str] = ()) -> dict:
    """One `rayfold run --sync` process (on the Ray at `address`, else its own local one): its
    summary, with its wall time."""
    started = time.perf_counter()
    env = {**os.environ, "RAY_ADDRESS": address} if address else None
    done = subprocess.run([sys.executable, "-m", "rayfold", "run", str(inputs), "--out", str(out), "--sync",
                           "--engine", "builtin", "--no-progress", "--cluster-set", *cluster_set],
                          capture_output=True, text=True, env=env)
    if done.returncode:
        sys.exit(f"rayfold run failed:\n{done.stderr[-3000:]}")
    summary = json.loads(done.stdout[done.stdout.index("{"):])
    summary["wall"] = time.perf_counter() - started
    return summary


def realigned(out: Path, release_no: int, earlier: set[str]) -> int:
    """Alignments a release computed between two fragments an earlier release had already: what
    candidates that move when new fragments arrive cost."""
    import pyarrow.parquet as pq

    table = pq.read_table(out / "alignments" / f"part-{release_no:06d}.parquet", columns=["fragment_a", "fragment_b"])
    return sum(a in earlier and b in earlier for a, b in zip(*(table.column(c).to_pylist() for c in table.column_names)))


def fragment_ids(out: Path) -> set[str]:
    from rayfold.io.storage import read_parquet_dataset

    return set(read_parquet_dataset(str(out / "members")).column("fragment_id").to_pylist())


def steps_of(out: Path, release_no: int) -> str:
    """The release's clustering steps: seconds and TM-align calls each (cluster_runs.steps)."""
    import pyarrow.parquet as pq

    row = pq.read_table(out / "state" / f"{release_no:06d}" / "cluster_runs.parquet").to_pylist()[0]
    return ", ".join(f"{name} {s['seconds']:.1f} s/{s['alignments']}" for name, s in json.loads(row["steps"]).items())


def size_of(folder: Path) -> int:
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--work", required=True, help="a scratch folder (emptied first)")
    parser.add_argument("--base", type=int, default=1000, help="models in the first release")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--own-ray", action="store_true",
                        help="every release starts its own local Ray (default: all run on one Ray this "
                             "bench starts, as jobs submitted to a running cluster do)")
    parser.add_argument("--cluster-set", nargs="*", default=[], metavar="KEY=VALUE",
                        help="ClusterConfig overrides for every run (to compare settings)")
    args = parser.parse_args()
    address = None
    if not args.own_ray:
        import ray

        ray.init(address="local", include_dashboard=False, logging_level="ERROR")
        address = ray.get_runtime_context().gcs_address
    from rayfold.io.storage import read_parquet_dataset

    work = Path(args.work)
    shutil.rmtree(work, ignore_errors=True)
    inputs, inc, fresh_inputs, fresh = work / "inputs", work / "inc", work / "fresh_inputs", work / "fresh"
    inputs.mkdir(parents=True)
    pool = models(args.seed)
    sizes = [args.base, args.base // 10, *[args.base // 20] * 3]
    assert sum(sizes) <= len(pool), f"{sum(sizes)} models needed, {len(pool)} in the shared sets"
    rows, start = [], 0
    for k, n in enumerate(sizes, 1):
        for p in pool[start:start + n]:
            shutil.copy2(p, inputs / p.name)
        start += n
        earlier = fragment_ids(inc) if k > 1 else set()
        s = release(inputs, inc, address, args.cluster_set)
        rows.append(s)
        s["realigned"] = realigned(inc, k, earlier) if k > 1 else 0
        print(f"release {k}: +{n} models, {s['fragments']} fragments, {s['wall']:.1f} s, "
              f"{s['alignments']} TM-align calls ({s['reused_alignments']} reused, {s['realigned']} between "
              f"fragments of earlier releases), {s['clusters']} clusters, {s['changed_clusters']} changed; "
              f"stages {json.dumps(s['stage_seconds'])}\n  clustering steps (s/TM-align calls): {steps_of(inc, k)}",
              flush=True)
    shutil.copytree(inputs, fresh_inputs)
    f = release(fresh_inputs, fresh, address, args.cluster_set)
    print(f"fresh run over the final {start} models: {f['fragments']} fragments, {f['wall']:.1f} s, "
          f"{f['alignments']} TM-align calls, {f['clusters']} clusters", flush=True)
    equal = {name: read_parquet_dataset(str(inc / name)).equals(read_parquet_dataset(str(fresh / name)))
             for name in CLUSTERING}
    full, plus = rows[0], rows[1]
    print("\n| run | models | wall | TM-align calls |\n|---|---|---|---|")
    print(f"| release 1 (full run) | {sizes[0]} | {full['wall']:.1f} s | {full['alignments']} |")
    print(f"| release 2 (+10%) | {sizes[1]} new | {plus['wall']:.1f} s | {plus['alignments']} |")
    print(f"\nRay: {'one per release' if args.own_ray else 'one running instance for every release'}")
    print(f"release 2 / release 1: wall {plus['wall'] / full['wall']:.3f}x, TM-align calls "
          f"{plus['alignments'] / max(1, full['alignments']):.3f}x (targets <= 0.15)")
    print(f"storage after {len(sizes)} releases {size_of(inc) / 2**20:.1f} MiB, fresh run "
          f"{size_of(fresh) / 2**20:.1f} MiB: {size_of(inc) / size_of(fresh):.2f}x (target <= 1.5)")
    print(f"tables equal to the fresh run's: {equal}")


if __name__ == "__main__":
    main()
