"""Building the object-store shards for clustering: every part file read once, whatever its ids.

A shard holds 4,096 fragments in id order (the layout must depend on the ids alone). Round 6's
loader had each shard task read every part file its rows came from, whole, and keep its rows; that
costs one read of the data when each part covers a narrow id range (inputs of one release, in id
order), and a read per shard when the parts' ids spread over the whole range (AlphaFold DB's
proteome tars: one part per tar): F^2 / shard size. The loader now reads groups of parts once and
cuts the shards out of the groups' tables in the object store (`runtime/shards.py`).

The bench rewrites one fragments table in two layouts and, for each, on one local Ray, times side
by side (each the median of `--repeats`):
- floor: every part read once (a task per part, the shard columns): what any loader must pay;
- now: `load_fragments`, until every shard is built (none fetched to the driver);
- round 6: the per-shard reading above, re-implemented here as it was;
and prints part-file reads and the ratios to the floor.

    python bench/shard_loading.py /tmp/lin/bench/n100000 [--spread-parts 50] [--contiguous-rows 30]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from rayfold.io.storage import parquet_parts, read_parquet_part
from rayfold.runtime.clustering import load_fragments
from rayfold.runtime.session import WORKER_ENV, ray_remote, ray_session
from rayfold.runtime.shards import SHARD_COLUMNS, fragment_catalogue

SHARD_SIZE = 4096


def write_layouts(source: str, work: Path, spread_parts: int, contiguous_rows: int, seed: int = 0) -> dict[str, Path]:
    """The passed rows of `source` as parts of `contiguous_rows` in id order, and as `spread_parts`
    parts whose rows are drawn at random (each part's ids span the whole range)."""
    folder = Path(source) / "fragments" if (Path(source) / "fragments").is_dir() else Path(source)
    table = pa.concat_tables([pq.read_table(p) for p in sorted(folder.glob("*.parquet"))])
    table = table.filter(table.column("passed")).sort_by("fragment_id")
    layouts = {"contiguous": work / "contiguous", "spread": work / "spread"}
    for path in layouts.values():
        path.mkdir(parents=True)
    for k, start in enumerate(range(0, table.num_rows, contiguous_rows)):
        pq.write_table(table.slice(start, contiguous_rows), layouts["contiguous"] / f"part-{k:06d}.parquet")
    which = np.random.default_rng(seed).integers(0, spread_parts, table.num_rows)
    for k in range(spread_parts):
        pq.write_table(table.filter(pa.array(which == k)), layouts["spread"] / f"part-{k:06d}.parquet")
    return layouts


def _read_part(uri: str) -> int:
    return read_parquet_part(uri, columns=SHARD_COLUMNS).num_rows


def _round6_shard(parts: list[str], rows: list[np.ndarray]) -> int:
    """Round 6's shard task: each touched part read whole, its rows taken."""
    tables = [read_parquet_part(p, columns=SHARD_COLUMNS).take(pa.array(r)) for p, r in zip(parts, rows)]
    return pa.concat_tables(tables).sort_by("fragment_id").num_rows


def floor(parts: list[str]) -> tuple[float, int]:
    import ray

    task = ray_remote(_read_part, runtime_env={"env_vars": WORKER_ENV})
    start = time.perf_counter()
    rows = sum(ray.get([task.remote(p) for p in parts]))
    return time.perf_counter() - start, rows


def now(folder: str) -> tuple[float, int]:
    import ray

    start = time.perf_counter()
    sharded = load_fragments(folder, shard_size=SHARD_SIZE)
    ray.wait(sharded.refs, num_returns=len(sharded.refs), fetch_local=False)
    return time.perf_counter() - start, len(sharded)


def round6(parts: list[str]) -> tuple[float, int, int]:
    """(seconds, fragments, part reads) of the per-shard reading."""
    import ray

    task = ray_remote(_round6_shard, runtime_env={"env_vars": WORKER_ENV})
    start = time.perf_counter()
    catalogue = fragment_catalogue(parts)
    order = pc.sort_indices(catalogue.column("fragment_id")).to_numpy()
    part = catalogue.column("part").to_numpy()[order]
    row = catalogue.column("row").to_numpy()[order]
    refs, reads = [], 0
    for s in range(0, len(part), SHARD_SIZE):
        p_here, r_here = part[s:s + SHARD_SIZE], row[s:s + SHARD_SIZE]
        touched = np.unique(p_here).tolist()
        reads += len(touched)
        refs.append(task.remote([parts[p] for p in touched], [np.sort(r_here[p_here == p]) for p in touched]))
    rows = sum(ray.get(refs))
    return time.perf_counter() - start, rows, reads


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("source", help="a fragments dataset (or a run folder holding one)")
    parser.add_argument("--spread-parts", type=int, default=50)
    parser.add_argument("--contiguous-rows", type=int, default=30, help="~16 structure files, the default work unit")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="rayfold-shard-loading-") as work:
        layouts = write_layouts(args.source, Path(work), args.spread_parts, args.contiguous_rows)
        print("| layout | parts | shards | part reads, round 6 / now | floor (s) | now (s) | round 6 (s) | "
              "now / floor | round 6 / floor |\n|---|---|---|---|---|---|---|---|---|")
        with ray_session():
            for name, folder in layouts.items():
                parts = parquet_parts(str(folder))
                timings: dict[str, list[float]] = {"floor": [], "now": [], "round6": []}
                for _ in range(args.repeats):
                    seconds, fragments = floor(parts)
                    timings["floor"].append(seconds)
                    seconds, loaded = now(str(folder))
                    assert loaded == fragments, (loaded, fragments)
                    timings["now"].append(seconds)
                    seconds, loaded, reads = round6(parts)
                    assert loaded == fragments, (loaded, fragments)
                    timings["round6"].append(seconds)
                f, n, r = (statistics.median(timings[k]) for k in ("floor", "now", "round6"))
                print(f"| {name} | {len(parts)} | {-(-fragments // SHARD_SIZE)} | {reads} / {len(parts)} | "
                      f"{f:.1f} | {n:.1f} | {r:.1f} | {n / f:.2f} | {r / f:.2f} |", flush=True)


if __name__ == "__main__":
    main()
