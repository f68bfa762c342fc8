"""3Di encoding (rayfold.align.alphabet) and backbone extraction (rayfold.io.structure.backbone_atoms)."""

from __future__ import annotations

from pathlib import Path

import gemmi
import numpy as np
import pytest

from rayfold.align.alphabet import ALPHABET_3DI, encode_3di, encode_3di_ca, encode_fragment, encode_states
from rayfold.io.structure import backbone_atoms, parse_structure, read_structure_file

MYCO = "afdb_mycoplasma_mycoides_pdb/structures"
GLOBIN = "foldseek/foldseek_example_scop/d1asha_.pdb.gz"


def _mini3di_reference(path: Path) -> str:
    """3Di straight from mini3di, with atoms read by gemmi independently of rayfold."""
    from mini3di import Encoder

    st = gemmi.read_structure(str(path))
    rows = []
    for res in st[0][0]:
        if res.find_atom("CA", "*") is None or not gemmi.find_tabulated_residue(res.name).is_amino_acid():
            continue
        rows.append([
            (lambda a: [a.pos.x, a.pos.y, a.pos.z] if a is not None else [np.nan] * 3)(res.find_atom(n, "*"))
            for n in ("N", "CA", "C", "CB")
        ])
    xyz = np.array(rows, dtype=np.float32)  # (L, 4, 3)
    enc = Encoder()
    states = enc.encode_atoms(ca=xyz[:, 1], cb=xyz[:, 3], n=xyz[:, 0], c=xyz[:, 2])
    return enc.build_sequence(states)


@pytest.mark.parametrize("rel", [GLOBIN, f"{MYCO}/F4MNP7.pdb.gz"])
def test_encoding_matches_mini3di(shared_data: Path, rel: str) -> None:
    path = shared_data / rel
    entry = read_structure_file(path)
    chain = entry.chains[0]
    got = encode_fragment(entry, chain.chain_id, np.arange(chain.n_residues))
    assert len(got) == chain.n_residues
    assert set(got) <= set(ALPHABET_3DI)
    assert got == _mini3di_reference(path)
    # Foldseek's invalid state (2 -> 'D') at both chain ends
    assert got[0] == "D" and got[-1] == "D"


def test_fragment_is_encoded_on_its_own_residues(shared_data: Path) -> None:
    entry = read_structure_file(shared_data / GLOBIN)
    chain = entry.chains[0]
    idx = np.arange(20, 90)
    n, ca, c, cb = backbone_atoms(entry, chain.chain_id, idx)
    frag = encode_3di(n, ca, c, cb)
    assert frag == encode_fragment(entry, chain.chain_id, idx)
    assert len(frag) == len(idx) and frag[0] == "D" and frag[-1] == "D"
    whole = encode_fragment(entry, chain.chain_id, np.arange(chain.n_residues))
    # away from the cut ends most states agree with the whole-chain encoding
    same = np.mean([a == b for a, b in zip(frag[5:-5], whole[25:85])])
    assert same > 0.7


def test_backbone_atoms_shapes_order_and_glycine(shared_data: Path) -> None:
    entry = read_structure_file(shared_data / GLOBIN)
    chain = entry.chains[0]
    idx = np.arange(chain.n_residues)
    n, ca, c, cb = backbone_atoms(entry, chain.chain_id, idx)
    for arr in (n, ca, c, cb):
        assert arr.shape == (chain.n_residues, 3) and arr.dtype == np.float32
    np.testing.assert_array_equal(ca, chain.ca_coords)
    gly = np.array([aa == "G" for aa in chain.sequence])
    assert gly.any()
    assert np.isnan(cb[gly]).all() and np.isfinite(cb[~gly]).all()
    assert np.isfinite(n).all() and np.isfinite(c).all()
    # order as given, duplicates kept
    sub = np.array([5, 3, 3, 0])
    _, ca_sub, _, _ = backbone_atoms(entry, chain.chain_id, sub)
    np.testing.assert_array_equal(ca_sub, chain.ca_coords[sub])
    with pytest.raises(IndexError):
        backbone_atoms(entry, chain.chain_id, np.array([chain.n_residues]))
    with pytest.raises(KeyError):
        backbone_atoms(entry, "Z", idx)


def _pdb_line(serial: int, name: str, resname: str, resseq: int, xyz: tuple[float, float, float]) -> str:
    return (
        f"ATOM  {serial:5d} {name:<4s} {resname:3s} A{resseq:4d}    "
        f"{xyz[0]:8.3f}{xyz[1]:8.3f}{xyz[2]:8.3f}  1.00 90.00           {name[0]}"
    )


