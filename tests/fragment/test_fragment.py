import gzip
import itertools
from pathlib import Path

import numpy as np
import pytest

from bad_inputs import GOOD_PDB, with_insertion_codes
from rayfold.config import FragmentConfig
from rayfold.eval.boundaries import parse_chopping
from rayfold.fragment.chain import (
    chopping,
    contiguous_segments,
    drop_short_segments,
    fill_short_gaps,
    fragment_chain,
    fragment_residues,
    quality,
    radius_of_gyration,
    rejoin_segments,
    smooth_along_sequence,
)
from rayfold.fragment.contacts import ContactPairs
from rayfold.fragment.geometry import squared_distances
from rayfold.fragment.stage import FragmentStage
from rayfold.io.storage import list_inputs
from rayfold.io.structure import Chain
from shapes import compact_walk, helix


def make_chain(coords: np.ndarray, plddt: np.ndarray, first_number: int = 1) -> Chain:
    n = len(coords)
    return Chain(
        entry_id="TEST",
        accession=None,
        chain_id="A",
        sequence="A" * n,
        residue_numbers=np.arange(first_number, first_number + n, dtype=np.int32),
        insertion_codes=np.array([""] * n),
        ca_coords=np.asarray(coords, dtype=np.float32),
        plddt=np.asarray(plddt, dtype=np.float32),
        plddt_source="b_factor",
    )


def test_segments_split_on_mask_and_chain_break():
    coords = np.column_stack([np.arange(10) * 3.8, np.zeros(10), np.zeros(10)])
    coords[6:] += [20.0, 0, 0]  # chain break between residues 5 and 6
    mask = np.ones(10, bool)
    mask[2] = False
    segments = contiguous_segments(mask, coords, 4.2)
    assert [s.tolist() for s in segments] == [[0, 1], [3, 4, 5], [6, 7, 8, 9]]


def test_rejoin_joins_touching_segments_only():
    rng = np.random.default_rng(0)
    domain = compact_walk(80, rng)
    far = compact_walk(30, rng, centre=(200.0, 0, 0))
    coords = np.vstack([domain, far])
    # the domain is interrupted by a low-confidence loop at 38-42: its two halves must re-join
    segments = [np.arange(0, 38), np.arange(43, 80), np.arange(80, 110)]
    groups = rejoin_segments(segments, coords, FragmentConfig())
    assert [g.tolist() for g in groups] == [
        np.r_[np.arange(0, 38), np.arange(43, 80)].tolist(),
        list(range(80, 110)),
    ]


def test_smoothing_gives_islands_to_their_flanks():
    pieces = [np.r_[0:50, 53:100], np.r_[50:53, 100:160]]
    smoothed = smooth_along_sequence(pieces, min_run=10)
    assert [p.tolist() for p in smoothed] == [list(range(0, 100)), list(range(100, 160))]


def test_chopping_uses_author_numbers():
    numbers = np.array([5, 6, 7, 8, 20, 21, 22], dtype=np.int32)
    assert chopping(numbers, np.array([0, 1, 2, 4, 5])) == "5-7_20-21"
    assert chopping(numbers, np.array([], dtype=np.int64)) == ""


def test_chopping_keeps_insertion_codes_at_a_cut(shared_data: Path, tmp_path: Path) -> None:
    """A real model renumbered so that a cut between two fragments falls among inserted residues
    (269, 269A, 269B ...): the choppings name the inserted residues ('...-269B', '269D-...'), not
    overlapping bare numbers, and the boundary parser reads them."""
    text = gzip.decompress((shared_data / GOOD_PDB).read_bytes())
    plain_file = tmp_path / "plain.pdb"
    plain_file.write_bytes(text)
    stage = FragmentStage()
    plain = stage.process(list_inputs([str(plain_file)])).fragments.column("chopping").to_pylist()
    # the first cut between two fragments with at most 10 residues between them
    ends = [(int(a.rsplit("-", 1)[1]), int(b.split("-", 1)[0])) for a, b in itertools.pairwise(plain)]
    end, start = next((e, s) for e, s in ends if s - e <= 10)
    coded_text, label = with_insertion_codes(text, end - 2, start + 2)
    coded_file = tmp_path / "coded.pdb"
    coded_file.write_bytes(coded_text)
    coded = stage.process(list_inputs([str(coded_file)])).fragments.column("chopping").to_pylist()
    relabel = ["_".join("-".join(label[int(n)] for n in seg.split("-")) for seg in c.split("_")) for c in plain]
    assert coded == relabel
    assert any(c.endswith(f"-{label[end]}") for c in coded) and any(c.startswith(f"{label[start]}-") for c in coded)
    assert label[end][-1].isalpha() and label[start][-1].isalpha() and label[end] != label[start]
    first_number = int(label[end][:-1])  # the number the inserted residues share
    assert [dom for c in coded for dom in parse_chopping(c) if dom[-1][1] == first_number or dom[0][0] == first_number]


