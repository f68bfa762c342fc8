"""Built-in prefilter (rayfold.align.prefilter): recall, candidate fraction and time, side by side.

1. Recall on the TM-align reference (tmalign_reference_pairs.tsv, whole chains): all-vs-all
   `candidate_pairs` within each of its 6 sets; recall = share of the pairs with tm_min >= 0.7
   that are proposed (target >= 0.95).
2. Cost on large pooled sets: every protein chain of every structure file in the shared data,
   per folder and all pooled together: candidates as a share of all pairs (target <= 5%), time
   per fragment; stage 1 alone (k-mer seeding) and stages 1+2 (with the structural check).
3. The same on pLDDT >= 65 trimmed chains (AlphaFold models only; residues below 65 removed and the
   3Di states recomputed on what is left, as the fragment stage does; chains left with < 20
   residues dropped).
4. Against real Foldseek (real_foldseek_outputs: exhaustive easy-search all-vs-all on the
   Mycoplasma, PF04034 and SCOP folders): how many of Foldseek's high-TM pairs our candidates
   include, by several definitions, and how many pairs Foldseek itself reports.

5. Optionally (--scale N), N domain-sized fragments (random windows of the trimmed chains): time
   per fragment and peak traced memory.

    python bench/prefilter_recall.py [--data ../shared/data] [--cache /tmp/rf_chains.pkl]
                                     [--no-trimmed] [--scale 5000] [--set key=value ...]
"""

from __future__ import annotations

import os

for _var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ[_var] = "1"  # one core, as in a Ray worker

import argparse
import collections
import csv
import gzip
import pickle
import sys
import time
from dataclasses import dataclass, fields
from pathlib import Path

import numpy as np

from rayfold.align.alphabet import encode_3di
from rayfold.align.prefilter import PrefilterConfig, candidate_pairs
from rayfold.io.structure import backbone_atoms, read_structure_file, strip_structure_extensions
from rayfold.model.errors import InputError
from rayfold.model.fragset import FragmentSet

STRUCTURE_EXT = (".pdb", ".pdb.gz", ".cif", ".cif.gz", ".ent", ".ent.gz")
# folders whose B-factors are not pLDDT (experimental structures): never trimmed
EXPERIMENTAL = (
    "foldseek/foldseek_example_scop",
    "foldseek/foldseek_regression_homstrad",
    "domain_boundaries/chainsaw_cath1363_labels",
    "domain_boundaries/cath_alphaflow_chainsaw_fixture",
    "afdb_misc_models/cath_alphaflow_fixtures",
)
GROUPS = {  # report group -> folder prefix
    "mycoplasma (AFDB)": "afdb_mycoplasma_mycoides_pdb",
    "pf04034 (AFDB mmCIF)": "afdb_pf04034_knotted_mmcif_v3",
    "scop example": "foldseek/foldseek_example_scop",
    "fold_tree (AFDB)": "foldseek/fold_tree_testdata",
    "homstrad": "foldseek/foldseek_regression_homstrad",
}
FOLDSEEK_SETS = {  # foldseek output prefix -> folder
    "myco": "afdb_mycoplasma_mycoides_pdb",
    "pf": "afdb_pf04034_knotted_mmcif_v3",
    "scop": "foldseek/foldseek_example_scop",
}


@dataclass
class Chain:
    rel: str  # file path relative to the data folder
    chain_id: str
    first: bool  # first protein chain of its file
    n_chains: int  # protein chains in its file
    sequence: str
    ca: np.ndarray
    states: str
    plddt: np.ndarray
    trim_sequence: str | None = None  # pLDDT >= 65 residues only (None: not an AlphaFold model)
    trim_ca: np.ndarray | None = None
    trim_states: str | None = None

    @property
    def foldseek_name(self) -> str:
        stem = strip_structure_extensions(self.rel)
        return stem if self.n_chains == 1 else f"{stem}_{self.chain_id}"


