"""Score domain choppings against reference domain assignments (pure Python/NumPy).

Used to compare rayfold's cuts with TED consensus domains and to put published domain parsers
(Chainsaw, Merizo, UniDoc) beside them with the same numbers.

Chopping strings are TED/Chainsaw style: domains separated by ',', the segments of one domain
joined by '_', each segment 'start-end' (inclusive, author residue numbers; a lone number is a
one-residue segment). 'na', 'NA', 'NULL' or '' mean "no domain". An end may carry an insertion
code, as rayfold writes for chains that have them ('1-229D,229F-288'); scores count author numbers
only, so the code is read and dropped, and two domains that share a number through insertion codes
overlap at it (the scoring functions refuse overlapping domains). AFDB models have no insertion
codes.

The metrics follow Chainsaw (JudeWells/chainsaw, `src/utils/ndo_score.py` and
`src/utils/domain_boundary_distance_score.py`); `tests/eval/test_boundaries.py` checks them against
the per-chain values Chainsaw published for its CATH1363 test set.
"""

from __future__ import annotations

import math
import re
from collections.abc import Collection, Iterable, Mapping, Sequence
from typing import Any, Union

import numpy as np
from scipy.optimize import linear_sum_assignment

Segment = tuple[int, int]
Domain = list[Segment]
Chopping = list[Domain]
# Anything the scoring functions accept for one assignment: a chopping string, a parsed chopping
# or a list of residue-number collections (one per domain).
ChoppingLike = Union[str, Sequence[Sequence[Segment]], Sequence[Collection[int]]]
# The chain's residues: an int n means author numbers 1..n (AlphaFold DB models); a collection
# gives the residue numbers themselves (e.g. range(n) for Chainsaw's 0-based numbering).
ResiduesLike = Union[int, Collection[int]]

EMPTY_CHOPPINGS = frozenset({"", "na", "NA", "NULL", "null", "None"})
_SEGMENT = re.compile(r"^\s*(-?\d+)[A-Za-z]?\s*(?:-\s*(-?\d+)[A-Za-z]?)?\s*$")  # optional insertion codes


def parse_chopping(s: str, domain_sep: str = ",", segment_sep: str = "_") -> Chopping:
    """Split a chopping string into domains of (start, end) segments, order kept.

    Negative author numbers are allowed ('-5-20'); an insertion code after a number ('229D') is
    accepted and dropped. Raises ValueError on anything else.
    """
    if s is None or s.strip() in EMPTY_CHOPPINGS:
        return []
    domains: Chopping = []
    for dom in s.strip().split(domain_sep):
        if not dom.strip():
            continue
        segments: Domain = []
        for seg in dom.split(segment_sep):
            m = _SEGMENT.match(seg)
            if m is None:
                raise ValueError(f"bad segment {seg!r} in chopping {s!r}")
            start = int(m.group(1))
            end = int(m.group(2)) if m.group(2) is not None else start
            if end < start:
                raise ValueError(f"segment {seg!r} ends before it starts in chopping {s!r}")
            segments.append((start, end))
        domains.append(segments)
    return domains


def format_chopping(chopping: Sequence[Sequence[Segment]], empty: str = "na") -> str:
    """Inverse of `parse_chopping`; `empty` is written when there is no domain."""
    if not chopping:
        return empty
    return ",".join("_".join(f"{a}-{b}" for a, b in dom) for dom in chopping)


def domain_residues(domain: Sequence[Segment]) -> set[int]:
    """Residue numbers covered by one domain's segments."""
    out: set[int] = set()
    for a, b in domain:
        out.update(range(a, b + 1))
    return out


def residue_sets(chopping: ChoppingLike) -> list[set[int]]:
    """One residue-number set per domain; empty domains are dropped.

    Accepts a chopping string, a parsed chopping, or residue collections (already sets).
    """
    if isinstance(chopping, str):
        return [r for r in (domain_residues(d) for d in parse_chopping(chopping)) if r]
    out: list[set[int]] = []
    for dom in chopping:
        items: list[Any] = list(dom)
        if items and isinstance(items[0], tuple):
            res = domain_residues(items)
        else:
            res = {int(x) for x in items}
        if res:
            out.append(res)
    return out