def test_radius_of_gyration_of_known_points():
    points = np.array([[1.0, 0, 0], [-1.0, 0, 0], [0, 1.0, 0], [0, -1.0, 0]])
    assert radius_of_gyration(points) == pytest.approx(1.0)


def test_two_domains_with_disordered_tails():
    rng = np.random.default_rng(7)
    tail = np.column_stack([np.arange(30) * 3.8 - 300, np.zeros(30), np.zeros(30)])
    a = compact_walk(120, rng)
    b = compact_walk(110, rng, centre=(60.0, 0, 0))
    coords = np.vstack([tail, a, b])
    plddt = np.r_[np.full(30, 40.0), np.full(230, 90.0)]
    result = fragment_chain(make_chain(coords, plddt), FragmentConfig())
    assert result.n_usable == 230
    sets = [set(f.residue_index.tolist()) for f in result.fragments]
    assert len(sets) >= 2
    covered = set().union(*sets)
    assert sum(len(s) for s in sets) == len(covered)  # disjoint
    assert min(covered) >= 30  # the low-confidence tail is never in a fragment
    assert len(covered) >= 0.9 * 230
    domain_a, domain_b = set(range(30, 150)), set(range(150, 260))
    for s in sets:  # no fragment mixes the two domains (a few boundary residues allowed)
        assert min(len(s & domain_a), len(s & domain_b)) <= 5
    for frag in result.fragments:
        assert frag.n_residues >= 20
        assert frag.passed, frag.fail_reason


def test_short_and_disordered_chains_give_no_fragment():
    rng = np.random.default_rng(3)
    short = fragment_chain(make_chain(compact_walk(16, rng), np.full(16, 95.0)))
    assert short.fragments == [] and short.dropped_short == 1
    low = fragment_chain(make_chain(compact_walk(100, rng), np.full(100, 50.0)))
    assert low.fragments == [] and low.n_usable == 0


def test_extended_fragment_fails_compactness():
    straight = np.column_stack([np.arange(60) * 3.8, np.zeros(60), np.zeros(60)])
    result = fragment_chain(make_chain(straight, np.full(60, 90.0)))
    assert result.fragments
    assert all(not f.passed and f.fail_reason == "not_compact" for f in result.fragments)


def test_whole_chains_keeps_everything():
    rng = np.random.default_rng(5)
    coords = compact_walk(50, rng)
    plddt = np.full(50, 30.0)
    result = fragment_chain(make_chain(coords, plddt, first_number=10), FragmentConfig(whole_chains=True))
    assert len(result.fragments) == 1
    assert result.fragments[0].chopping == "10-59"
    assert result.fragments[0].passed


def test_fill_short_gaps_only_inside_one_piece():
    pieces = [np.r_[0:40, 43:80], np.r_[85:120, 132:150]]
    filled = fill_short_gaps(pieces, n_residues=160, max_gap=10)
    # 40-42 lies inside piece 0: filled; 80-84 lies between two pieces, 120-131 is longer than 10,
    # 150-159 is a chain terminus: all stay out
    assert filled[0].tolist() == list(range(0, 80))
    assert filled[1].tolist() == list(range(85, 120)) + list(range(132, 150))
    assert fill_short_gaps(pieces, 160, max_gap=0) is pieces
    wide = fill_short_gaps(pieces, 160, max_gap=12)
    assert wide[1].tolist() == list(range(85, 150))


def test_single_low_plddt_residues_do_not_punch_holes():
    rng = np.random.default_rng(11)
    coords = compact_walk(120, rng)
    plddt = np.full(120, 90.0)
    plddt[[30, 31, 70, 95]] = 50.0  # isolated low-confidence residues inside one domain
    result = fragment_chain(make_chain(coords, plddt), FragmentConfig())
    assert len(result.fragments) == 1
    assert result.fragments[0].n_segments == 1
    assert result.fragments[0].chopping == "1-120"
    holed = fragment_chain(make_chain(coords, plddt), FragmentConfig(fill_gap_max=0))
    assert holed.fragments[0].n_segments > 1


def test_packing_density_sees_helix_packing_not_lone_helices():
    config = FragmentConfig()
    lone = helix(40)
    chain = make_chain(lone, np.full(40, 90.0))
    frag = quality(chain, np.arange(40), config)
    assert frag.contact_density == 0.0
    assert not frag.passed
    # two antiparallel helices 10 A apart (a helical hairpin): tertiary packing, passes
    hairpin = np.vstack([helix(24), helix(24, start=(10.0, 0.0, 34.5), direction=-1.0)])
    chain = make_chain(hairpin, np.full(48, 90.0))
    frag = quality(chain, np.arange(48), config)
    assert frag.contact_density >= config.min_contact_density
    assert frag.passed, frag.fail_reason
    # the former definition (8 A, |i-j| >= 6, >= 2.0) fails the same hairpin
    old = FragmentConfig(packing_distance=8.0, packing_min_separation=6, min_contact_density=2.0)
    assert not quality(chain, np.arange(48), old).passed