def test_missing_atoms_are_nan_and_invalid_states() -> None:
    # an ideal-ish helix of 12 alanines; residue 6 has no N, residue 7 no CB
    lines, serial = [], 1
    for i in range(12):
        t = np.deg2rad(100.0 * i)
        ca = (2.3 * np.cos(t), 2.3 * np.sin(t), 1.5 * i)
        atoms = {
            "N": (ca[0] - 0.5, ca[1] + 1.2, ca[2] - 0.6),
            "CA": ca,
            "C": (ca[0] + 0.6, ca[1] - 1.1, ca[2] + 0.5),
            "CB": (ca[0] * 1.6, ca[1] * 1.6, ca[2]),
        }
        for name, xyz in atoms.items():
            if (i == 6 and name == "N") or (i == 7 and name == "CB"):
                continue
            lines.append(_pdb_line(serial, name, "ALA", i + 1, xyz))
            serial += 1
    entry = parse_structure(("\n".join(lines) + "\nEND\n").encode(), "helix.pdb")
    idx = np.arange(12)
    n, ca, c, cb = backbone_atoms(entry, "A", idx)
    assert np.isnan(n[6]).all() and np.isfinite(n[np.arange(12) != 6]).all()
    assert np.isnan(cb[7]).all() and np.isfinite(cb[np.arange(12) != 7]).all()
    states = encode_states(n, ca, c, cb)
    assert states.dtype == np.uint8 and len(states) == 12
    # a residue next to one without N has no descriptor: Foldseek's invalid state (2, 'D')
    assert (states[5:8] == 2).all()
    assert encode_3di(n, ca, c, cb)[5:8] == "DDD"


def _mini3di_states(n: np.ndarray, ca: np.ndarray, c: np.ndarray, cb: np.ndarray) -> np.ndarray:
    from mini3di import Encoder

    return np.asarray(Encoder().encode_atoms(ca=ca, cb=cb, n=n, c=c).filled(), dtype=np.uint8)


def test_states_equal_mini3di_on_every_fragment_of_real_models(shared_data: Path) -> None:
    """The partner search on plain arrays (`alphabet._states`) gives mini3di's states exactly."""
    from rayfold.config import FragmentConfig
    from rayfold.fragment.chain import fragment_chain

    paths = sorted((shared_data / MYCO).glob("*.pdb.gz"))[:12] + [shared_data / GLOBIN]
    compared = 0
    for path in paths:
        entry = read_structure_file(path)
        for chain in entry.chains:
            parts = [f.residue_index for f in fragment_chain(chain, FragmentConfig()).fragments]
            for idx in [*parts, np.arange(chain.n_residues)]:
                n, ca, c, cb = backbone_atoms(entry, chain.chain_id, idx)
                np.testing.assert_array_equal(encode_states(n, ca, c, cb), _mini3di_states(n, ca, c, cb))
                compared += 1
    assert compared >= 25


def test_states_equal_mini3di_on_ties_and_tiny_inputs() -> None:
    """Integer-grid coordinates make equal distances common: the nearest partner must be the one
    mini3di picks (argmin's first), also for 3-5 residues, where the chain ends are the only others."""
    rng = np.random.default_rng(11)
    for _ in range(300):
        k = int(rng.integers(3, 14))
        ca = rng.integers(-4, 5, size=(k, 3)).astype(np.float32) * 1.5
        n, c, cb = (ca + rng.integers(-1, 2, size=(k, 3)).astype(np.float32) for _ in range(3))
        if rng.random() < 0.3:
            cb[rng.integers(k)] = np.nan  # rebuilt from N, CA, C
        np.testing.assert_array_equal(encode_states(n, ca, c, cb), _mini3di_states(n, ca, c, cb))


def test_short_inputs() -> None:
    z = np.zeros((0, 3), dtype=np.float32)
    assert encode_3di(z, z, z, z) == ""
    one = np.zeros((2, 3), dtype=np.float32)
    assert encode_3di(one, one, one, one) == "DD"
    with pytest.raises(ValueError):
        encode_3di(np.zeros((3, 3)), np.zeros((4, 3)), np.zeros((4, 3)), np.zeros((4, 3)))
    assert encode_3di_ca(np.zeros((1, 3))) == "D"


def test_ca_only_approximation_agrees_mostly(shared_data: Path) -> None:
    agree = []
    for rel in (GLOBIN, f"{MYCO}/F4MNP7.pdb.gz", f"{MYCO}/F4MNQ0.pdb.gz"):
        entry = read_structure_file(shared_data / rel)
        chain = entry.chains[0]
        full = encode_fragment(entry, chain.chain_id, np.arange(chain.n_residues))
        approx = encode_3di_ca(chain.ca_coords)
        assert len(approx) == len(full)
        agree.append(np.mean([a == b for a, b in zip(full, approx)]))
    assert min(agree) > 0.75, agree
