"""Per-unit costs for the cost model in docs/scaling.md, measured in one run on one core.

What it measures (each time is the minimum of a few repeats: the machine is shared and noisy):

1. Fragmenting, on ~100 AFDB models of the shared data (every 3rd of the three AFDB sets): read
   (local disk), parse, parse + fragment, parse + fragment + 3Di (the 3Di share), the whole
   `FragmentStage` (tables included); fragments, passed fragments and residues per structure.
2. Bytes: input (gzipped structure) per structure, Parquet (zstd, as `rayfold.io.storage.write_parquet`)
   per fragments / chains / members row, Arrow in memory per fragments row, pickled `FragmentSet`
   (what `ray.put` ships to the clustering tasks) per passed fragment.
3. TM-align (tmtools, via `rayfold.align.tmalign.align`) per pair at 50, 100, 200, 400, 800 residues, on
   real fragment coordinates cropped to exactly that length (few pairs at 800), plus random
   length-compatible pairs (what the singleton audit aligns).
4. Prefilter (`rayfold.align.prefilter.search`, all queries vs all targets as `runtime.clustering.RayPrefilter`
   runs it): ms per query and candidate pairs per fragment at a few set sizes.
5. A small clustering run in-process, stage by stage, with the same functions as
   `pipeline.cluster_fragments` (built-in engine, no Ray): candidate pairs, TM-align calls per
   fragment, first-pass clusters, audit calls, merges, set-cover time; on the `diverse` set of
   bench/cluster_speed.py (300 fragments evenly spaced, as in the README).
6. Union-find (`forest_from_edges`) per edge.

    python bench/unit_costs.py [--json out.json] [--quick]

The whole run takes about 3-4 minutes on 2 cores (--quick: about 1 minute).
"""

from __future__ import annotations

import os

for _var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENMP_NUM_THREADS"):
    os.environ[_var] = "1"  # one BLAS thread, as in a Ray worker

import argparse
import datetime
import json
import logging
import pickle
import platform
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pyarrow as pa

sys.path.insert(0, str(Path(__file__).resolve().parent))
from cluster_speed import DATA, SETS
from fragment_speed import best_of, structure_files
from rayfold.align.alphabet import encode_fragment
from rayfold.align.prefilter import PrefilterConfig, search
from rayfold.align.tmalign import align, align_pairs
from rayfold.cluster import rules as algo
from rayfold.cluster.cohesion import summarise
from rayfold.cluster.linkage import link_clusters
from rayfold.cluster.rules import ClusterConfig
from rayfold.cluster.tables import cluster_tables
from rayfold.config import FragmentConfig
from rayfold.fragment.chain import fragment_chain
from rayfold.fragment.stage import FragmentStage
from rayfold.io.storage import list_inputs, write_parquet
from rayfold.io.structure import parse_structure
from rayfold.model.fragset import FragmentSet
from rayfold.model.unionfind import forest_from_edges

TM_LENGTHS = (50, 100, 200, 400, 800)


def parquet_bytes(table: pa.Table) -> int:
    """Size of `table` written as one zstd Parquet file, exactly as rayfold writes its parts."""
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "part.parquet")
        write_parquet(table, path)
        return os.path.getsize(path)


def parquet_write_seconds(table: pa.Table, repeats: int) -> float:
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "part.parquet")
        return best_of(lambda: write_parquet(table, path), repeats)


# --- 1 + 2: fragmenting and bytes -----------------------------------------------------------------