def load_chains(data: Path, cache: Path | None) -> list[Chain]:
    if cache is not None and cache.exists():
        with open(cache, "rb") as fh:
            return pickle.load(fh)
    files = sorted(
        str(p.relative_to(data)) for p in data.rglob("*") if p.is_file() and p.name.lower().endswith(STRUCTURE_EXT)
    )
    out: list[Chain] = []
    for rel in files:
        try:
            entry = read_structure_file(data / rel)
        except InputError as exc:
            print(f"  skipped {rel}: {exc}", file=sys.stderr)
            continue
        experimental = rel.startswith(EXPERIMENTAL)
        for k, ch in enumerate(entry.chains):
            idx = np.arange(ch.n_residues)
            states = encode_3di(*backbone_atoms(entry, ch.chain_id, idx))
            c = Chain(rel, ch.chain_id, k == 0, len(entry.chains), ch.sequence, ch.ca_coords.astype(np.float64),
                      states, ch.plddt)
            if not experimental:
                keep = np.flatnonzero(ch.plddt >= 65.0)
                if len(keep) >= 20:
                    c.trim_sequence = "".join(ch.sequence[i] for i in keep)
                    c.trim_ca = c.ca[keep]
                    c.trim_states = encode_3di(*backbone_atoms(entry, ch.chain_id, keep))
            out.append(c)
    if cache is not None:
        with open(cache, "wb") as fh:
            pickle.dump(out, fh)
    return out


def fragment_set(chains: list[Chain], trimmed: bool = False) -> FragmentSet:
    if trimmed:
        chains = [c for c in chains if c.trim_states is not None or c.rel.startswith(EXPERIMENTAL)]
        pick = [
            (c.trim_ca, c.trim_sequence, c.trim_states) if c.trim_states is not None else (c.ca, c.sequence, c.states)
            for c in chains
        ]
    else:
        pick = [(c.ca, c.sequence, c.states) for c in chains]
    return FragmentSet.from_arrays(
        [f"{c.rel}:{c.chain_id}" for c in chains],
        [p[0] for p in pick],
        [p[1] for p in pick],
        None,
        [p[2] for p in pick],
    )


def timed(fs: FragmentSet, config: PrefilterConfig) -> tuple[np.ndarray, float]:
    start = time.perf_counter()
    pairs = candidate_pairs(fs, config)
    return pairs, time.perf_counter() - start


def compatible_pairs(lengths: np.ndarray, ratio: float) -> int:
    s = np.sort(lengths)
    hi = np.searchsorted(s, np.floor(s / ratio + 1e-9), side="right")
    return int((hi - np.arange(len(s)) - 1).sum())


def table(header: list[str], rows: list[list[object]]) -> None:
    cells = [[str(x) for x in header]] + [[f"{x:.3f}" if isinstance(x, float) else str(x) for x in r] for r in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(header))]
    for k, r in enumerate(cells):
        print("  " + "  ".join(v.rjust(w) if i else v.ljust(w) for i, (v, w) in enumerate(zip(r, widths))))
        if k == 0:
            print("  " + "  ".join("-" * w for w in widths))


# ------------------------------------------------------------------------------------------------


def reference_recall(data: Path, chains: list[Chain], config: PrefilterConfig) -> None:
    print("\n1. Recall on the TM-align reference (whole chains, all-vs-all within each set)")
    first = {c.rel: c for c in chains if c.first}
    sets: dict[str, list[dict[str, str]]] = collections.defaultdict(list)
    with open(data / "tmalign_reference" / "tmalign_reference_pairs.tsv") as fh:
        for row in csv.DictReader(fh, delimiter="\t"):
            sets[row["set"]].append(row)
    rows = []
    tot_pos = tot_hit = tot_ca = 0
    for name, prs in sets.items():
        files = sorted({r["chain_1"] for r in prs} | {r["chain_2"] for r in prs})
        ix = {f: i for i, f in enumerate(files)}
        fs = fragment_set([first[f] for f in files])
        pairs, dt = timed(fs, config)
        got = set(map(tuple, pairs.tolist()))
        bare = FragmentSet(fs.ids, fs.flat_coords, fs.offsets, fs.sequences, fs.mean_plddt, None)
        got_ca = set(map(tuple, candidate_pairs(bare, config).tolist()))  # C-alpha-only 3Di
        pos = [tuple(sorted((ix[r["chain_1"]], ix[r["chain_2"]]))) for r in prs if float(r["tm_min"]) >= 0.7]
        neg = [tuple(sorted((ix[r["chain_1"]], ix[r["chain_2"]]))) for r in prs if float(r["tm_min"]) < 0.7]
        hit = sum(p in got for p in pos)
        hit_ca = sum(p in got_ca for p in pos)
        tot_pos += len(pos)
        tot_hit += hit
        tot_ca += hit_ca
        n = len(files)
        rows.append([name, n, len(pos), hit, hit / len(pos) if pos else float("nan"),
                     hit_ca / len(pos) if pos else float("nan"),
                     f"{sum(p in got for p in neg)}/{len(neg)}", len(pairs), len(pairs) / (n * (n - 1) / 2),
                     round(1000 * dt / n, 1)])
        for p in pos:
            if p not in got:
                print(f"    missed: {files[p[0]]} {files[p[1]]}")
    rows.append(["all sets", "", tot_pos, tot_hit, tot_hit / tot_pos, tot_ca / tot_pos, "", "", "", ""])
    table(["set", "n", "tm_min>=0.7", "found", "recall", "recall CA-only", "tm_min<0.7 proposed", "candidates",
           "fraction", "ms/frag"], rows)
    print("  (recall CA-only: the same without 3Di states, approximated from C-alpha by the fallback)")


