"""Domain-boundary metrics: hand-worked cases and Chainsaw's published CATH1363 per-chain values."""

from __future__ import annotations

import csv
import math
from pathlib import Path

import pytest

from rayfold.eval.boundaries import (
    boundary_distance_score,
    domain_bounds,
    domains_matched,
    format_chopping,
    ndo_score,
    parse_chopping,
    residue_sets,
    score_method,
)

CHAINSAW_CSV = Path(
    "/work/shared/data/domain_boundaries/chainsaw_cath1363_labels/chainsaw_model_v3_on_cath1363_test.csv"
)

# --- parsing ------------------------------------------------------------------------------


def test_parse_chopping_domains_and_segments():
    assert parse_chopping("101-134,201-314_351-419,425-1125") == [
        [(101, 134)],
        [(201, 314), (351, 419)],
        [(425, 1125)],
    ]


@pytest.mark.parametrize("empty", ["na", "", "NA", "NULL", "  "])
def test_parse_chopping_empty(empty):
    assert parse_chopping(empty) == []


def test_parse_chopping_single_residue_and_negative_numbers():
    assert parse_chopping("-5-20_25,30-30") == [[(-5, 20), (25, 25)], [(30, 30)]]


def test_parse_chopping_accepts_insertion_codes():
    """rayfold writes the insertion code of a chopping end ('1-229D,229F-288'); scores drop it."""
    assert parse_chopping("1-229D,229F-288") == [[(1, 229)], [(229, 288)]]
    assert parse_chopping("-5A-20_25B,30-30") == [[(-5, 20), (25, 25)], [(30, 30)]]
    with pytest.raises(ValueError):
        parse_chopping("1-229DE")


@pytest.mark.parametrize("bad", ["1-", "a-10", "10-5", "1-10;20-30"])
def test_parse_chopping_rejects_garbage(bad):
    with pytest.raises(ValueError):
        parse_chopping(bad)


@pytest.mark.parametrize(
    "text", ["1-10", "1-10,11-20", "5-80_112-216,234-372_496-557,566-638", "-3-0_2-9"]
)
def test_parse_format_round_trip(text):
    assert format_chopping(parse_chopping(text)) == text


def test_format_empty_is_na():
    assert format_chopping([]) == "na"
    assert parse_chopping(format_chopping([])) == []


def test_residue_sets_accepts_strings_parsed_and_sets():
    expected = [set(range(1, 4)) | {7}, {10, 11}]
    assert residue_sets("1-3_7-7,10-11") == expected
    assert residue_sets([[(1, 3), (7, 7)], [(10, 11)]]) == expected
    assert residue_sets([{1, 2, 3, 7}, {10, 11}]) == expected


# --- NDO ----------------------------------------------------------------------------------


def test_ndo_perfect_prediction_is_one():
    assert ndo_score("1-50,51-100", "1-50,51-100", 100) == 1.0
    assert ndo_score("5-40_60-90,41-59", "5-40_60-90,41-59", 100) == 1.0


def test_ndo_one_domain_predicted_for_two():
    # row: 2*50 - 100 = 0; columns: 2*50 - 50 = 50 each; (0 + 100) / 2 / 100
    assert ndo_score("1-100", "1-50,51-100", 100) == pytest.approx(0.5, abs=1e-15)


def test_ndo_two_domains_predicted_for_one():
    # rows: 50 + 50; column: 2*50 - 100 = 0
    assert ndo_score("1-50,51-100", "1-100", 100) == pytest.approx(0.5, abs=1e-15)


def test_ndo_boundary_off_by_ten():
    # rows: 2*50-60=40, 2*40-40=40; columns: 2*50-50=50, 2*40-50=30 -> 160/2/100
    assert ndo_score("1-60,61-100", "1-50,51-100", 100) == pytest.approx(0.8, abs=1e-15)


def test_ndo_prediction_into_reference_linker():
    # predicted 1-100 over reference 11-100: row 2*90-100 = 80, column 2*90-90 = 90 -> 85/90
    assert ndo_score("1-100", "11-100", 100) == pytest.approx(85 / 90, abs=1e-15)


