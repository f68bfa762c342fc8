"""`rayfold ...`: one command line for every stage."""

from __future__ import annotations

import argparse
import json
import logging
import sys
from collections.abc import Sequence
from dataclasses import asdict

from rayfold import __version__
from rayfold.config import FragmentConfig, ReadConfig, RunConfig, with_overrides
from rayfold.errors import InputError


def _key_values(items: Sequence[str]) -> dict[str, str]:
    out = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep:
            raise argparse.ArgumentTypeError(f"expected KEY=VALUE, got {item!r}")
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
    p.add_argument("--set", dest="overrides", nargs="*", default=[], metavar="KEY=VALUE",
                   help="override FragmentConfig fields, e.g. --set plddt_cutoff=70")
    p.add_argument("--no-progress", action="store_true")
    p.set_defaults(func=_cmd_fragment)


def _cmd_fragment(args: argparse.Namespace) -> int:
    from rayfold.pipeline import run_fragment

    config = with_overrides(FragmentConfig(), _key_values(args.overrides))
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
    from rayfold.cluster import ClusterConfig
    from rayfold.pipeline import run_cluster

    config = with_overrides(ClusterConfig(), {**_key_values(args.overrides), "engine": args.engine})
    summary = run_cluster(args.fragments, args.out, config=config, foldseek=args.foldseek,
                          address=args.address, progress=not args.no_progress)
    print(json.dumps(asdict(summary), indent=2))
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="rayfold", description=__doc__)
    parser.add_argument("--version", action="version", version=f"rayfold {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="log at INFO level")
    sub = parser.add_subparsers(dest="command", required=True)
    _add_fragment(sub)
    _add_cluster(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING,
                        format="%(levelname)s %(name)s: %(message)s")
    try:
        return int(args.func(args))
    except (InputError, KeyError) as exc:
        print(f"rayfold: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