def fragmenting(sample: list[Path], repeats: int) -> dict:
    config = FragmentConfig()
    t_read = t_parse = t_frag = t_3di = 0.0
    residues = fragments = passed = passed_residues = 0
    input_bytes = 0
    for path in sample:
        data = path.read_bytes()
        input_bytes += len(data)
        entry = parse_structure(data, path.name)
        residues += sum(c.n_residues for c in entry.chains)
        for chain in entry.chains:
            for f in fragment_chain(chain, config).fragments:
                fragments += 1
                passed += int(f.passed)
                passed_residues += f.n_residues if f.passed else 0
        t_read += best_of(lambda path=path: path.read_bytes(), repeats)
        t_parse += best_of(lambda data=data, name=path.name: parse_structure(data, name), repeats)

        def full(data: bytes = data, name: str = path.name) -> None:
            parsed = parse_structure(data, name)
            for chain in parsed.chains:
                fragment_chain(chain, config)

        def with_3di(data: bytes = data, name: str = path.name) -> None:
            parsed = parse_structure(data, name)
            for chain in parsed.chains:
                for f in fragment_chain(chain, config).fragments:
                    if f.passed:
                        encode_fragment(parsed, chain.chain_id, f.residue_index)

        t_frag += best_of(full, repeats)
        t_3di += best_of(with_3di, repeats)

    # the whole stage (tables built), in work units of 16 files as the pipeline runs it
    refs = list_inputs([str(p) for p in sample])
    units = [refs[k : k + 16] for k in range(0, len(refs), 16)]
    stage = FragmentStage(config)
    t_stage = sum(best_of(lambda u=u: stage.process(u), max(1, repeats - 1)) for u in units)
    results = [stage.process(u) for u in units]
    frag_table = pa.concat_tables([r.fragments for r in results])
    chain_table = pa.concat_tables([r.chains for r in results])
    n = len(sample)
    passed_table = frag_table.filter(frag_table.column("passed"))
    fs = FragmentSet.from_table(frag_table)
    blob = pickle.dumps(fs, protocol=5)
    pickled = len(blob)
    # every task that takes the FragmentSet as an argument unpickles it: NumPy arrays come zero-copy
    # from the object store, the Python lists (ids, sequences, 3Di strings) are rebuilt per call
    unpickle = best_of(lambda: pickle.loads(blob), repeats)
    return {
        "structures": n,
        "residues_per_structure": residues / n,
        "input_bytes_per_structure": input_bytes / n,
        "read_ms_per_structure_local": 1000 * t_read / n,
        "parse_ms_per_structure": 1000 * t_parse / n,
        "parse_fragment_ms_per_structure": 1000 * t_frag / n,
        "parse_fragment_3di_ms_per_structure": 1000 * t_3di / n,
        "share_3di": (t_3di - t_frag) / t_3di,
        "stage_ms_per_structure": 1000 * t_stage / n,
        "stage_ms_per_1000_residues": 1000 * t_stage / residues * 1000,
        "fragments_per_structure": fragments / n,
        "passed_per_structure": passed / n,
        "residues_per_passed_fragment": passed_residues / max(1, passed),
        "parquet_bytes_per_fragment_row": parquet_bytes(frag_table) / frag_table.num_rows,
        "parquet_bytes_per_passed_fragment_row": parquet_bytes(passed_table) / max(1, passed_table.num_rows),
        "arrow_bytes_per_fragment_row": frag_table.nbytes / frag_table.num_rows,
        "parquet_bytes_per_chain_row": parquet_bytes(chain_table) / max(1, chain_table.num_rows),
        "parquet_write_us_per_fragment_row": 1e6 * parquet_write_seconds(frag_table, repeats) / frag_table.num_rows,
        "fragmentset_pickle_bytes_per_passed_fragment": pickled / max(1, len(fs)),
        "fragmentset_pickle_bytes_per_residue": pickled / max(1, int(fs.lengths.sum())),
        "fragmentset_unpickle_us_per_fragment": 1e6 * unpickle / max(1, len(fs)),
    }


# --- 3: TM-align by length ------------------------------------------------------------------------


def cropped(pool: FragmentSet, length: int, k: int) -> list[tuple[np.ndarray, str]]:
    """Up to k real fragments of at least `length` residues (the shortest such first), each cut to
    exactly `length` residues around its centre."""
    order = [i for i in np.argsort(pool.lengths, kind="stable") if pool.lengths[i] >= length][:k]
    out = []
    for i in order:
        start = (int(pool.lengths[i]) - length) // 2
        out.append((pool.coords[i][start : start + length], pool.sequences[i][start : start + length]))
    return out


