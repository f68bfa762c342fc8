"""Run configuration as dataclasses; defaults are the method's published values.

Values the seed publishes (pLDDT 65, 20-residue minimum, k=15, sigma=8, threshold 0.05, 4 boundary
residues, 50-residue minimum partition) are kept as they are. Rules rayfold adds on top (contact
rule for re-joining, compact re-merge, quality filters) are documented beside each field.
"""

from __future__ import annotations

import types
from dataclasses import dataclass, fields, replace
from typing import Any, Literal, TypeVar, Union, get_args, get_origin, get_type_hints

T = TypeVar("T")


@dataclass(frozen=True)
class FragmentConfig:
    # 1. confidence mask
    plddt_cutoff: float = 65.0  # residues below are unusable (seed)
    chain_break_distance: float = 4.2  # consecutive C-alphas further apart (Angstrom) start a new segment
    # 2. re-join segments in clear spatial contact (union-find)
    contact_distance: float = 8.0  # C-alpha pairs closer than this are in contact (Angstrom)
    rejoin_min_contacts: int = 10  # residues of the smaller segment touching the other, ...
    rejoin_min_fraction: float = 0.5  # ... or this share of the smaller segment, whichever is smaller
    # 3. recursive spectral bisection (seed's values)
    knn_k: int = 15
    sigma: float = 8.0
    connectivity_threshold: float = 0.05
    # lambda_2 of a compact globule falls as N^(-2/3): also stop when lambda_2 * N^(2/3) exceeds this.
    # 0.8 equals the seed's 0.05 at N = 64, a small domain; None keeps the seed's rule alone.
    # Measured on the TED example models: single domains give 1.05-1.98, domain pairs mostly <= 0.8.
    scaled_connectivity_threshold: float | None = 0.8
    boundary_size: int = 4
    min_partition_size: int = 50
    solver: Literal["sparse", "dense"] = "sparse"  # shift-invert eigsh, or the numpy eigh reference
    # Added rule (rayfold.fragment.splits): a cut whose two sides both have Rg above this many times a
    # globule's is refused (it shortens a rod, e.g. a helical hairpin, instead of freeing a domain).
    # None disables. Slab fragments 56 -> 19 on the shared models, NDO unchanged (1.5-2.0 alike).
    split_max_rg_ratio: float | None = 1.5
    # 4. clean-up and re-merge
    min_segment_length: int = 10  # shorter runs along the sequence go to a flanking piece
    remerge: bool = True
    remerge_min_interface: float = 0.35  # share of the smaller piece's residues touching the other
    remerge_max_rg_ratio: float = 1.25  # merged radius of gyration over that of a globule of its size
    absorb_below: int = 40  # pieces shorter than this join the piece they touch most, if any
    # Added rule (module docstring, step 5): unassigned runs up to this long, flanked on both sides by
    # the same piece, join it (no 1-5 residue holes in a domain). 0 disables. Boundary-distance on
    # the TED example 0.285 -> 0.648; plateau for 10-15, worse from 20.
    fill_gap_max: int = 10
    # Added rule (module docstring, step 6): segments shorter than this inside a fragment that has a
    # longer segment (stray 1-4 residue islands such as `603-603`) are unassigned. 1 disables.
    min_island_length: int = 5
    # 5. size and quality filters
    min_fragment_length: int = 20  # shorter fragments are dropped (seed)
    min_mean_plddt: float = 70.0  # every reachable TED domain of the test sets is >= 74
    max_rg_ratio: float | None = 1.6  # Rg / (2.2 N^0.38): above this the fragment is not compact (None: no test)
    # Tertiary packing: C-alpha pairs closer than packing_distance and >= packing_min_separation apart
    # in sequence, per residue. 10 A / 12 residues sees helix-helix packing (inter-axis ~10 A), which
    # 8 A misses, and no contact inside one helix or hairpin turn, so a lone helix scores 0.
    packing_distance: float = 10.0
    packing_min_separation: int = 12
    min_contact_density: float = 0.5  # below: no tertiary packing (lone helix/strand, extended tail)
    whole_chains: bool = False  # inputs already are domains: no masking, no cutting


# Named fragmenting recipes (`rayfold fragment --preset NAME`). "seed" is the method's published
# recipe taken literally: pLDDT 65, segments re-joined on contact, recursive spectral bisection
# stopping at lambda_2 > 0.05 alone (k=15, sigma 8, 4 boundary residues, parts under 50 not split),
# re-merge, fragments under 20 dropped; none of the rules rayfold adds (scaled stop, sequence
# smoothing, gap filling, island removal, the rod-cut veto) and no quality filter (the seed filters
# "before clustering" without saying how). Where the seed gives no number (the contact rules of the
# re-join and re-merge) rayfold's rules stand in.
FRAGMENT_PRESETS: dict[str, FragmentConfig] = {
    "rayfold": FragmentConfig(),
    "seed": FragmentConfig(
        scaled_connectivity_threshold=None,
        split_max_rg_ratio=None,
        min_segment_length=1,
        fill_gap_max=0,
        min_island_length=1,
        min_mean_plddt=0.0,
        max_rg_ratio=None,
        min_contact_density=0.0,
    ),
}


