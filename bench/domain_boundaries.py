"""Score domain choppings against TED consensus domains (high + medium) on three small AFDB sets.

Puts rayfold's fragments beside the published parsers (Chainsaw, Merizo, UniDoc, from the label
files shipped with each set) with the same metrics: NDO, Chainsaw's boundary-distance score and
the share of reference domains matched one-to-one at IoU >= 0.8. Means are per model.

    python bench/domain_boundaries.py [--preset seed] [--config KEY=VALUE ...] [--json PATH] [--ref-offset -1]
                                      [--slabs]

`--slabs` also counts, over every shared AFDB model, the passed fragments under 60 residues made of
two or more segments (the slabs a long helical hairpin is cut into), with the chosen configuration
and with the rod-cut veto off, side by side.

Note: ted-tools' consensus step reads choppings with `offset=1`, so the TED consensus strings in
these sets sit one residue after the predictors' (author) numbering; `--ref-offset -1` shifts
them back before scoring. The default scores against the labels as published.
"""

from __future__ import annotations

import argparse
import csv
import dataclasses
import json
import math
import sys
import time
from pathlib import Path
from typing import Any

try:
    from rayfold.eval import boundaries as B
except ImportError:  # running from a checkout without the package installed
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))
    from rayfold.eval import boundaries as B

DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "domain_boundaries"
SETS = ("ted_consensus_example", "ted_pipeline_stub5", "ted_pipeline_test30")
LABEL_METHODS = ("chainsaw", "merizo", "unidoc")
METHOD_NAMES = {"chainsaw": "Chainsaw", "merizo": "Merizo", "unidoc": "UniDoc", "rayfold": "rayfold"}

Reference = dict[str, tuple[int, str]]


def _rows(path: Path) -> list[list[str]]:
    with open(path, newline="") as fh:
        return [line.rstrip("\r\n").split("\t") for line in fh if line.strip() and not line.startswith("Done.")]


def _manifest(set_dir: Path) -> dict[str, tuple[Path, int]]:
    """model id -> (structure path, residue count), from the set's manifest.tsv."""
    out: dict[str, tuple[Path, int]] = {}
    with open(set_dir / "manifest.tsv", newline="") as fh:
        for row in csv.DictReader(fh, delimiter="\t"):
            path = set_dir / row["file"]
            model_id = path.name.removesuffix(".gz").removesuffix(".pdb").removesuffix(".cif")
            out[model_id] = (path, int(row["n_residues"]))
    return out


def _join(*choppings: str) -> str:
    kept = [c for c in choppings if c.strip() not in B.EMPTY_CHOPPINGS]
    return ",".join(kept) if kept else "na"


def load_set(name: str, data_dir: Path = DATA) -> tuple[Reference, dict[str, dict[str, str]], dict[str, Path]]:
    """(reference, {method: {model: chopping}}, {model: structure path}) for one data set."""
    set_dir = data_dir / name
    manifest = _manifest(set_dir)
    labels = set_dir / "labels"
    reference: Reference = {}
    methods: dict[str, dict[str, str]] = {}
    if (labels / "final_results.tsv").exists():
        # one row per TED domain; a model without rows has no domain (A0A009DYA3)
        per_model: dict[str, list[str]] = {m: [] for m in manifest}
        with open(labels / "final_results.tsv", newline="") as fh:
            for row in csv.DictReader(fh, delimiter="\t"):
                model_id = row["uniprot_id"].rsplit("_", 1)[0]
                if row["consensus_level"] in ("high", "med", "medium"):
                    per_model.setdefault(model_id, []).append(row["chopping"])
        for model_id, doms in per_model.items():
            if model_id not in manifest:
                raise KeyError(f"{name}: domain rows for {model_id}, which has no structure")
            reference[model_id] = (manifest[model_id][1], _join(*doms))
    else:
        suffix = "_sorted" if (labels / "consensus_sorted.tsv").exists() else ""
        for f in _rows(labels / f"consensus{suffix}.tsv"):
            # id, md5, nres, n_high, n_medium, n_low, high, medium, low
            reference[f[0]] = (int(f[2]), _join(f[6], f[7]))
        for method in LABEL_METHODS:
            path = labels / f"chopping_{method}{suffix}.txt"
            if path.exists():
                # id, md5, nres, ndom, chopping, score
                methods[method] = {f[0]: f[4] for f in _rows(path)}
    for model_id, (nres, _) in reference.items():
        if model_id in manifest and manifest[model_id][1] != nres:
            print(f"warning: {name}/{model_id}: label nres {nres} != structure {manifest[model_id][1]}", file=sys.stderr)
    return reference, methods, {m: p for m, (p, _) in manifest.items()}


