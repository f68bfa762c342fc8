"""Fragmenting speed, measured side by side in one run.

1. Per-structure time of parse-only vs parse + fragment on the shared AFDB models (target <= 2.0x),
   and the whole stage as the pipeline runs it (`FragmentStage.process` over work units of 16 files:
   reading the files and building the tables included) against reading and parsing them.
2. The dense-eigh splitter (the seed's method: numpy eigh of the full normalized Laplacian at every
   split) vs rayfold's sparse shift-invert splitter on chains over 1,000 residues (target >= 20x),
   with a check that both give the same cuts.

    python bench/fragment_speed.py [--data ../shared/data] [--limit N]
"""

from __future__ import annotations

import os

for _var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ[_var] = "1"  # one BLAS thread, as in a Ray worker

import argparse
import glob
import statistics
import time
from pathlib import Path

import numpy as np

from rayfold.align.alphabet import encode_fragment
from rayfold.config import FragmentConfig
from rayfold.fragment.chain import fragment_chain
from rayfold.fragment.spectral import recursive_bisection
from rayfold.fragment.stage import FragmentStage
from rayfold.io.storage import list_inputs
from rayfold.io.structure import parse_structure

AFDB_SETS = ("afdb_mycoplasma_mycoides_pdb", "afdb_pf04034_knotted_mmcif_v3", "afdb_misc_models")


def structure_files(data: Path) -> list[Path]:
    files: list[Path] = []
    for name in AFDB_SETS:
        for pattern in ("**/*.pdb.gz", "**/*.cif.gz"):
            files += [Path(p) for p in glob.glob(str(data / name / pattern), recursive=True)]
    return sorted(f for f in files if "merizo_output" not in str(f))


def best_of(fn, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def parse_vs_fragment(files: list[Path], repeats: int) -> None:
    config = FragmentConfig()
    parse_total = full_total = stage_total = 0.0
    residues = 0
    for path in files:
        data = path.read_bytes()
        entry = parse_structure(data, path.name)
        residues += sum(c.n_residues for c in entry.chains)
        parse_total += best_of(lambda: parse_structure(data, path.name), repeats)

        def full() -> None:
            parsed = parse_structure(data, path.name)
            for chain in parsed.chains:
                fragment_chain(chain, config)

        full_total += best_of(full, repeats)

        def with_3di() -> None:  # what the fragment stage does: also 3Di of every passed fragment
            parsed = parse_structure(data, path.name)
            for chain in parsed.chains:
                for fragment in fragment_chain(chain, config).fragments:
                    if fragment.passed:
                        encode_fragment(parsed, chain.chain_id, fragment.residue_index)

        stage_total += best_of(with_3di, repeats)
    n = len(files)
    print(f"\n## parse-only vs parse+fragment ({n} AFDB models, {residues} residues, best of {repeats})")
    print("| step | ms per structure |")
    print("|---|---|")
    print(f"| parse only | {1000 * parse_total / n:.1f} |")
    print(f"| parse + fragment | {1000 * full_total / n:.1f} |")
    print(f"| parse + fragment + 3Di of passed fragments (the fragment stage) | {1000 * stage_total / n:.1f} |")
    print(f"ratio parse+fragment / parse = {full_total / parse_total:.2f}x (target <= 2.0x); "
          f"with 3Di {stage_total / parse_total:.2f}x")


def whole_stage(files: list[Path], repeats: int) -> None:
    """`FragmentStage.process` in work units of 16 files against reading and parsing the same files."""
    refs = list_inputs([str(p) for p in files])
    units = [refs[k : k + 16] for k in range(0, len(refs), 16)]
    stage = FragmentStage(FragmentConfig())
    read_parse = sum(best_of(lambda p=p: parse_structure(p.read_bytes(), p.name), repeats) for p in files)
    process = sum(best_of(lambda u=u: stage.process(u), repeats) for u in units)
    n = len(files)
    print(f"\n## the whole stage ({len(units)} work units of up to 16 files, best of {repeats})")
    print("| step | ms per structure |")
    print("|---|---|")
    print(f"| read + parse | {1000 * read_parse / n:.1f} |")
    print(f"| FragmentStage.process (read, parse, fragment, 3Di, tables) | {1000 * process / n:.1f} |")
    print(f"ratio {process / read_parse:.2f}x")


def dense_vs_sparse(files: list[Path], min_residues: int, repeats: int) -> None:
    config = FragmentConfig()
    kwargs = dict(
        k=config.knn_k, sigma=config.sigma, connectivity_threshold=config.connectivity_threshold,
        scaled_threshold=config.scaled_connectivity_threshold, boundary_size=config.boundary_size,
        min_partition_size=config.min_partition_size,
    )
    rows = []
    for path in files:
        entry = parse_structure(path.read_bytes(), path.name)
        for chain in entry.chains:
            if chain.n_residues <= min_residues:
                continue
            coords = chain.ca_coords.astype(np.float64)
            # best of `repeats` for both solvers, as in part 1: single runs on a shared machine
            # scattered the sparse times by up to 2x run to run
            dense = recursive_bisection(coords, solver="dense", **kwargs)
            sparse = recursive_bisection(coords, solver="sparse", **kwargs)
            td = best_of(lambda: recursive_bisection(coords, solver="dense", **kwargs), repeats)
            ts = best_of(lambda: recursive_bisection(coords, solver="sparse", **kwargs), repeats)
            same = [leaf.tolist() for leaf in dense.leaves] == [leaf.tolist() for leaf in sparse.leaves] and (
                dense.linkers.tolist() == sparse.linkers.tolist()
            )
            rows.append((entry.entry_id, chain.n_residues, len(dense.leaves), td, ts, same))
    print(f"\n## dense eigh splitter vs sparse shift-invert splitter (chains > {min_residues} residues, whole chain, best of {repeats})")
    print("| entry | residues | leaves | dense s | sparse s | speed-up | same cuts |")
    print("|---|---|---|---|---|---|---|")
    for entry_id, n, leaves, td, ts, same in rows:
        print(f"| {entry_id} | {n} | {leaves} | {td:.2f} | {ts:.3f} | {td / ts:.0f}x | {same} |")
    dense_total = sum(r[3] for r in rows)
    sparse_total = sum(r[4] for r in rows)
    print(f"total: dense {dense_total:.1f} s, sparse {sparse_total:.2f} s, speed-up {dense_total / sparse_total:.1f}x "
          f"(target >= 20x); median per-chain speed-up "
          f"{statistics.median(r[3] / r[4] for r in rows):.1f}x; identical cuts on {sum(r[5] for r in rows)}/{len(rows)} chains")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default=str(Path(__file__).resolve().parents[2] / "shared" / "data"))
    parser.add_argument("--limit", type=int, help="use only the first N structures for part 1")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--min-residues", type=int, default=1000)
    args = parser.parse_args()
    files = structure_files(Path(args.data))
    parse_vs_fragment(files[: args.limit] if args.limit else files, args.repeats)
    whole_stage(files[: args.limit] if args.limit else files, args.repeats)
    dense_vs_sparse(files, args.min_residues, args.repeats)


if __name__ == "__main__":
    main()