def cost(chains: list[Chain], config: PrefilterConfig, trimmed: bool) -> dict[str, tuple[list[Chain], np.ndarray]]:
    label = "pLDDT>=65-trimmed chains (AlphaFold models; experimental chains whole)" if trimmed else "whole chains"
    print(f"\n{'3' if trimmed else '2'}. Cost on pooled sets: {label}")
    stage1 = PrefilterConfig(**{f.name: getattr(config, f.name) for f in fields(config)} | {"structural_check": False})
    groups = {name: [c for c in chains if c.rel.startswith(prefix)] for name, prefix in GROUPS.items()}
    groups["other folders"] = [c for c in chains if not any(c.rel.startswith(p) for p in GROUPS.values())]
    groups["ALL pooled"] = list(chains)
    rows = []
    results = {}
    for name, members in groups.items():
        fs = fragment_set(members, trimmed)
        members = [c for c in members if c.trim_states is not None or c.rel.startswith(EXPERIMENTAL)] if trimmed else members
        n = len(fs)
        if n < 2:
            continue
        allp = n * (n - 1) // 2
        seeded, dt1 = timed(fs, stage1)
        pairs, dt = timed(fs, config)
        results[name] = (members, pairs)
        rows.append([name, n, int(fs.lengths.sum()), allp, compatible_pairs(fs.lengths, config.min_length_ratio),
                     len(seeded), len(pairs), len(pairs) / allp, round(1000 * dt1 / n, 1), round(1000 * dt / n, 1)])
    table(["set", "n", "residues", "all pairs", "length-ok", "stage-1 pairs", "candidates", "fraction",
           "ms/frag st.1", "ms/frag total"], rows)
    return results


def read_foldseek(path: Path) -> list[tuple[str, str, float, float, float]]:
    out = []
    with gzip.open(path, "rt") as fh:
        for line in fh:
            f = line.rstrip("\n").split("\t")
            out.append((f[0], f[1], float(f[13]), float(f[14]), float(f[15])))
    return out