def tmalign_by_length(pool: FragmentSet, repeats: int, quick: bool) -> dict:
    rows = {}
    plan = {50: 9, 100: 8, 200: 6, 400: 4, 800: 3} if not quick else {50: 5, 100: 5, 200: 4, 400: 3, 800: 2}
    for length in TM_LENGTHS:
        chains = cropped(pool, length, plan[length])
        pairs = [(a, b) for a in range(len(chains)) for b in range(a + 1, len(chains))]
        if length == 800:
            pairs = pairs[:3]
        if not pairs:
            continue
        reps = max(1, repeats - 1) if length >= 800 else repeats
        times = []
        for a, b in pairs:
            (xa, sa), (xb, sb) = chains[a], chains[b]
            times.append(best_of(lambda xa=xa, sa=sa, xb=xb, sb=sb: align(xa, sa, xb, sb), reps))
        rows[length] = {"pairs": len(pairs), "mean_ms": 1000 * float(np.mean(times)),
                        "median_ms": 1000 * float(np.median(times)), "repeats": reps}
    lengths = np.array(sorted(rows))
    means = np.array([rows[L]["mean_ms"] for L in lengths])
    slope, intercept = np.polyfit(np.log(lengths), np.log(means), 1)
    return {"by_length": rows, "fit_exponent": float(slope), "fit_ms_at_100": float(np.exp(intercept) * 100**slope)}


def random_reachable_pairs(pool: FragmentSet, n_pairs: int, ratio: float, seed: int = 0) -> tuple[dict, float]:
    """Mean TM-align time of random pairs whose length ratio can reach `ratio` (what an all-vs-all
    audit aligns), and the share of all pairs that are reachable."""
    rng = np.random.default_rng(seed)
    n = len(pool)
    a, b = np.triu_indices(n, k=1)
    all_pairs = np.column_stack([a, b])
    ok = algo.reachable(all_pairs, pool.lengths, ratio)
    share = len(ok) / len(all_pairs)
    pick = ok[rng.choice(len(ok), size=min(n_pairs, len(ok)), replace=False)]
    start = time.perf_counter()
    align_pairs(pool, pick)
    seconds = time.perf_counter() - start
    return {"pairs": len(pick), "mean_ms": 1000 * seconds / len(pick),
            "mean_length": float(pool.lengths[pick].mean())}, share


# --- 4 + 5: prefilter and a clustering run, stage by stage ------------------------------------------


def candidate_pairs(fs: FragmentSet, config: PrefilterConfig) -> np.ndarray:
    """Exactly what `runtime.clustering.RayPrefilter` computes (one chunk: every query vs every target)."""
    pairs = search(fs, fs, config)
    pairs = np.sort(pairs, axis=1)
    pairs = pairs[pairs[:, 0] != pairs[:, 1]]
    return np.unique(pairs, axis=0) if len(pairs) else pairs.reshape(0, 2)