def shift_reference(reference: Reference, offset: int) -> Reference:
    """Move reference choppings by `offset` residues, clipped to 1..nres."""
    if offset == 0:
        return reference
    out: Reference = {}
    for model_id, (nres, chop) in reference.items():
        doms = []
        for dom in B.parse_chopping(chop):
            segs = [(max(1, a + offset), min(nres, b + offset)) for a, b in dom]
            segs = [s for s in segs if s[0] <= s[1]]
            if segs:
                doms.append(segs)
        out[model_id] = (nres, B.format_chopping(doms))
    return out


def rayfold_choppings(
    structures: dict[str, Path], models: list[str], config: Any, all_fragments: bool
) -> tuple[dict[str, str], dict[str, str]]:
    """Run the fragmenter on each model: ({model: chopping}, {model: error})."""
    from rayfold.fragment.chain import fragment_chain  # noqa: PLC0415
    from rayfold.io.structure import read_structure_file  # noqa: PLC0415

    out: dict[str, str] = {}
    errors: dict[str, str] = {}
    for model_id in models:
        path = structures.get(model_id)
        if path is None:
            errors[model_id] = "no structure"
            continue
        try:
            entry = read_structure_file(str(path))
            if len(entry.chains) != 1:
                print(f"warning: {model_id}: {len(entry.chains)} chains, using the first", file=sys.stderr)
            result = fragment_chain(entry.chains[0], config)
            frags = [f for f in result.fragments if all_fragments or getattr(f, "passed", True)]
            out[model_id] = _join(*(f.chopping for f in frags))
        except Exception as exc:  # one bad model should not hide the others' scores
            errors[model_id] = f"{type(exc).__name__}: {exc}"
            print(f"error: rayfold on {model_id}: {errors[model_id]}", file=sys.stderr)
    return out, errors


SLAB_SETS = ("afdb_misc_models", "afdb_mycoplasma_mycoides_pdb", "afdb_pf04034_family_more",
             "afdb_pf04034_knotted_mmcif_v3", "domain_boundaries", "openfold3_example_outputs")


def slab_count(config: Any, data_dir: Path) -> dict[str, int]:
    """Passed fragments under 60 residues with >= 2 segments, over every shared AFDB/OpenFold3 model."""
    from rayfold.fragment.chain import fragment_chain  # noqa: PLC0415
    from rayfold.io.structure import read_structure_file  # noqa: PLC0415
    from rayfold.model.errors import InputError  # noqa: PLC0415

    root = data_dir.parent
    files = sorted(p for name in SLAB_SETS for pattern in ("*.pdb.gz", "*.cif.gz", "*.pdb", "*.cif")
                   for p in (root / name).rglob(pattern) if "merizo_output" not in p.parts)
    counts = {"models": 0, "passed fragments": 0, "slabs": 0, "models with slabs": 0}
    for path in files:
        try:
            entry = read_structure_file(str(path))
        except InputError:
            continue
        counts["models"] += 1
        slabs = 0
        for chain in entry.chains:
            passed = [f for f in fragment_chain(chain, config).fragments if f.passed]
            counts["passed fragments"] += len(passed)
            slabs += sum(1 for f in passed if f.n_residues < 60 and f.n_segments >= 2)
        counts["slabs"] += slabs
        counts["models with slabs"] += slabs > 0
    return counts


def _fmt(x: float) -> str:
    return "n/a" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{x:.3f}"