def test_short_islands_leave_their_fragment():
    pieces = [np.r_[10:54, 144], np.r_[60:70, 80:83, 90:100], np.r_[200:203]]
    cleaned = drop_short_segments(pieces, min_length=5)
    assert cleaned[0].tolist() == list(range(10, 54))  # the 1-residue island far away goes
    assert cleaned[1].tolist() == list(range(60, 70)) + list(range(90, 100))  # 3-residue segment goes
    assert cleaned[2].tolist() == [200, 201, 202]  # a piece's only (longest) segment always stays
    assert drop_short_segments(pieces, min_length=1) is pieces


def test_fragment_chain_drops_a_stray_residue_island():
    rng = np.random.default_rng(13)
    domain = compact_walk(80, rng)
    # residues 80-94 are disordered (longer than fill_gap_max); residue 95 sits back on the domain's
    # surface, then a disordered tail
    coords = np.vstack([domain, compact_walk(15, rng, centre=(80.0, 0, 0)), domain[40] + [0.0, 0.0, 4.0],
                        np.column_stack([np.arange(9) * 3.8 + 300, np.zeros(9), np.zeros(9)])])
    plddt = np.r_[np.full(80, 90.0), np.full(15, 40.0), 90.0, np.full(9, 40.0)]
    chain = make_chain(coords, plddt)
    with_island = fragment_chain(chain, FragmentConfig(min_island_length=1))
    assert [f.chopping for f in with_island.fragments] == ["1-80_96-96"]
    cleaned = fragment_chain(chain, FragmentConfig())
    assert [f.chopping for f in cleaned.fragments] == ["1-80"]


def test_squared_distances_are_the_axis_reduction_bit_for_bit():
    rng = np.random.default_rng(21)
    coords = (rng.normal(size=(300, 3)) * 20).astype(np.float32)  # structures store float32
    i, j = rng.integers(0, 300, 5000), rng.integers(0, 300, 5000)
    as_float = coords.astype(np.float64)
    reference = ((as_float[i] - as_float[j]) ** 2).sum(axis=1)
    assert np.array_equal(squared_distances(coords, i, j), reference)
    assert np.array_equal(squared_distances(coords, j, i), reference)  # the same bits either way round


def test_fragment_residues_keep_usable_and_short_inner_gaps():
    usable = np.array([0, 1, 1, 0, 0, 1, 0, 0, 0, 0, 1, 1, 0], dtype=bool)
    # a gap of 2 between usable residues can be filled; a gap of 4 cannot; termini never are
    assert fragment_residues(usable, max_gap=3).tolist() == [1, 2, 3, 4, 5, 10, 11]
    assert fragment_residues(usable, max_gap=4).tolist() == list(range(1, 12))
    assert fragment_residues(np.zeros(5, bool), max_gap=10).tolist() == []


def test_contacts_among_a_subset_are_the_full_search_restricted():
    rng = np.random.default_rng(22)
    coords = compact_walk(150, rng)
    among = np.flatnonzero(rng.random(150) < 0.7)
    full, part = ContactPairs.within(coords, 10.0), ContactPairs.within(coords, 10.0, among)
    inside = np.isin(full.first, among) & np.isin(full.second, among)
    expected = set(zip(full.first[inside].tolist(), full.second[inside].tolist()))
    assert set(zip(part.first.tolist(), part.second.tolist())) == expected
    assert (part.first < part.second).all()
    by_pair = dict(zip(zip(full.first.tolist(), full.second.tolist()), full.squared_distance.tolist()))
    assert [by_pair[p] for p in zip(part.first.tolist(), part.second.tolist())] == part.squared_distance.tolist()


def test_contacts_of_fragment_residues_change_no_fragment(shared_data: Path, monkeypatch) -> None:
    """The neighbour search skips residues no fragment can hold; searching every residue instead
    gives the same fragments on real models with long disordered regions."""
    from rayfold.fragment import chain as chain_module
    from rayfold.io.structure import parse_structure

    folder = shared_data / "afdb_mycoplasma_mycoides_pdb" / "structures"
    files = sorted(folder.glob("*.pdb*"))[:25]
    chains = [c for f in files for c in parse_structure(f.read_bytes(), f.name).chains]
    skipped = sum(len(c.plddt) - len(fragment_residues(c.plddt >= 65.0, 10)) for c in chains)
    assert skipped > 0  # the sample has residues outside any fragment's reach

    def outcome() -> list:
        return [[(f.chopping, f.passed, f.contact_density) for f in fragment_chain(c).fragments] for c in chains]

    restricted = outcome()
    monkeypatch.setattr(chain_module, "fragment_residues", lambda usable, max_gap: np.arange(len(usable)))
    assert outcome() == restricted
