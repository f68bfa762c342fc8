"""`rayfold ...`: one command line for every stage."""

from __future__ import annotations

import argparse
import json
import logging
import sys
from collections.abc import Sequence
from dataclasses import asdict

from rayfold import __version__
from rayfold.config import FRAGMENT_PRESETS, ReadConfig, RunConfig, fragment_config, with_overrides
from rayfold.model.errors import InputError


def _key_values(items: Sequence[str]) -> dict[str, str]:
    out = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep:
            raise InputError("bad_setting", f"expected KEY=VALUE, got {item!r}")
        out[key.strip()] = value.strip()
    return out


def _add_fragment(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "fragment",
        help="cut predicted structures into compact fragments (Parquet)",
        description="Read mmCIF/PDB files (plain, gzipped or in tar shards; local, file:// or s3://) and "
        "write OUT/fragments/, OUT/chains/ and OUT/errors/ as Parquet datasets.",
    )
    p.add_argument("inputs", nargs="+", help="files, folders, globs or URLs")
    p.add_argument("--out", required=True, help="output folder or URL (s3://bucket/prefix)")
    p.add_argument("--whole-chains", action="store_true", help="no cutting: each chain is one fragment")
    p.add_argument("--export-structures", action="store_true", help="also write OUT/structures/<fragment_id>.pdb")
    p.add_argument("--address", help="Ray cluster address (default: a private local Ray)")
    p.add_argument("--workers", type=int, help="actors in the pool (default: the cluster's CPUs)")
    p.add_argument("--unit-size", type=int, default=RunConfig.unit_size, help="files per work unit")
    p.add_argument("--preset", choices=tuple(FRAGMENT_PRESETS), default="rayfold",
                   help="fragmenting recipe: rayfold's (default) or the method's published one ('seed')")
    p.add_argument("--set", dest="overrides", nargs="*", default=[], metavar="KEY=VALUE",
                   help="override FragmentConfig fields, e.g. --set plddt_cutoff=70")
    p.add_argument("--no-progress", action="store_true")
    p.set_defaults(func=_cmd_fragment)


def _cmd_fragment(args: argparse.Namespace) -> int:
    from rayfold.runtime.fragmenting import run_fragment

    config = fragment_config(args.preset, _key_values(args.overrides))
    if args.whole_chains:
        config = with_overrides(config, {"whole_chains": True})
    run = RunConfig(unit_size=args.unit_size, num_workers=args.workers, export_structures=args.export_structures)
    summary = run_fragment(
        args.inputs, args.out, config=config, read=ReadConfig(), run=run,
        address=args.address, progress=not args.no_progress,
    )
    print(json.dumps(asdict(summary), indent=2))
    return 0


def _add_cluster(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "cluster",
        help="cluster fragments by fold (first pass, representative audit, singleton audit)",
        description="Cluster the passed fragments of FRAGMENTS (a fragments dataset or a run folder) and "
        "write OUT/clusters/, OUT/members/, OUT/merges/, OUT/singleton_audit/ and OUT/cluster_runs/.",
    )
    p.add_argument("fragments", help="fragments dataset folder/URL, or the --out of `rayfold fragment`")
    p.add_argument("--out", required=True, help="output folder or URL")
    p.add_argument("--engine", choices=("auto", "builtin", "foldseek"), default="auto",
                   help="auto: Foldseek when found on PATH (or --foldseek), else the built-in engine")
    p.add_argument("--foldseek", help="path to a foldseek binary")
    p.add_argument("--address", help="Ray cluster address (default: a private local Ray)")
    p.add_argument("--set", dest="overrides", nargs="*", default=[], metavar="KEY=VALUE",
                   help="override ClusterConfig fields, e.g. --set singleton_sample=500")
    p.add_argument("--no-progress", action="store_true")
    p.set_defaults(func=_cmd_cluster)


def _cmd_cluster(args: argparse.Namespace) -> int:
    from rayfold.cluster.rules import ClusterConfig
    from rayfold.runtime.clustering import run_cluster

    config = with_overrides(ClusterConfig(), {**_key_values(args.overrides), "engine": args.engine})
    summary = run_cluster(args.fragments, args.out, config=config, foldseek=args.foldseek,
                          address=args.address, progress=not args.no_progress)
    print(json.dumps(asdict(summary), indent=2))
    return 0