def foldseek_compare(data: Path, results: dict[str, tuple[list[Chain], np.ndarray]]) -> None:
    print("\n4. Against real Foldseek (exhaustive easy-search all-vs-all, whole chains, its approximate TM)")
    base = data / "foldseek" / "real_foldseek_outputs"
    rows = []
    for prefix, folder in FOLDSEEK_SETS.items():
        name = next(k for k, v in GROUPS.items() if v == folder)
        if name not in results or not (base / f"{prefix}_search.m8.gz").exists():
            continue
        members, pairs = results[name]
        ix = {c.foldseek_name: i for i, c in enumerate(members)}
        got = set(map(tuple, pairs.tolist()))
        hits = read_foldseek(base / f"{prefix}_search.m8.gz")
        aln: dict[tuple[int, int], list[float]] = collections.defaultdict(list)
        mintm: dict[tuple[int, int], float] = {}
        for q, t, alntm, qtm, ttm in hits:
            if q == t or q not in ix or t not in ix:
                continue
            key = (min(ix[q], ix[t]), max(ix[q], ix[t]))
            aln[key].append(alntm)
            mintm[key] = max(mintm.get(key, 0.0), min(qtm, ttm))
        n = len(members)
        defs = {
            "all Foldseek hit pairs (e<=10)": set(aln),
            "alntmscore>=0.7 both directions": {k for k, v in aln.items() if len(v) == 2 and min(v) >= 0.7},
            "alntmscore>=0.7 either direction": {k for k, v in aln.items() if max(v) >= 0.7},
            "min(qtm,ttm)>=0.7 (its min-TM)": {k for k, v in mintm.items() if v >= 0.7},
        }
        for label, ref in defs.items():
            hit = len(ref & got)
            rows.append([f"{prefix} (n={n})", label, len(ref), hit, hit / len(ref) if ref else float("nan")])
        rows.append([f"{prefix} (n={n})", "ours: candidates / not in any Foldseek hit", len(got),
                     len(got - set(aln)), ""])
    table(["set", "Foldseek pairs", "pairs", "in our candidates", "share"], rows)
    print("  alntmscore is Foldseek's TM-score normalised by its alignment length: a shared core inside")
    print("  longer, different chains scores high there but cannot reach min-TM 0.7 on whole chains;")
    print("  min(qtm, ttm) is Foldseek's own estimate of the rule the prefilter serves.")


def scale(chains: list[Chain], config: PrefilterConfig, n: int) -> None:
    """Many domain-sized fragments: random windows (60-250 residues) of the trimmed chains."""
    import tracemalloc

    print(f"\n5. Scale: {n} fragments = random 60-250-residue windows of the trimmed chains (3Di of the")
    print("   whole chain, cut; overlapping windows of one chain are true pairs, so candidates are many)")
    src = [(c.trim_ca, c.trim_states) if c.trim_states is not None else (c.ca, c.states) for c in chains]
    rng = np.random.default_rng(1)
    ids, coords, states = [], [], []
    for i in range(n):
        ca, st = src[int(rng.integers(len(src)))]
        length = int(min(len(st), rng.integers(60, 250)))
        a = int(rng.integers(0, len(st) - length + 1))
        ids.append(f"w{i}")
        coords.append(ca[a : a + length])
        states.append(st[a : a + length])
    fs = FragmentSet.from_arrays(ids, coords, ["A" * len(x) for x in states], None, states)
    stage1 = PrefilterConfig(**{f.name: getattr(config, f.name) for f in fields(config)} | {"structural_check": False})
    seeded, dt1 = timed(fs, stage1)
    tracemalloc.start()
    pairs, dt = timed(fs, config)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    allp = n * (n - 1) // 2
    table(["n", "residues", "stage-1 pairs", "candidates", "fraction", "ms/frag st.1", "ms/frag total",
           "peak MB (traced)"],
          [[n, int(fs.lengths.sum()), len(seeded), len(pairs), len(pairs) / allp, round(1000 * dt1 / n, 1),
            round(1000 * dt / n, 1), round(peak / 2**20)]])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, default=Path(__file__).resolve().parents[2] / "shared" / "data")
    ap.add_argument("--cache", type=Path, default=None, help="pickle of the encoded chains (made if missing)")
    ap.add_argument("--no-trimmed", action="store_true")
    ap.add_argument("--scale", type=int, default=0, metavar="N", help="also time N window fragments (e.g. 5000)")
    ap.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE", help="PrefilterConfig overrides")
    args = ap.parse_args()
    from rayfold.config import with_overrides

    config = with_overrides(PrefilterConfig(), dict(kv.split("=", 1) for kv in args.set))
    print(f"PrefilterConfig: {config}")
    start = time.perf_counter()
    chains = load_chains(args.data, args.cache)
    print(f"{len(chains)} chains, {sum(len(c.sequence) for c in chains)} residues "
          f"(read + 3Di-encoded in {time.perf_counter() - start:.1f}s)")
    reference_recall(args.data, chains, config)
    results = cost(chains, config, trimmed=False)
    if not args.no_trimmed:
        cost(chains, config, trimmed=True)
    foldseek_compare(args.data, results)
    if args.scale:
        scale(chains, config, args.scale)


if __name__ == "__main__":
    main()