class _PrefilterLog(logging.Handler):
    """Keeps the prefilter's own debug line: seeded pairs and the times of its two stages."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[tuple] = []

    def emit(self, record: logging.LogRecord) -> None:
        if record.msg.startswith("prefilter:") and len(record.args or ()) == 6:
            self.records.append(record.args)


def prefilter_scaling(full: FragmentSet, sizes: list[int], repeats: int) -> list[dict]:
    """ms per query at several set sizes, split into stage 1 (k-mer seeding, grows with the number
    of targets) and stage 2 (structural check of at most `max_candidates` seeded pairs per query)."""
    rows = []
    config = PrefilterConfig()
    logger = logging.getLogger("rayfold.align.prefilter")
    handler = _PrefilterLog()
    logger.addHandler(handler)
    level = logger.level
    logger.setLevel(logging.DEBUG)
    try:
        for size in sizes:
            fs = full.subset(np.linspace(0, len(full) - 1, size).astype(int)) if size < len(full) else full
            best = None
            for _ in range(repeats):
                handler.records.clear()
                start = time.perf_counter()
                pairs = candidate_pairs(fs, config)
                seconds = time.perf_counter() - start
                if best is None or seconds < best[0]:
                    best = (seconds, pairs, list(handler.records))
            seconds, pairs, records = best
            seeded = sum(r[2] for r in records)
            stage1 = sum(r[3] for r in records)
            stage2 = sum(r[5] for r in records)
            n = len(fs)
            rows.append({"fragments": n, "ms_per_query": 1000 * seconds / n,
                         "stage1_ms_per_query": 1000 * stage1 / n, "stage2_ms_per_query": 1000 * stage2 / n,
                         "seeded_pairs_per_query": seeded / n,
                         "candidate_pairs_per_fragment": len(pairs) / n,
                         "candidate_share_of_pairs": len(pairs) / (n * (n - 1) / 2),
                         "mean_length": float(fs.lengths.mean()), "repeats": repeats})
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)
    return rows


def stage1_hits(fs: FragmentSet) -> dict:
    """k-mer hits per query of the prefilter's stage 1, per target in the set (hits grow linearly
    with the number of targets, so all-vs-all stage 1 is quadratic), with the default settings and
    with the k-mer document-frequency cap forced on (it is off below `min_kmer_df_cap` targets,
    so small benchmark sets never see it), and the time per hit. Uses prefilter internals."""
    import dataclasses

    from rayfold.align import prefilter as pf

    out = {}
    n = len(fs)
    everything = np.arange(n)
    config = PrefilterConfig()
    # what every prefilter task does on the target side before searching: copy the targets out of
    # the shared FragmentSet (`subset`), compute their k-mers and build the inverted index
    out["target_side_us_per_target"] = {
        "subset": 1e6 * best_of(lambda: fs.subset(everything), 2) / n,
        "kmers_and_index": 1e6 * best_of(lambda: pf._build_index(
            pf._prepare(fs, pf._states(fs, config, "targets"), config), config), 2) / n,
    }
    for label, config in (("default", PrefilterConfig()),
                          ("df_cap_on", dataclasses.replace(PrefilterConfig(), min_kmer_df_cap=0))):
        prep = pf._prepare(fs, pf._states(fs, config, "fragments"), config)
        index = pf._build_index(prep, config)
        lo, hi = pf._length_window(prep.lengths, index.sorted_lengths, config.min_length_ratio)
        hits = 0
        for q in range(len(fs)):
            codes = prep.codes[q][prep.codes[q] >= 0]
            hits += int((np.searchsorted(index.keys, codes * index.n + hi[q])
                         - np.searchsorted(index.keys, codes * index.n + lo[q])).sum())
        seconds = best_of(lambda prep=prep, index=index, config=config:
                          pf._stage1(prep, index, config, self_search=False), 2)
        # default: the same count as prefilter_scaling's largest row
        n_pairs = len(candidate_pairs(fs, config)) if label != "default" else float("nan")
        out[label] = {"hits_per_query_per_target": hits / len(fs) ** 2, "us_per_hit": 1e6 * seconds / max(1, hits),
                      "candidate_pairs_per_fragment": n_pairs / len(fs)}
    return out


def clustering_run(fs: FragmentSet) -> dict:
    """The built-in engine's stages, as in `pipeline.cluster_fragments`, timed one by one, one core."""
    config = ClusterConfig(engine="builtin", singleton_sample=0)
    pconfig = PrefilterConfig()
    n = len(fs)
    times = {}
    t = time.perf_counter()
    rank = algo.priority_order(fs.mean_plddt, fs.lengths, fs.ids)
    pairs = candidate_pairs(fs, pconfig)
    times["prefilter"] = time.perf_counter() - t
    n_candidates = len(pairs)
    pairs = algo.reachable(pairs, fs.lengths, min(config.coverage, config.merge_threshold))
    t = time.perf_counter()
    first = align_pairs(fs, pairs)
    times["first_pass_tmalign"] = time.perf_counter() - t
    t = time.perf_counter()
    reps, members = algo.first_pass_edges(first["i"], first["j"], first["tm_a"], first["tm_b"],
                                          first["cov_a"], first["cov_b"], config)
    rep_of = algo.greedy_set_cover(n, reps, members, rank)
    times["set_cover"] = time.perf_counter() - t
    first_reps = np.unique(rep_of)
    rep_set = fs.subset(first_reps)
    t = time.perf_counter()
    local = candidate_pairs(rep_set, pconfig)
    times["audit_prefilter"] = time.perf_counter() - t
    rep_pairs = first_reps[local] if len(local) else local.reshape(0, 2)
    rep_pairs = algo.reachable(rep_pairs, fs.lengths, config.merge_threshold)
    t = time.perf_counter()
    audit = align_pairs(fs, rep_pairs)
    times["audit_tmalign"] = time.perf_counter() - t
    t = time.perf_counter()
    evidence = algo.concat_evidence(
        algo.merge_evidence(audit, rep_of, config.merge_threshold, source="representatives"),
        algo.merge_evidence(first, rep_of, config.merge_threshold, source="members"))
    linked = link_clusters(rep_of, evidence["rep_a"], evidence["rep_b"],
                           np.minimum(evidence["tm_a"], evidence["tm_b"]), evidence["source"], rank,
                           linkage="single")  # the guard's extra alignments are measured in bench/cluster_semantics.py
    cluster_rep = linked.cluster_rep
    evidence.update(decision=linked.decision, guard_tm=linked.guard_tm)
    times["union_find_final"] = time.perf_counter() - t
    audit_result = algo.singleton_components(np.zeros(0, dtype=np.int64), forest_from_edges(np.zeros(0), np.zeros(0)))
    cohesion = summarise(np.zeros((0, 2), np.int64), np.zeros(0))
    tables = cluster_tables(fs, rep_of, cluster_rep, evidence, audit_result, cohesion)
    calls = len(pairs) + len(rep_pairs)
    singletons = int((np.bincount(cluster_rep, minlength=n)[np.unique(cluster_rep)] == 1).sum())
    return {
        "fragments": n,
        "mean_length": float(fs.lengths.mean()),
        "candidate_pairs_per_fragment": n_candidates / n,
        "first_pass_calls_per_fragment": len(pairs) / n,
        "audit_calls_per_fragment": len(rep_pairs) / n,
        "tmalign_calls_per_fragment": calls / n,
        "tmalign_calls_share_of_pairs": calls / (n * (n - 1) / 2),
        "first_pass_clusters_per_fragment": len(first_reps) / n,
        "clusters_per_fragment": len(np.unique(cluster_rep)) / n,
        "singleton_clusters_per_fragment": singletons / n,
        "merges": len(evidence["rep_a"]),
        "ms_per_first_pass_call": 1000 * times["first_pass_tmalign"] / max(1, len(pairs)),
        "ms_per_audit_call": 1000 * times["audit_tmalign"] / max(1, len(rep_pairs)),
        "seconds": times,
        "core_ms_per_fragment": 1000 * sum(times.values()) / n,
        "parquet_bytes_per_members_row": parquet_bytes(tables["members"]) / n,
        "parquet_bytes_per_clusters_row": parquet_bytes(tables["clusters"]) / max(1, tables["clusters"].num_rows),
    }


