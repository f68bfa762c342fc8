"""The driver's last step alone: the singleton sample, the clustering tables and writing them, each
step's rise of the kernel's high-water mark above the RSS before it (Linux: `clear_refs` resets the
mark), at a given size and Parquet row-group size. `bench/driver_memory.py` puts the 10^5 driver's
mark in this step; this shows which part grows with the set, in seconds instead of an hour.

Synthetic but shaped like the 10^5 bench set's result: 3.8% of the fragments first-pass
representatives, 63% of those cluster representatives, `rows` merge-evidence rows.

    python bench/write_memory.py 100000 20000 131072 16384 8192
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile


def child(n: int, rows: int, row_group_rows: int) -> None:
    import numpy as np
    import pyarrow as pa

    import rayfold.io.storage as storage
    from rayfold.cluster.cohesion import summarise
    from rayfold.cluster.rules import SingletonAudit, sample_singletons
    from rayfold.cluster.tables import cluster_tables
    from rayfold.model.fragset import FragmentIndex
    from rayfold.runtime.heap import keep_heap_small

    keep_heap_small()  # as the driver
    storage.ROW_GROUP_ROWS = row_group_rows

    def rise(step) -> float:  # noqa: ANN001
        rss = next(int(x.split()[1]) for x in open("/proc/self/status") if x.startswith("VmRSS")) / 1024
        open("/proc/self/clear_refs", "w").write("5")
        step()
        return next(int(x.split()[1]) for x in open("/proc/self/status") if x.startswith("VmHWM")) / 1024 - rss

    rng = np.random.default_rng(0)
    ids = pa.array(sorted(f"AF-A0A{k:07d}-F1-model_v4_f{k % 5}" for k in range(n)))
    fragments = FragmentIndex(ids, rng.integers(20, 400, n), rng.uniform(65, 95, n))
    reps = np.sort(rng.choice(n, int(n * 0.038), replace=False))
    rep_of = rng.choice(reps, n).astype(np.int32)
    rep_of[reps] = reps
    top = reps[: int(len(reps) * 0.63)]
    merged_into = rng.choice(top, len(reps))
    merged_into[: len(top)] = top
    cluster_rep = merged_into[np.searchsorted(reps, rep_of)].astype(np.int32)
    evidence = {"rep_a": rng.choice(reps, rows), "rep_b": rng.choice(reps, rows), "i": rng.integers(0, n, rows),
                "j": rng.integers(0, n, rows), "source": np.full(rows, "members", dtype=object),
                "tm_a": rng.random(rows), "tm_b": rng.random(rows), "rmsd": rng.random(rows),
                "aligned_length": rng.integers(20, 300, rows).astype(np.int32), "seq_identity": rng.random(rows),
                "decision": np.full(rows, "redundant", dtype=object), "guard_tm": rng.random(rows)}
    audit = SingletonAudit(np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0, np.int64))
    cohesion = summarise(np.zeros((0, 2), np.int64), np.zeros(0))
    out = tempfile.mkdtemp(prefix="rayfold-write-memory-")
    tables: dict = {}
    sample = rise(lambda: sample_singletons(cluster_rep, 1000, 7, fragments.ids))
    build = rise(lambda: tables.update(cluster_tables(fragments, rep_of, cluster_rep, evidence, audit, cohesion)))
    write = rise(lambda: [storage.write_parquet(t, os.path.join(out, name, "part-0.parquet"))
                          for name, t in tables.items()])
    size = sum(os.path.getsize(os.path.join(d, f)) for d, _, fs in os.walk(out) for f in fs)
    print(f"| {n:,} | {rows:,} | {row_group_rows:,} | {sample:.1f} | {build:.1f} | {write:.1f} | {size / 2**20:.2f} |")


def main() -> None:
    n, rows, *groups = (int(x) for x in sys.argv[1:])
    print("| fragments | merge rows | row group rows | singleton sample, MB | tables, MB | writing, MB | files, MiB |\n"
          "|---|---|---|---|---|---|---|")
    for group in groups or [16_384]:  # each in a fresh process: a mark is the process's own
        subprocess.run([sys.executable, __file__, "--child", str(n), str(rows), str(group)], check=True)


if __name__ == "__main__":
    if sys.argv[1] == "--child":
        child(*(int(x) for x in sys.argv[2:5]))
    else:
        main()