def test_ndo_predicted_linker_row_counts_by_default():
    # reference 1-100, prediction leaves 81-100 unassigned: column 2*80 - (80 + 20) = 60 -> 70/100;
    # without the predicted-linker row (Chainsaw's published benchmark) the column is 80 -> 0.8
    assert ndo_score("1-80", "1-100", 100) == pytest.approx(0.7, abs=1e-15)
    assert ndo_score("1-80", "1-100", 100, pred_linker=False) == pytest.approx(0.8, abs=1e-15)


def test_ndo_edge_cases_match_chainsaw():
    assert ndo_score("na", "1-100", 100) == 0.0
    assert ndo_score("1-100", "na", 100) == 0.0
    assert ndo_score("", "na", 100) == 0.0


def test_ndo_explicit_residue_collection_for_zero_based_numbering():
    # residues 0..99: reference 0-89 leaves 90-99 as linker; prediction 0-99 -> 2*90-100=80, 90 -> 85/90
    assert ndo_score("0-99", "0-89", range(100)) == pytest.approx(85 / 90, abs=1e-15)


def test_ndo_rejects_overlapping_domains():
    with pytest.raises(ValueError):
        ndo_score("1-60,50-100", "1-100", 100)


# --- boundary distance --------------------------------------------------------------------


def test_domain_bounds_are_segment_starts_and_one_past_ends():
    assert domain_bounds(residue_sets("1-40_61-80,41-60")).tolist() == [1, 41, 61, 81]


def test_boundary_distance_perfect_is_one():
    assert boundary_distance_score("1-50,51-100", "1-50,51-100", 100) == 1.0


def test_boundary_distance_chainsaw_worked_example():
    # Chainsaw CSV row 4w7sA shifted to 1-based: reference bounds {1, 261, 444}, predicted
    # {1, 263, 264, 444} -> points 8, 6, 5, 8; best three 22 / (8 * 4)
    assert boundary_distance_score("1-262,264-443", "1-260,261-443", 443) == pytest.approx(0.6875, abs=1e-15)
    # wider window: 20, 18, 17, 20 -> 58 / (20 * 4)
    assert boundary_distance_score("1-262,264-443", "1-260,261-443", 443, max_distance=20) == pytest.approx(
        0.725, abs=1e-15
    )


def test_boundary_distance_reference_linker_counts_as_boundary():
    # reference bounds {1, 41, 61, 101} with linker 41-60; prediction {1, 51, 101}: 51 is linker -> 24 / 32
    assert boundary_distance_score("1-50,51-100", "1-40,61-100", 100) == pytest.approx(0.75, abs=1e-15)


def test_boundary_distance_over_prediction_is_penalised():
    # reference bounds {1, 101}; prediction {1, 51, 101}: 51 is 50 away -> (8 + 8) / (8 * 3)
    assert boundary_distance_score("1-50,51-100", "1-100", 100) == pytest.approx(2 / 3, abs=1e-15)


def test_boundary_distance_far_boundaries_score_nothing():
    # 10 residues off (> 8): only the two chain ends score -> 16 / 24
    assert boundary_distance_score("1-60,61-100", "1-50,51-100", 100) == pytest.approx(16 / 24, abs=1e-15)


def test_boundary_distance_edge_cases():
    assert boundary_distance_score("na", "1-100", 100) == 0.0
    assert boundary_distance_score("1-100", "na", 100) == 0.0


# --- matched domains ----------------------------------------------------------------------


def test_domains_matched_perfect_and_merged():
    assert domains_matched("1-50,51-100", "1-50,51-100") == (2, 2)
    assert domains_matched("51-100,1-50", "1-50,51-100") == (2, 2)  # order does not matter
    assert domains_matched("1-100", "1-50,51-100") == (0, 2)
    assert domains_matched("na", "1-50,51-100") == (0, 2)
    assert domains_matched("1-50", "na") == (0, 0)


def test_domains_matched_iou_threshold_is_inclusive():
    assert domains_matched("1-80", "1-100") == (1, 1)  # IoU 0.80
    assert domains_matched("1-79", "1-100") == (0, 1)  # IoU 0.79
    assert domains_matched("1-79", "1-100", iou=0.75) == (1, 1)


def test_domains_matched_is_one_to_one():
    # two predictions of one reference domain match it once; one prediction cannot match two references
    assert domains_matched([{*range(1, 101)}, {*range(1, 101)}], "1-100,101-200") == (1, 2)
    assert domains_matched("1-100", [{*range(1, 101)}, {*range(1, 101)}]) == (1, 2)


# --- score_method -------------------------------------------------------------------------