def union_find_cost(n_nodes: int, n_edges: int, repeats: int) -> dict:
    rng = np.random.default_rng(0)
    a = rng.integers(0, n_nodes, n_edges)
    b = rng.integers(0, n_nodes, n_edges)
    seconds = best_of(lambda: forest_from_edges(a, b), repeats)
    return {"nodes": n_nodes, "edges": n_edges, "us_per_edge": 1e6 * seconds / n_edges}


# --- main ------------------------------------------------------------------------------------------


def fragments_table(folders: list[str]) -> pa.Table:
    refs = list_inputs([str(DATA / d) for d in folders])
    return FragmentStage(FragmentConfig()).process(refs).fragments


def fmt(x: float, digits: int = 1) -> str:
    return f"{x:,.{digits}f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", help="also write every figure to this JSON file")
    parser.add_argument("--quick", action="store_true", help="fewer structures, pairs and repeats (~1 minute)")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    repeats = 2 if args.quick else args.repeats
    started = time.perf_counter()
    out: dict = {
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "machine": f"{platform.node()} {platform.machine()} {os.cpu_count()} CPUs, Python {platform.python_version()}",
        "repeats": repeats,
        "note": "times are the minimum of the repeats on one core; the machine is shared and noisy",
    }

    files = structure_files(DATA)
    sample = files[:: 9 if args.quick else 3]
    out["fragmenting"] = f = fragmenting(sample, repeats)

    # one pool of real fragments: the diverse set plus the misc AFDB models (chains up to 1,117 residues)
    diverse_table = fragments_table(SETS["diverse"])
    diverse = FragmentSet.from_table(diverse_table)
    pool = FragmentSet.from_table(pa.concat_tables([diverse_table, fragments_table(["afdb_misc_models"])]))
    out["tmalign"] = tm = tmalign_by_length(pool, repeats, args.quick)
    audit_pairs, reach_08 = random_reachable_pairs(pool, 40 if args.quick else 120, ClusterConfig().singleton_threshold)
    out["tmalign_random_reachable_pairs"] = audit_pairs
    out["reachable_share_at_0.8"] = reach_08

    sizes = [150, 300] if args.quick else [150, 300, len(diverse)]
    out["prefilter"] = pre = prefilter_scaling(diverse, sizes, 1 if args.quick else 2)
    try:
        out["prefilter_stage1"] = stage1_hits(diverse)
    except (AttributeError, TypeError) as exc:  # prefilter internals changed: skip, keep the rest
        print(f"stage-1 hit count skipped: {exc!r}")
    subset = diverse.subset(np.linspace(0, len(diverse) - 1, min(300, len(diverse))).astype(int))
    out["clustering"] = clu = clustering_run(subset)
    out["union_find"] = uf = union_find_cost(1_000_000, 100_000 if args.quick else 300_000, 2)
    out["seconds_total"] = time.perf_counter() - started

    print(f"# rayfold unit costs, {out['date']}, {out['machine']}")
    print(f"# times: minimum of {repeats} repeats on one core (shared, noisy machine); BLAS pinned to 1 thread\n")
    print("| unit | figure | source |")
    print("|---|---|---|")
    src = f"{f['structures']} AFDB models (every {'9th' if args.quick else '3rd'} of the 3 AFDB sets)"
    rows = [
        ("residues per structure", fmt(f["residues_per_structure"], 0), src),
        ("input bytes per structure (gzipped PDB/mmCIF)", fmt(f["input_bytes_per_structure"], 0), src),
        ("read, local disk, ms per structure", fmt(f["read_ms_per_structure_local"], 2), src),
        ("parse, ms per structure", fmt(f["parse_ms_per_structure"]), src),
        ("parse + fragment, ms per structure", fmt(f["parse_fragment_ms_per_structure"]), src),
        ("parse + fragment + 3Di, ms per structure", fmt(f["parse_fragment_3di_ms_per_structure"]), src),
        ("3Di share of that", f"{f['share_3di']:.0%}", src),
        ("FragmentStage (tables included), ms per structure", fmt(f["stage_ms_per_structure"]), src),
        ("FragmentStage, ms per 1,000 residues", fmt(f["stage_ms_per_1000_residues"]), src),
        ("fragments per structure (all / passed)",
         f"{f['fragments_per_structure']:.2f} / {f['passed_per_structure']:.2f}", src),
        ("residues per passed fragment", fmt(f["residues_per_passed_fragment"], 0), src),
        ("Parquet bytes per fragments row (all / passed only)",
         f"{f['parquet_bytes_per_fragment_row']:,.0f} / {f['parquet_bytes_per_passed_fragment_row']:,.0f}", src),
        ("Arrow in-memory bytes per fragments row", fmt(f["arrow_bytes_per_fragment_row"], 0), src),
        ("Parquet bytes per chains row", fmt(f["parquet_bytes_per_chain_row"], 0), src),
        ("Parquet (zstd) write, us per fragments row", fmt(f["parquet_write_us_per_fragment_row"]), src),
        ("pickled FragmentSet bytes per passed fragment (per residue)",
         f"{f['fragmentset_pickle_bytes_per_passed_fragment']:,.0f} ({f['fragmentset_pickle_bytes_per_residue']:.1f})", src),
        ("FragmentSet unpickle (per task call), us per passed fragment",
         f"{f['fragmentset_unpickle_us_per_fragment']:.2f}", src),
    ]
    for L, r in tm["by_length"].items():
        rows.append((f"TM-align, {L} x {L} residues, ms per pair", f"{r['mean_ms']:,.1f} (median {r['median_ms']:,.1f})",
                     f"{r['pairs']} pairs of real fragments cut to {L}, min of {r['repeats']}"))
    rows.append(("TM-align time ~ L^b, b =", f"{tm['fit_exponent']:.2f}", "least squares on the rows above"))
    rows.append(("TM-align, random pairs with length ratio >= 0.8, ms per pair",
                 fmt(audit_pairs["mean_ms"]), f"{audit_pairs['pairs']} pairs, mean length {audit_pairs['mean_length']:.0f}, 1 run"))
    rows.append(("share of all pairs with length ratio >= 0.8", f"{reach_08:.1%}", f"{len(pool)} pooled fragments"))
    for r in pre:
        rows.append(((f"prefilter, {r['fragments']} vs {r['fragments']}: ms per query (stage 1 + stage 2) / "
                      "seeded pairs per query / candidates per fragment"),
                     (f"{r['ms_per_query']:.1f} ({r['stage1_ms_per_query']:.1f} + {r['stage2_ms_per_query']:.1f}) / "
                      f"{r['seeded_pairs_per_query']:.1f} / {r['candidate_pairs_per_fragment']:.2f}"),
                     f"diverse set (mean length {r['mean_length']:.0f}), min of {r['repeats']}"))
    stage1 = dict(out.get("prefilter_stage1", {}))
    side = stage1.pop("target_side_us_per_target", None)
    if side:
        rows.append(("prefilter, per task and target: subset copy / k-mers + index build, us",
                     f"{side['subset']:.1f} / {side['kmers_and_index']:.1f}", f"diverse set, {len(diverse)} fragments, min of 2"))
    for label, r in stage1.items():
        rows.append(((f"prefilter stage 1 ({label.replace('_', ' ')}): hits per query per target / us per hit / "
                      "candidates per fragment"),
                     f"{r['hits_per_query_per_target']:.2f} / {r['us_per_hit']:.2f} / {r['candidate_pairs_per_fragment']:.2f}",
                     f"diverse set, {len(diverse)} fragments"))
    c = clu
    csrc = f"clustering run, {c['fragments']} fragments of the diverse set, 1 run"
    rows += [
        ("candidate pairs per fragment", f"{c['candidate_pairs_per_fragment']:.2f}", csrc),
        ("TM-align calls per fragment (first pass + audit)",
         (f"{c['tmalign_calls_per_fragment']:.2f} ({c['first_pass_calls_per_fragment']:.2f} + "
          f"{c['audit_calls_per_fragment']:.2f}); {c['tmalign_calls_share_of_pairs']:.2%} of pairs"), csrc),
        ("ms per TM-align call (first pass / audit)", f"{c['ms_per_first_pass_call']:.1f} / {c['ms_per_audit_call']:.1f}", csrc),
        ("first-pass clusters / final clusters / singletons per fragment",
         f"{c['first_pass_clusters_per_fragment']:.3f} / {c['clusters_per_fragment']:.3f} / {c['singleton_clusters_per_fragment']:.3f}", csrc),
        ("core ms per fragment, all clustering stages", fmt(c["core_ms_per_fragment"]), csrc),
        ("  of which: " + ", ".join(f"{k} {v:.1f} s" for k, v in c["seconds"].items()), "", csrc),
        ("Parquet bytes per members row / clusters row",
         f"{c['parquet_bytes_per_members_row']:.0f} / {c['parquet_bytes_per_clusters_row']:.0f}", csrc),
        ("union-find (forest_from_edges), us per edge", f"{uf['us_per_edge']:.2f}",
         f"{uf['edges']:,} random edges over {uf['nodes']:,} nodes, min of 2"),
    ]
    for unit, figure, source in rows:
        print(f"| {unit} | {figure} | {source} |")
    print(f"\ntotal bench time {out['seconds_total']:.0f} s")
    if args.json:
        Path(args.json).write_text(json.dumps(out, indent=2, default=float))
        print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