def print_table(title: str, results: dict[str, dict[str, Any]], notes: list[str]) -> None:
    header = ["method", "n models", "n pred domains", "n ref domains", "mean NDO", "mean boundary-distance", "matched IoU>=0.8"]
    rows = []
    for method, s in results.items():
        share = f"{_fmt(s['matched_share'])} ({s['n_matched']}/{s['n_ref_domains']})"
        rows.append([
            METHOD_NAMES.get(method, method),
            f"{s['n_models']}" + (f" ({s['n_models_scored']} scored)" if s["n_models_scored"] != s["n_models"] else ""),
            str(s["n_pred_domains"]),
            str(s["n_ref_domains"]),
            _fmt(s["mean_ndo"]),
            _fmt(s["mean_boundary_distance_score"]),
            share,
        ])
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    print(f"\n## {title}")
    print("| " + " | ".join(h.ljust(w) for h, w in zip(header, widths)) + " |")
    print("|" + "|".join("-" * (w + 2) for w in widths) + "|")
    for r in rows:
        print("| " + " | ".join(c.ljust(w) for c, w in zip(r, widths)) + " |")
    for note in notes:
        print(f"  {note}")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--preset", default="rayfold", help="named fragmenting recipe (rayfold, seed)")
    ap.add_argument("--config", nargs="+", default=[], metavar="KEY=VALUE", help="FragmentConfig overrides")
    ap.add_argument("--slabs", action="store_true", help="also count slab fragments over all shared models")
    ap.add_argument("--json", type=Path, help="write every per-model score here")
    ap.add_argument("--sets", nargs="+", default=list(SETS), choices=SETS)
    ap.add_argument("--methods", nargs="+", default=[*LABEL_METHODS, "rayfold"], choices=[*LABEL_METHODS, "rayfold"])
    ap.add_argument("--ref-offset", type=int, default=0, help="shift reference choppings (-1 undoes ted-tools' +1)")
    ap.add_argument("--max-distance", type=int, default=8, help="boundary-distance window (Chainsaw: 8)")
    ap.add_argument("--iou", type=float, default=0.8)
    ap.add_argument("--all-fragments", action="store_true", help="also count fragments that failed rayfold's quality filters")
    ap.add_argument("--data-dir", type=Path, default=DATA)
    args = ap.parse_args(argv)

    from rayfold.config import fragment_config  # noqa: PLC0415

    pairs = [pair.partition("=") for pair in args.config]
    bad = [key for key, sep, _ in pairs if not sep]
    if bad:
        raise SystemExit(f"--config expects KEY=VALUE, got {bad[0]!r}")
    # typed parsing and unknown-key errors as in `rayfold fragment --set`
    config = fragment_config(args.preset, {key.strip(): value for key, _, value in pairs})
    dump: dict[str, Any] = {"settings": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
                            "rayfold_config": dataclasses.asdict(config)}
    for name in args.sets:
        reference, label_methods, structures = load_set(name, args.data_dir)
        reference = shift_reference(reference, args.ref_offset)
        results: dict[str, dict[str, Any]] = {}
        notes: list[str] = []
        for method in args.methods:
            if method == "rayfold":
                t0 = time.perf_counter()
                chops, errors = rayfold_choppings(structures, list(reference), config, args.all_fragments)
                seconds = time.perf_counter() - t0
                notes.append(f"rayfold: {len(chops)} models fragmented in {seconds:.1f} s"
                             + (f", {len(errors)} failed (scored as no domain)" if errors else ""))
            elif method in label_methods:
                chops, errors = label_methods[method], {}
            else:
                continue
            s = B.score_method(chops, reference, iou=args.iou, max_distance=args.max_distance)
            s["errors"] = errors
            results[method] = s
        if args.ref_offset:
            notes.append(f"reference shifted by {args.ref_offset:+d}")
        print_table(f"{name}: reference = TED consensus high + medium", results, notes)
        dump[name] = {"reference": reference, "methods": results}
    if args.slabs:
        without = dataclasses.replace(config, split_max_rg_ratio=None)
        print("\n## slabs: passed fragments under 60 residues with >= 2 segments, all shared models")
        for label, cfg in (("this configuration", config), ("rod-cut veto off", without)):
            t0 = time.perf_counter()
            counts = slab_count(cfg, args.data_dir)
            dump.setdefault("slabs", {})[label] = counts
            print(f"  {label}: {counts} ({time.perf_counter() - t0:.0f} s)")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(dump, indent=1, default=str))
        print(f"\nper-model scores written to {args.json}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