def _add_run(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "run",
        help="the whole job: fragment, cluster, audit, statistics (incremental and resumable)",
        description="Bring OUT up to date with INPUT...: only inputs new since the last release are read "
        "and fragmented; all current fragments are clustered as one fresh run would, TM-aligning only "
        "pairs no earlier release aligned; a killed run resumes. Writes OUT/{fragments,chains,errors,"
        "manifest,releases,alignments,cluster_map,clusters,members,merges,singleton_audit,stats,sampling,"
        "weights,report}/.",
    )
    p.add_argument("inputs", nargs="+", help="files, folders, globs or URLs; each is a 'source' in the statistics")
    p.add_argument("--out", required=True, help="output folder or URL (s3://bucket/prefix)")
    p.add_argument("--engine", choices=("auto", "builtin", "foldseek"), default="auto",
                   help="auto: Foldseek when found on PATH (or --foldseek), else the built-in engine")
    p.add_argument("--foldseek", help="path to a foldseek binary")
    p.add_argument("--keep-ids", metavar="URI", help="keep only entries listed in this id table (one id per line)")
    p.add_argument("--keep-mmseqs-clusters", metavar="URI",
                   help="keep only entries in non-singleton clusters of this MMseqs2 cluster TSV")
    p.add_argument("--sync", action="store_true",
                   help="make OUT reflect INPUT... as it is now: inputs no longer listed are withdrawn (their "
                   "fragments leave the clusters); without it, a release only adds and replaces")
    p.add_argument("--whole-chains", action="store_true", help="no cutting: each chain is one fragment")
    p.add_argument("--address", help="Ray cluster address (default: $RAY_ADDRESS, else a private local Ray)")
    p.add_argument("--workers", type=int, help="fragmenting actors (default: the cluster's CPUs)")
    p.add_argument("--unit-size", type=int, default=RunConfig.unit_size, help="files per work unit")
    p.add_argument("--fragment-preset", choices=tuple(FRAGMENT_PRESETS), default="rayfold",
                   help="fragmenting recipe: rayfold's (default) or the method's published one ('seed')")
    p.add_argument("--fragment-set", nargs="*", default=[], metavar="KEY=VALUE", help="FragmentConfig overrides")
    p.add_argument("--cluster-set", nargs="*", default=[], metavar="KEY=VALUE", help="ClusterConfig overrides")
    p.add_argument("--read-set", nargs="*", default=[], metavar="KEY=VALUE",
                   help="ReadConfig overrides (input size limits, see docs/limits.md)")
    p.add_argument("--no-report", action="store_true", help="skip statistics, sampling tables and the report")
    p.add_argument("--stale-lock-after", type=float, default=RunConfig.stale_lock_after, metavar="SECONDS",
                   help="a run refuses while another holds OUT/run.lock; a lock without heartbeat this long "
                   "is taken over")
    p.add_argument("--no-progress", action="store_true")
    p.set_defaults(func=_cmd_run)


def _cmd_run(args: argparse.Namespace) -> int:
    from rayfold.cluster.rules import ClusterConfig
    from rayfold.release.inputfilter import read_id_table, read_mmseqs_clusters
    from rayfold.release.run import ReleaseConfig, run_release

    fragment = fragment_config(args.fragment_preset, _key_values(args.fragment_set))
    if args.whole_chains:
        fragment = with_overrides(fragment, {"whole_chains": True})
    cluster = with_overrides(ClusterConfig(), {**_key_values(args.cluster_set), "engine": args.engine})
    entry_filter = None
    if args.keep_ids and args.keep_mmseqs_clusters:
        raise InputError("bad_arguments", "--keep-ids and --keep-mmseqs-clusters: give one of them")
    if args.keep_ids:
        entry_filter = read_id_table(args.keep_ids)
    elif args.keep_mmseqs_clusters:
        entry_filter = read_mmseqs_clusters(args.keep_mmseqs_clusters)
    summary = run_release(
        args.inputs, args.out,
        config=ReleaseConfig(fragment=fragment, cluster=cluster,
                             read=with_overrides(ReadConfig(), _key_values(args.read_set))),
        run=RunConfig(unit_size=args.unit_size, num_workers=args.workers, stale_lock_after=args.stale_lock_after),
        entry_filter=entry_filter,
        foldseek=args.foldseek, address=args.address, progress=not args.no_progress,
        analytics=not args.no_report, sync=args.sync,
    )
    print(json.dumps(asdict(summary), indent=2))
    return 0


def _add_analytics(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("stats", help="print the redundancy statistics of a run folder")
    p.add_argument("out", help="a run folder or URL (the --out of `rayfold run`)")
    p.set_defaults(func=_cmd_stats)
    p = sub.add_parser("sample", help="draw a reproducible, cluster-weighted sample of fragment ids")
    p.add_argument("out", help="a run folder or URL")
    p.add_argument(
        "--gamma", type=float, default=0.5, help="cluster mass grows as size^gamma (1: as the data, 0: flat)"
    )
    p.add_argument("--n", type=int, required=True, help="fragments to draw (with replacement)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--output", help="write the sample as Parquet here instead of printing ids")
    p.set_defaults(func=_cmd_sample)
    p = sub.add_parser("report", help="rebuild OUT/report/index.html and its plots")
    p.add_argument("out", help="a run folder or URL")
    p.set_defaults(func=_cmd_report)


def _cmd_stats(args: argparse.Namespace) -> int:
    from rayfold.analytics.stats import format_stats, read_stats
    from rayfold.io.runfolder import RunFolder

    RunFolder(args.out).require_results()
    print(format_stats(read_stats(args.out)))
    return 0


def _cmd_sample(args: argparse.Namespace) -> int:
    from rayfold.analytics.sampling import sample_fragments
    from rayfold.io.runfolder import RunFolder
    from rayfold.io.storage import write_parquet

    RunFolder(args.out).require_results()
    try:
        table = sample_fragments(args.out, gamma=args.gamma, n=args.n, seed=args.seed)
    except ValueError as exc:  # nothing to draw from (a run with no clustered fragment), or a bad --n
        raise InputError("cannot_sample", f"{args.out}: {exc}") from None
    if args.output:
        write_parquet(table, args.output)
        print(f"{table.num_rows} fragment ids written to {args.output}")
    else:
        for fragment_id in table.column("fragment_id").to_pylist():
            print(fragment_id)
    return 0


def _cmd_report(args: argparse.Namespace) -> int:
    from rayfold.analytics.report import build_report
    from rayfold.io.runfolder import RunFolder

    RunFolder(args.out).require_results()
    print(build_report(args.out))
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="rayfold", description=__doc__)
    parser.add_argument("--version", action="version", version=f"rayfold {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="log at INFO level")
    sub = parser.add_subparsers(dest="command", required=True)
    _add_run(sub)
    _add_fragment(sub)
    _add_cluster(sub)
    _add_analytics(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING,
                        format="%(levelname)s %(name)s: %(message)s")
    if not args.verbose:
        from rayfold.runtime.session import quiet

        quiet()
    try:
        return int(args.func(args))
    except (InputError, KeyError, FileNotFoundError) as exc:
        print(f"rayfold: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
