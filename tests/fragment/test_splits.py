"""The rod-cut veto: elongated helical units stay whole, domains are still cut apart."""

from __future__ import annotations

import numpy as np
import pytest

from conftest import SHARED_DATA
from rayfold.config import FRAGMENT_PRESETS, FragmentConfig, fragment_config
from rayfold.fragment.chain import fragment_chain
from rayfold.fragment.spectral import recursive_bisection
from rayfold.fragment.splits import RodCutVeto
from rayfold.io.structure import read_structure_file
from rayfold.model.errors import InputError
from shapes import compact_walk, helix

MYCOPLASMA = SHARED_DATA / "afdb_mycoplasma_mycoides_pdb" / "structures"
# Helical hairpins of these three models were cut into 8-9 slabs of two helix pieces each.
HAIRPINS = {"F4MNX4": (82, 463), "F4MNX8": (386, 788), "F4MNY0": (471, 894)}


def hairpin(n_per_helix: int) -> np.ndarray:
    """Two antiparallel ideal alpha-helices 10 A apart, joined by a 4-residue turn."""
    up = helix(n_per_helix)
    down = helix(n_per_helix, start=(10.0, 0.0, 1.5 * (n_per_helix - 1)), direction=-1.0)
    turn = np.linspace(up[-1], down[0], 6)[1:-1]
    return np.vstack([up, turn, down])


def bisect(coords: np.ndarray, veto: bool):
    return recursive_bisection(
        coords, scaled_threshold=0.8, accept_split=RodCutVeto(coords, 1.5) if veto else None
    )


def test_a_long_helical_hairpin_is_cut_into_slabs_without_the_veto_and_stays_whole_with_it():
    coords = hairpin(150)
    assert len(bisect(coords, veto=False).leaves) >= 3
    kept = bisect(coords, veto=True)
    assert len(kept.leaves) == 1 and len(kept.leaves[0]) == len(coords)
    assert len(kept.linkers) == 0 and kept.fiedler_values == []


def test_two_domains_on_a_tether_are_still_cut_with_the_veto():
    rng = np.random.default_rng(3)
    a = compact_walk(120, rng)
    b = compact_walk(120, rng, centre=(45.0, 0.0, 0.0))
    tether = np.linspace(a[-1], b[0], 12)[1:-1]
    coords = np.vstack([a, tether, b])
    result = bisect(coords, veto=True)
    sides = [set(leaf.tolist()) for leaf in result.leaves]
    assert any(len(s & set(range(120))) >= 110 and not s & set(range(130, 250)) for s in sides)
    assert any(len(s & set(range(130, 250))) >= 110 and not s & set(range(120)) for s in sides)


def test_a_domain_is_still_freed_from_a_long_helix():
    rng = np.random.default_rng(4)
    domain = compact_walk(150, rng)
    tail = helix(60, start=domain[-1] + np.array([3.8, 0.0, 0.0]))
    coords = np.vstack([domain, tail])
    result = bisect(coords, veto=True)
    assert len(result.leaves) >= 2  # one side compact: the veto does not apply


@pytest.mark.parametrize("accession", sorted(HAIRPINS))
def test_mycoplasma_hairpins_are_no_longer_sliced(accession: str):
    path = MYCOPLASMA / f"{accession}.pdb.gz"
    if not path.exists():
        pytest.skip(f"shared model {path} not available")
    chain = read_structure_file(path).chains[0]
    first, last = HAIRPINS[accession]
    in_hairpin = (chain.residue_numbers >= first) & (chain.residue_numbers <= last)

    def slabs(config: FragmentConfig) -> list:
        fragments = fragment_chain(chain, config).fragments
        return [f for f in fragments if in_hairpin[f.residue_index].all() and f.n_segments >= 2 and f.n_residues < 60]

    assert len(slabs(FragmentConfig(split_max_rg_ratio=None))) >= 7  # the failure this rule fixes
    assert slabs(FragmentConfig()) == []
    whole = [f for f in fragment_chain(chain, FragmentConfig()).fragments if in_hairpin[f.residue_index].any()]
    assert len(whole) == 1 and in_hairpin[whole[0].residue_index].sum() >= 0.9 * (in_hairpin & (chain.plddt >= 65)).sum()


def test_the_seed_preset_is_the_published_recipe_without_rayfolds_rules():
    seed = FRAGMENT_PRESETS["seed"]
    assert (seed.plddt_cutoff, seed.knn_k, seed.sigma, seed.connectivity_threshold) == (65.0, 15, 8.0, 0.05)
    assert (seed.boundary_size, seed.min_partition_size, seed.min_fragment_length) == (4, 50, 20)
    assert seed.scaled_connectivity_threshold is None and seed.split_max_rg_ratio is None
    assert (seed.fill_gap_max, seed.min_island_length, seed.min_segment_length) == (0, 1, 1)
    assert seed.max_rg_ratio is None and seed.min_mean_plddt == 0.0 and seed.min_contact_density == 0.0
    assert FRAGMENT_PRESETS["rayfold"] == FragmentConfig()
    assert fragment_config("seed", {"plddt_cutoff": "70"}).plddt_cutoff == 70.0
    with pytest.raises(InputError, match="unknown fragment preset"):
        fragment_config("chainsaw")