def _chain_residues(n_residues: ResiduesLike) -> set[int]:
    if isinstance(n_residues, (int, np.integer)):
        return set(range(1, int(n_residues) + 1))
    return {int(x) for x in n_residues}


def _check_disjoint(domains: list[set[int]], what: str) -> None:
    seen: set[int] = set()
    for dom in domains:
        clash = seen & dom
        if clash:
            raise ValueError(f"{what} domains overlap at residue(s) {sorted(clash)[:5]}")
        seen |= dom


def overlap_matrix(
    pred: ChoppingLike, ref: ChoppingLike, n_residues: ResiduesLike, pred_linker: bool = True
) -> np.ndarray:
    """Residue counts shared by (linker + predicted domains) x (linker + reference domains).

    Row/column 0 hold the unassigned ("linker") residues of the chain; with `pred_linker=False`
    row 0 is left empty (see `ndo_score`).
    """
    p = residue_sets(pred)
    r = residue_sets(ref)
    _check_disjoint(p, "predicted")
    _check_disjoint(r, "reference")
    chain = _chain_residues(n_residues)
    p_link = (chain - set().union(*p)) if pred_linker else set()
    r_link = chain - set().union(*r)
    rows = [p_link, *p]
    cols = [r_link, *r]
    return np.array([[len(a & b) for b in cols] for a in rows], dtype=np.float64).reshape(len(rows), len(cols))


def ndo_score(
    pred: ChoppingLike, ref: ChoppingLike, n_residues: ResiduesLike, *, pred_linker: bool = True
) -> float:
    """Normalized Domain Overlap (Tai et al. 2005), as implemented by Chainsaw.

    Each predicted domain (row) and reference domain (column) scores its best overlap with a
    domain of the other side minus everything else it overlaps (linker included); the halved sum
    is divided by the number of reference-domain residues. Like Chainsaw it returns 0.0 when
    either side has no domain. `pred_linker=False` drops the predicted-linker row, which is how
    Chainsaw's published CATH1363 numbers were computed (its predicted domain dicts carried no
    linker, so reference residues a method leaves unassigned are not penalised); the default
    keeps the row, as in Tai et al. and Chainsaw's `ndo_score(make_domain_dict(...))`.
    """
    r = residue_sets(ref)
    ov = overlap_matrix(pred, r, n_residues, pred_linker=pred_linker)
    if ov.shape[0] == 1 or ov.shape[1] == 1:
        return 0.0
    dom = ov[1:, 1:]
    row_best = dom.max(axis=1)
    row_scores = 2.0 * row_best - ov[1:].sum(axis=1)
    col_best = dom.max(axis=0)
    col_scores = 2.0 * col_best - ov[:, 1:].sum(axis=0)
    total = (row_scores.sum() + col_scores.sum()) / 2.0
    return float(total / sum(len(d) for d in r))


def domain_bounds(domains: Iterable[Collection[int]]) -> np.ndarray:
    """Chainsaw's boundary positions: the first residue of every segment and one past its last."""
    bounds: set[int] = set()
    for dom in domains:
        if not dom:
            continue
        res = np.array(sorted(dom), dtype=np.int64)
        breaks = np.flatnonzero(np.diff(res) > 1)
        bounds.update((res[breaks] + 1).tolist())
        bounds.update(res[breaks + 1].tolist())
        bounds.update((int(res[0]), int(res[-1]) + 1))
    return np.array(sorted(bounds), dtype=np.int64)