def fragment_config(preset: str = "rayfold", overrides: dict[str, Any] | None = None) -> FragmentConfig:
    """A named recipe with `overrides` on top (see `with_overrides`)."""
    from rayfold.model.errors import InputError

    if preset not in FRAGMENT_PRESETS:
        known = ", ".join(FRAGMENT_PRESETS)
        raise InputError("bad_setting", f"unknown fragment preset {preset!r}; choose one of {known}")
    return with_overrides(FRAGMENT_PRESETS[preset], overrides or {})


_TRUE = ("1", "true", "yes", "on")
_FALSE = ("0", "false", "no", "off")


def with_overrides(config: T, overrides: dict[str, Any]) -> T:
    """Copy of a config dataclass with `overrides`, each parsed and checked against the field's declared
    type (`bool`, `int`, `float`, `str`, `X | None`, `Literal[...]`); a bad name or value raises
    `InputError('bad_setting')` naming the field and what it accepts."""
    from rayfold.model.errors import InputError

    hints = get_type_hints(type(config))
    known = {f.name for f in fields(config)}  # type: ignore[arg-type]
    parsed: dict[str, Any] = {}
    for key, value in overrides.items():
        if key not in known:
            raise InputError("bad_setting", f"unknown setting {key!r} for {type(config).__name__}; "
                             f"known: {', '.join(sorted(known))}")
        try:
            parsed[key] = parse_setting(hints[key], value)
        except ValueError as exc:
            raise InputError("bad_setting", f"{key}={value!r}: {exc}") from None
    return replace(config, **parsed)  # type: ignore[type-var]


def parse_setting(hint: Any, value: Any) -> Any:
    """`value` (a CLI string, or a Python value) as the declared type `hint`; ValueError says what fits."""
    origin, args = get_origin(hint), get_args(hint)
    if origin in (Union, types.UnionType):
        if type(None) in args and (value is None or (isinstance(value, str) and value.lower() in ("none", "null"))):
            return None
        errors = []
        for option in (a for a in args if a is not type(None)):
            try:
                return parse_setting(option, value)
            except ValueError as exc:
                errors.append(str(exc))
        raise ValueError("; ".join(errors) + (" or none" if type(None) in args else ""))
    if origin is Literal:
        if value not in args:
            raise ValueError(f"expected one of {', '.join(map(str, args))}")
        return value
    if hint is bool:
        text = str(value).lower()
        if isinstance(value, bool) or text in _TRUE + _FALSE:
            return value if isinstance(value, bool) else text in _TRUE
        raise ValueError(f"expected a boolean ({'/'.join(_TRUE)} or {'/'.join(_FALSE)})")
    if hint in (int, float):
        if isinstance(value, bool):
            raise ValueError(f"expected {hint.__name__}")
        try:
            number = hint(value)
        except (TypeError, ValueError):
            raise ValueError(f"expected {'an integer' if hint is int else 'a number'}") from None
        if hint is int and isinstance(value, float) and value != number:
            raise ValueError("expected an integer")
        return number
    if hint is str:
        if not isinstance(value, str):
            raise ValueError("expected a string")
        return value
    return value


@dataclass(frozen=True)
class ReadConfig:
    """Limits on what one input may cost; inputs over a limit become error rows (docs/limits.md).

    Together they bound a worker's memory per structure: at most `max_file_bytes` read, at most
    `max_decompressed_bytes` of text, at most `max_atoms` atoms in the parser (~220 bytes each).
    """

    # Stored (possibly compressed) size of one structure file or tar member; more -> 'file_too_large'
    # (a file) or 'member_too_large' (a tar member). A tar shard itself has no size limit: it is streamed.
    max_file_bytes: int = 256 * 2**20
    # Text one structure decompresses to, and what a .tar.gz shard may decompress for one member
    # (skipped members included); more -> 'decompressed_too_large'. Caps gzip bombs.
    max_decompressed_bytes: int = 512 * 2**20
    # Atom records in one structure file (all models); more -> 'too_many_atoms'. AFDB's largest
    # model has ~21,000 atoms, the largest PDB entries a few million.
    max_atoms: int = 2_000_000


@dataclass(frozen=True)
class RunConfig:
    """How the Ray job runs; none of these change results, only speed and resource use."""

    unit_size: int = 16  # structure files per work unit (one Parquet part per table); a tar shard is one unit
    num_workers: int | None = None  # actors in the pool; None = CPUs of the cluster
    worker_num_cpus: float = 0.5  # fractional, so a 2-CPU machine keeps a CPU for Ray Data itself
    export_structures: bool = False  # also write each fragment as a PDB file (for Foldseek)
    stale_lock_after: float = 900.0  # `rayfold run`: seconds without a heartbeat before OUT/run.lock is abandoned
    # `rayfold run`: a release that would read this many alignments parts writes one compacted part
    # instead (every current alignment; rows of replaced and withdrawn models dropped)
    compact_alignments_after: int = 8