def test_score_method_means_per_model_and_counts():
    reference = {
        "a": (100, "1-50,51-100"),
        "b": (100, "1-100"),
        "c": (100, "na"),  # no reference domain: left out of the NDO / boundary means
        "d": (100, "1-100"),  # missing from the method: scored as no domain
    }
    choppings = {"a": "1-50,51-100", "b": "1-50,51-100", "c": "1-100", "extra": "1-10"}
    s = score_method(choppings, reference)
    assert s["n_models"] == 4
    assert s["n_models_scored"] == 3
    assert s["n_models_missing"] == 1
    assert s["n_pred_domains"] == 2 + 2 + 1 + 0
    assert s["n_ref_domains"] == 2 + 1 + 0 + 1
    assert s["n_matched"] == 2
    assert s["matched_share"] == pytest.approx(0.5)
    assert s["mean_ndo"] == pytest.approx((1.0 + 0.5 + 0.0) / 3)
    assert s["mean_boundary_distance_score"] == pytest.approx((1.0 + 2 / 3 + 0.0) / 3)
    assert s["per_model"]["c"]["ndo"] is None
    assert "extra" not in s["per_model"]


def test_score_method_empty_reference_gives_nan_means():
    s = score_method({}, {})
    assert s["n_models"] == 0
    assert math.isnan(s["mean_ndo"]) and math.isnan(s["matched_share"])


# --- Chainsaw's published CATH1363 metrics -------------------------------------------------

# Chains whose published boundary score needs a chain longer than both choppings (the residues after
# the last domain are reference linker, i.e. boundary); the CSV does not give chain lengths.
CHAINS_LONGER_THAN_CHOPPINGS = {
    "5mbvD", "2krrA", "1y5iC", "2kkhA", "2hvzA", "4yfbC", "2kpyA", "5cm7A", "5d0uA", "1m1eB", "3thtA", "2y3sB",
}


def _grouped(bounds: str, names: str) -> list[set[int]]:
    """Chainsaw's `*_dbounds` segments grouped by `*_dnames` (its `*_chopping` column is garbled)."""
    doms: dict[str, set[int]] = {}
    for seg, name in zip(bounds.split("|"), names.split("|")):
        start, end = seg.split("-")
        doms.setdefault(name, set()).update(range(int(start), int(end) + 1))
    return list(doms.values())


def _chainsaw_rows() -> list[dict[str, str]]:
    if not CHAINSAW_CSV.exists():
        pytest.skip(f"{CHAINSAW_CSV} not available")
    with open(CHAINSAW_CSV, newline="") as fh:
        return [r for r in csv.DictReader(fh) if r["ndo"]]


def test_reproduces_chainsaw_published_ndo_and_boundary_distance():
    rows = _chainsaw_rows()
    assert len(rows) == 1357  # 1363 test chains, 6 failed in Chainsaw's run
    ndo_diff = bds_diff = 0.0
    off = set()
    for r in rows:
        true = _grouped(r["true_dbounds"], r["true_dnames"])
        pred = _grouped(r["pred_dbounds"], r["pred_dnames"])
        n = max(set().union(*true, *pred)) + 1  # 0-based, consecutively renumbered chains
        ndo_diff = max(ndo_diff, abs(ndo_score(pred, true, range(n), pred_linker=False) - float(r["ndo"])))
        d = abs(boundary_distance_score(pred, true, range(n)) - float(r["boundary_dist_score"]))
        if d > 1e-12:
            off.add(r["chain_id"])
            d = abs(boundary_distance_score(pred, true, range(n + 1)) - float(r["boundary_dist_score"]))
        bds_diff = max(bds_diff, d)
    assert ndo_diff < 1e-12
    assert off == CHAINS_LONGER_THAN_CHOPPINGS
    assert bds_diff < 1e-12


def test_chainsaw_published_ndo_leaves_out_predicted_linker():
    # Documents the convention: with the predicted-linker row the published values are not reproduced.
    rows = _chainsaw_rows()
    differ = 0
    for r in rows:
        true = _grouped(r["true_dbounds"], r["true_dnames"])
        pred = _grouped(r["pred_dbounds"], r["pred_dnames"])
        n = max(set().union(*true, *pred)) + 1
        differ += abs(ndo_score(pred, true, range(n)) - float(r["ndo"])) > 1e-9
    assert differ > 300