def boundary_distance_score(
    pred: ChoppingLike, ref: ChoppingLike, n_residues: ResiduesLike, *, max_distance: int = 8
) -> float:
    """Chainsaw's domain boundary distance score (CASP7 style, Tai et al. 2008).

    A predicted boundary at distance d < `max_distance` from the nearest reference boundary
    (reference linker residues all count as boundary) earns `max_distance - d` points; only the
    best n_ref_boundaries earn, and the sum is divided by max_distance * max(n_pred_boundaries,
    n_ref_boundaries) so over-prediction costs. Chainsaw uses 8 (its published numbers need 8);
    20 gives the wider CASP6-style window. Returns 0.0 when the reference has no domain (Chainsaw
    would divide by zero or score the prediction against the linker only).
    """
    p = residue_sets(pred)
    r = residue_sets(ref)
    ref_bounds = domain_bounds(r)
    n_ref = len(ref_bounds)
    if n_ref == 0:
        return 0.0
    pred_bounds = domain_bounds(p)
    if len(pred_bounds) == 0:
        return 0.0
    linker = _chain_residues(n_residues) - set().union(*r)
    targets = np.concatenate([ref_bounds, np.array(sorted(linker), dtype=np.int64)])
    dist = np.abs(pred_bounds[:, None] - targets[None, :]).min(axis=1)
    points = np.sort(max_distance - dist[dist < max_distance])
    return float(points[-n_ref:].sum() / (max_distance * max(len(pred_bounds), n_ref)))


def iou_matrix(pred: ChoppingLike, ref: ChoppingLike) -> np.ndarray:
    """Residue-set IoU of every predicted domain (rows) with every reference domain (columns)."""
    p = residue_sets(pred)
    r = residue_sets(ref)
    out = np.zeros((len(p), len(r)))
    for i, a in enumerate(p):
        for j, b in enumerate(r):
            inter = len(a & b)
            if inter:
                out[i, j] = inter / len(a | b)
    return out


def domains_matched(pred: ChoppingLike, ref: ChoppingLike, iou: float = 0.8) -> tuple[int, int]:
    """(reference domains matched one-to-one by a predicted domain with IoU >= `iou`, reference domains).

    A maximum bipartite matching, so overlapping predictions cannot claim one reference twice.
    """
    m = iou_matrix(pred, ref)
    n_ref = m.shape[1]
    if m.size == 0:
        return 0, n_ref
    ok = (m >= iou).astype(np.float64)
    rows, cols = linear_sum_assignment(-ok)
    return int(ok[rows, cols].sum()), n_ref


def _mean(values: list[float]) -> float:
    return float(np.mean(values)) if values else math.nan


def score_method(
    choppings: Mapping[str, str],
    reference: Mapping[str, tuple[ResiduesLike, str]],
    *,
    iou: float = 0.8,
    max_distance: int = 8,
    pred_linker: bool = True,
) -> dict[str, Any]:
    """Score one method's choppings over the reference models; means are per model (macro).

    Models in `reference` but missing from `choppings` count as predicting no domain. NDO and the
    boundary score are undefined without reference domains, so such models are left out of those
    two means (they still count predicted domains); the matched share is pooled over reference
    domains. Keys of `choppings` absent from `reference` are ignored.
    """
    per_model: dict[str, dict[str, Any]] = {}
    ndos: list[float] = []
    bdss: list[float] = []
    n_pred = n_ref = n_matched = n_missing = 0
    for model_id, (residues, ref_chop) in reference.items():
        pred_chop = choppings.get(model_id)
        if pred_chop is None:
            n_missing += 1
            pred_chop = "na"
        p = residue_sets(pred_chop)
        r = residue_sets(ref_chop)
        matched, nr = domains_matched(p, r, iou)
        row: dict[str, Any] = {
            "pred": pred_chop,
            "ref": ref_chop,
            "n_pred_domains": len(p),
            "n_ref_domains": nr,
            "n_matched": matched,
            "ndo": None,
            "boundary_distance_score": None,
        }
        if r:
            row["ndo"] = ndo_score(p, r, residues, pred_linker=pred_linker)
            row["boundary_distance_score"] = boundary_distance_score(p, r, residues, max_distance=max_distance)
            ndos.append(row["ndo"])
            bdss.append(row["boundary_distance_score"])
        per_model[model_id] = row
        n_pred += len(p)
        n_ref += nr
        n_matched += matched
    return {
        "n_models": len(reference),
        "n_models_scored": len(ndos),
        "n_models_missing": n_missing,
        "n_pred_domains": n_pred,
        "n_ref_domains": n_ref,
        "n_matched": n_matched,
        "mean_ndo": _mean(ndos),
        "mean_boundary_distance_score": _mean(bdss),
        "matched_share": (n_matched / n_ref) if n_ref else math.nan,
        "per_model": per_model,
    }
