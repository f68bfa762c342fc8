"""Structure reading on real AFDB / OpenFold3 files from the shared data, plus hostile inputs."""

from __future__ import annotations

import csv
import gzip
import pickle
import tracemalloc
from pathlib import Path

import gemmi
import numpy as np
import pytest

from rayfold.io.structure import (
    ParsedEntry,
    backbone_atoms,
    decompress_bytes,
    parse_structure,
    read_structure_file,
    write_fragment_structure,
)
from rayfold.model.errors import InputError

MISC = "afdb_misc_models"
MYCO = "afdb_mycoplasma_mycoides_pdb/structures"


def _read(path: Path) -> bytes:
    return path.read_bytes()


def _first_ca_line(text: str) -> str:
    return next(line for line in text.splitlines() if line.startswith("ATOM") and line[12:16] == " CA ")


def _ca_bfactors(entry: ParsedEntry) -> np.ndarray:
    """C-alpha B-factors straight from the gemmi structure, for cross-checks."""
    out = []
    for (gi, pos) in entry.residue_map:
        ch = entry.structure[0][gi]
        out.extend(ch[int(p)].find_atom("CA", "*").b_iso for p in pos)
    return np.array(out, dtype=np.float32)


def _atom(serial: int, name: str, resn: str, chain: str, resi: int, x: float, *, b: float = 50.0,
          alt: str = " ", het: bool = False) -> str:
    rec = "HETATM" if het else "ATOM  "
    return (f"{rec}{serial:5d} {name:<4}{alt}{resn:>3} {chain}{resi:4d}    {x:8.3f}{0.0:8.3f}{0.0:8.3f}"
            f"{1.0:6.2f}{b:6.2f}           C\n")


# ------------------------------------------------------------------------------------------
# real files


def test_afdb_pdb_v4_gz(shared_data: Path) -> None:
    path = shared_data / MYCO / "F4MNP7.pdb.gz"
    e = read_structure_file(path)
    assert e.file_format == "pdb"
    assert [c.chain_id for c in e.chains] == ["A"]
    c = e.chains[0]
    assert c.n_residues == 450
    assert c.sequence.startswith("MNVNDILKELKLS")
    assert c.plddt_source == "b_factor"
    assert c.ca_coords.dtype == np.float32 and c.ca_coords.shape == (450, 3)
    assert c.residue_numbers.dtype == np.int32
    assert c.insertion_codes.dtype == np.dtype("<U1") and set(c.insertion_codes) == {""}
    assert c.plddt.dtype == np.float32
    np.testing.assert_array_equal(c.residue_numbers, np.arange(1, 451))
    line = _first_ca_line(gzip.decompress(_read(path)).decode())
    np.testing.assert_allclose(c.ca_coords[0], [float(line[30:38]), float(line[38:46]), float(line[46:54])], atol=1e-3)
    assert c.plddt[0] == pytest.approx(float(line[60:66]), abs=1e-4)
    assert e.source_uri == str(path)


@pytest.mark.parametrize(
    "rel, n_res, first_plddt",
    [
        (f"{MISC}/alphafill_test/AF-P29373-F1-model_v4.cif.gz", 138, 71.79),
        (f"{MISC}/cath_alphaflow_fixtures/AF-P00520-F1-model_v3.cif.gz", 1123, None),
    ],
)
def test_afdb_mmcif_v3_v4_local_plddt(shared_data: Path, rel: str, n_res: int, first_plddt: float | None) -> None:
    e = read_structure_file(shared_data / rel)
    assert e.file_format == "mmcif"
    (c,) = e.chains
    assert c.n_residues == n_res
    assert c.plddt_source == "ma_qa_metric_local"
    if first_plddt is not None:
        assert c.plddt[0] == pytest.approx(first_plddt, abs=1e-4)
    # AFDB writes the residue pLDDT into every atom's B-factor as well: both sources agree
    np.testing.assert_allclose(c.plddt, _ca_bfactors(e), atol=0.006)


def test_local_plddt_agrees_with_b_factor_on_all_afdb_mmcif(shared_data: Path) -> None:
    files = sorted((shared_data / "afdb_pf04034_knotted_mmcif_v3/structures").glob("*.cif.gz"))[::8]
    files += sorted((shared_data / MISC).rglob("*.cif.gz"))
    assert len(files) >= 15
    for f in files:
        e = read_structure_file(f)
        assert all(c.plddt_source == "ma_qa_metric_local" for c in e.chains), f.name
        np.testing.assert_allclose(np.concatenate([c.plddt for c in e.chains]), _ca_bfactors(e), atol=0.006)


def test_local_metric_type_decides_use_and_scale(shared_data: Path) -> None:
    text = gzip.decompress(_read(shared_data / MISC / "alphafill_test/AF-P29373-F1-model_v4.cif.gz")).decode()
    row = "2 local  pLDDT 1 pLDDT \n"
    assert row in text
    unit = parse_structure(text.replace(row, "2 local  pLDDT 1 'pLDDT in [0,1]' \n").encode(), "x.cif")
    assert unit.chains[0].plddt_source == "ma_qa_metric_local"
    assert unit.chains[0].plddt[0] == pytest.approx(7179.0, rel=1e-5)  # values there were already 0-100
    other = parse_structure(text.replace(row, "2 local  other 1 zscore \n").encode(), "x.cif")
    assert other.chains[0].plddt_source == "b_factor"


def test_accession_only_names(shared_data: Path) -> None:
    pdb = read_structure_file(shared_data / MYCO / "F4MNP7.pdb.gz")
    assert (pdb.entry_id, pdb.accession) == ("F4MNP7", "F4MNP7")
    cif = read_structure_file(shared_data / MISC / "dpam_examples/O05012.cif.gz")
    assert (cif.entry_id, cif.accession) == ("O05012", "O05012")
    assert cif.chains[0].plddt_source == "ma_qa_metric_local"
    assert cif.chains[0].n_residues == 411


def test_content_wins_over_file_name(shared_data: Path) -> None:
    # DBREF/TITLE (PDB) and _ma_target_ref_db_details/_entry.id (mmCIF) carry the ids
    pdb = parse_structure(_read(shared_data / MYCO / "F4MNP7.pdb.gz"), "renamed.pdb.gz")
    assert (pdb.entry_id, pdb.accession) == ("F4MNP7", "F4MNP7")
    f3 = parse_structure(_read(shared_data / MISC / "cath_alphaflow_fixtures/AF-Q15772-F3-model_v4.cif.gz"), "x.cif.gz")
    assert (f3.entry_id, f3.accession) == ("Q15772-F3", "Q15772")


def test_afdb_fragment_entry_ids(shared_data: Path) -> None:
    base = shared_data / MISC / "cath_alphaflow_fixtures"
    f3 = read_structure_file(base / "AF-Q15772-F3-model_v4.cif.gz")
    f11 = read_structure_file(base / "AF-Q15772-F11-model_v4.cif.gz")
    assert (f3.entry_id, f11.entry_id) == ("Q15772-F3", "Q15772-F11")
    assert f3.accession == f11.accession == "Q15772"
    assert f3.chains[0].entry_id == "Q15772-F3" and f3.chains[0].accession == "Q15772"
    assert (f3.chains[0].n_residues, f11.chains[0].n_residues) == (1400, 1267)
    v3 = read_structure_file(base / "AF-P00520-F1-model_v3.cif.gz")
    assert (v3.entry_id, v3.accession) == ("P00520", "P00520")


def test_fragment_number_from_pdb_dbref_start(shared_data: Path) -> None:
    # AFDB fragment n starts at UniProt residue 200*(n-1)+1; an accession-only PDB keeps it in DBREF
    text = gzip.decompress(_read(shared_data / MYCO / "F4MNP7.pdb.gz")).decode()
    line = next(x for x in text.splitlines() if x.startswith("DBREF "))
    shifted = line[:55] + f"{401:5d}" + line[60:]
    e = parse_structure(text.replace(line, shifted).encode(), "F4MNP7.pdb")
    assert e.entry_id == "F4MNP7-F3"


def test_ids_from_file_name_when_content_has_none(shared_data: Path) -> None:
    headerless = _read(shared_data / "domain_boundaries/ted_pipeline_test30/structures/A0A000.pdb.gz")
    assert parse_structure(headerless, "A0A000.pdb.gz").entry_id == "A0A000"
    e = parse_structure(headerless, "s3://b/shard.tar#x/AF-Q15772-F3-model_v4.pdb.gz")
    assert (e.entry_id, e.accession) == ("Q15772-F3", "Q15772")
    e = parse_structure(headerless, "AF-A0A518BRX6-F1-model_v4.pdb")
    assert (e.entry_id, e.accession) == ("A0A518BRX6", "A0A518BRX6")
    e = parse_structure(headerless, "my model (copy).pdb.gz")
    assert (e.entry_id, e.accession) == ("my_model__copy_", None)


def test_header_stripped_atom_only_pdb(shared_data: Path) -> None:
    stripped = read_structure_file(shared_data / "domain_boundaries/ted_pipeline_test30/structures/A0A000.pdb.gz")
    full = read_structure_file(shared_data / "domain_boundaries/ted_pipeline_stub5/structures/AF-A0A000-F1-model_v4.pdb.gz")
    assert stripped.chains[0].n_residues == 394
    assert stripped.entry_id == full.entry_id == "A0A000"
    np.testing.assert_array_equal(stripped.chains[0].ca_coords, full.chains[0].ca_coords)
    np.testing.assert_array_equal(stripped.chains[0].plddt, full.chains[0].plddt)
    assert stripped.chains[0].sequence == full.chains[0].sequence


def test_unknown_extension_is_sniffed(shared_data: Path) -> None:
    pdb = gzip.decompress(_read(shared_data / "domain_boundaries/ted_pipeline_test30/structures/A0A000.pdb.gz"))
    cif = _read(shared_data / MISC / "alphafill_test/AF-P29373-F1-model_v4.cif.gz")
    assert parse_structure(pdb, "A0A000.txt").file_format == "pdb"
    e = parse_structure(cif, "download.bin")
    assert e.file_format == "mmcif" and e.entry_id == "P29373"
    # mislabelled: mmCIF content behind a .pdb name is read as mmCIF
    assert parse_structure(cif, "P29373.pdb.gz").chains[0].n_residues == 138


def test_openfold3_multichain_hemoglobin(shared_data: Path) -> None:
    e = read_structure_file(shared_data / "openfold3_example_outputs/hemoglobin_seed_42_sample_1_model.cif.gz")
    assert e.entry_id == "hemoglobin_seed_42_sample_1_model"
    assert e.accession is None
    assert [c.chain_id for c in e.chains] == ["A", "C", "B", "D"]  # file order
    assert [c.n_residues for c in e.chains] == [141, 141, 146, 146]
    assert all(c.plddt_source == "b_factor" for c in e.chains)
    assert all(c.entry_id == e.entry_id for c in e.chains)
    allp = np.concatenate([c.plddt for c in e.chains]).astype(np.float64)
    assert allp.mean() == pytest.approx(55.15, abs=0.006)
    assert allp.max() < 65


def test_one_auth_chain_id_on_two_mmcif_chains_is_made_unique(shared_data: Path) -> None:
    """Hemoglobin's chain B written as a second auth_asym_id A: ids A and A2, and the atoms behind
    A2 (for 3Di and exports) are B's, not the first A's."""
    path = shared_data / "openfold3_example_outputs/hemoglobin_seed_42_sample_1_model.cif.gz"
    doc = gemmi.cif.read_string(gzip.decompress(_read(path)))
    col = doc.sole_block().find_values("_atom_site.auth_asym_id")
    for i in range(len(col)):
        if col[i] == "B":
            col[i] = "A"
    e = parse_structure(doc.as_string().encode(), "hemoglobin.cif")
    ref = read_structure_file(path)
    assert [c.chain_id for c in e.chains] == ["A", "C", "A2", "D"]
    np.testing.assert_array_equal(e.chain("A2").ca_coords, ref.chain("B").ca_coords)
    _, ca, _, _ = backbone_atoms(e, "A2", np.arange(20))
    np.testing.assert_array_equal(ca, ref.chain("B").ca_coords[:20])


def test_waters_after_ter_in_the_same_chain_take_no_chain_id(shared_data: Path) -> None:
    text = gzip.decompress(_read(shared_data / MYCO / "F4MNP7.pdb.gz")).decode()
    water = "HETATM 3649  O   HOH A 501      30.000  30.000  30.000  1.00 50.00           O\n"
    e = parse_structure(text.replace("ENDMDL", water + "ENDMDL", 1).encode(), "F4MNP7.pdb")
    assert [(c.chain_id, c.n_residues) for c in e.chains] == [("A", 450)]


def test_openfold3_protein_ligand_ignores_ligand(shared_data: Path) -> None:
    e = read_structure_file(shared_data / "openfold3_example_outputs/mcl1_seed_42_sample_1_model.cif.gz")
    assert [c.n_residues for c in e.chains] == [158] * 4
    gemmi_chains = [ch.name for ch in e.structure[0]]
    assert len(gemmi_chains) > 4  # the ligand chains are there, but are not protein chains
    assert {c.chain_id for c in e.chains} == {"A", "B", "C", "D"}
    assert "X" not in "".join(c.sequence for c in e.chains)


def test_largest_model_2699_residues(shared_data: Path) -> None:
    e = read_structure_file(shared_data / MISC / "merizo_examples/AF-Q9P273-F1-model_v4.pdb.gz")
    (c,) = e.chains
    assert c.n_residues == 2699
    np.testing.assert_array_equal(c.residue_numbers, np.arange(1, 2700))
    assert float(c.plddt.astype(np.float64).mean()) == pytest.approx(77.67, abs=0.006)
    assert np.isfinite(c.ca_coords).all()
    # consecutive C-alpha atoms of a chain are ~3.8 A apart
    d = np.linalg.norm(np.diff(c.ca_coords, axis=0), axis=1)
    assert np.median(d) == pytest.approx(3.8, abs=0.05)


def test_smallest_model_16_residues(shared_data: Path) -> None:
    e = read_structure_file(shared_data / MISC / "chainsaw_examples/AF-A0A0A9LVA1-F1-model_v4.pdb.gz")
    assert e.chains[0].n_residues == 16
    assert e.entry_id == "A0A0A9LVA1"


@pytest.mark.parametrize(
    "rel",
    [f"{MYCO}/F4MNP7.pdb.gz", f"{MISC}/alphafill_test/AF-P29373-F1-model_v4.cif.gz"],
)
def test_plain_and_gz_give_identical_arrays(shared_data: Path, rel: str) -> None:
    gz = _read(shared_data / rel)
    plain = gzip.decompress(gz)
    name = Path(rel).name
    a = parse_structure(gz, name)
    b = parse_structure(plain, name[:-3])
    assert a.entry_id == b.entry_id and a.accession == b.accession
    for x, y in zip(a.chains, b.chains, strict=True):
        assert x.sequence == y.sequence and x.plddt_source == y.plddt_source
        for attr in ("residue_numbers", "insertion_codes", "ca_coords", "plddt"):
            np.testing.assert_array_equal(getattr(x, attr), getattr(y, attr))


def _manifest_rows(shared_data: Path) -> list[tuple[Path, dict[str, str]]]:
    rows = []
    for man in sorted(shared_data.rglob("manifest.tsv")):
        with open(man, newline="") as fh:
            for row in csv.DictReader(fh, delimiter="\t"):
                p = man.parent / row["file"]
                if not p.exists():
                    p = man.parent / "structures" / row["file"]
                rows.append((p, row))
    return rows


def test_plddt_and_length_match_every_shared_manifest(shared_data: Path) -> None:
    rows = _manifest_rows(shared_data)
    assert len(rows) > 300
    bad = []
    for path, row in rows:
        e = read_structure_file(path)
        plddt = np.concatenate([c.plddt for c in e.chains]).astype(np.float64)
        if "n_residues" not in row:  # afdb_pf04034_family_more's manifest counts C-alphas and gives no pLDDT
            if len(plddt) != int(row["n_CA"]):
                bad.append((path.name, len(plddt), row["n_CA"]))
            continue
        if len(plddt) != int(row["n_residues"]) or abs(plddt.mean() - float(row["mean_plddt_per_residue"])) > 0.006:
            bad.append((path.name, len(plddt), round(plddt.mean(), 3), row["n_residues"], row["mean_plddt_per_residue"]))
    assert bad == []


def test_bundled_examples_match_their_manifest() -> None:
    examples = Path(__file__).resolve().parents[2] / "examples" / "afdb"
    man = examples / "manifest.tsv"
    if not man.exists():
        pytest.skip("examples/afdb not present")
    with open(man, newline="") as fh:
        rows = list(csv.DictReader(fh, delimiter="\t"))
    assert len(rows) == 30
    assert sum((examples / r["file"]).stat().st_size for r in rows) < 2.5e6
    for r in rows:
        e = read_structure_file(examples / r["file"])
        plddt = np.concatenate([c.plddt for c in e.chains]).astype(np.float64)
        assert (e.file_format, len(plddt)) == (r["format"], int(r["n_residues"]))
        assert plddt.mean() == pytest.approx(float(r["mean_plddt"]), abs=0.006)


# ------------------------------------------------------------------------------------------
# residue rules on small synthetic files


def test_modified_residue_altloc_and_non_protein() -> None:
    txt = (
        _atom(1, " N", "ALA", "A", 1, 0.0)
        + _atom(2, " CA", "ALA", "A", 1, 1.0, b=70)
        + _atom(3, " CA", "MSE", "A", 2, 4.0, het=True, b=80)  # selenomethionine: counts, as 'M'
        + _atom(4, " CA", "ALA", "A", 3, 7.0, alt="A", b=90)  # first conformer wins
        + _atom(5, " CA", "ALA", "A", 3, 7.5, alt="B", b=10)
        + _atom(6, " N", "GLY", "A", 4, 9.0)  # amino acid without CA: dropped
        + _atom(7, " O", "HOH", "A", 100, 20.0, het=True)
        + _atom(8, " P", " DA", "B", 1, 30.0)  # nucleic acid chain: ignored
        + _atom(9, "CA", " CA", "C", 1, 40.0, het=True)  # calcium ion named CA
    )
    e = parse_structure(txt.encode(), "toy.pdb")
    assert [c.chain_id for c in e.chains] == ["A"]
    c = e.chains[0]
    assert c.sequence == "AMA"
    np.testing.assert_allclose(c.ca_coords[:, 0], [1.0, 4.0, 7.0])
    np.testing.assert_allclose(c.plddt, [70, 80, 90])
    np.testing.assert_array_equal(c.residue_numbers, [1, 2, 3])


def test_microheterogeneity_keeps_first_residue_and_export_drops_altlocs() -> None:
    txt = (
        _atom(1, " CA", "ALA", "A", 1, 1.0)
        + _atom(2, " CA", "ALA", "A", 2, 4.0, alt="A", b=90)
        + _atom(3, " CA", "GLY", "A", 2, 4.5, alt="B", b=10)  # point mutation at the same position
        + _atom(4, " CA", "SER", "A", 3, 8.0, alt="A")
        + _atom(5, " CA", "SER", "A", 3, 8.5, alt="B")
    )
    e = parse_structure(txt.encode(), "toy.pdb")
    c = e.chains[0]
    assert c.sequence == "AAS"
    np.testing.assert_allclose(c.ca_coords[:, 0], [1.0, 4.0, 8.0])
    out = write_fragment_structure(e, "A", np.arange(3)).decode()
    ca_lines = [line for line in out.splitlines() if line.startswith("ATOM") and line[12:16] == " CA "]
    assert [float(line[30:38]) for line in ca_lines] == [1.0, 4.0, 8.0]


def test_parsed_entry_pickles_for_workers(shared_data: Path) -> None:
    e = read_structure_file(shared_data / "openfold3_example_outputs/hemoglobin_seed_42_sample_1_model.cif.gz")
    e2 = pickle.loads(pickle.dumps(e))
    assert [c.chain_id for c in e2.chains] == ["A", "C", "B", "D"]
    np.testing.assert_array_equal(e2.chains[2].ca_coords, e.chains[2].ca_coords)
    assert write_fragment_structure(e2, "B", np.arange(10)) == write_fragment_structure(e, "B", np.arange(10))


def test_insertion_codes_and_unknown_residue() -> None:
    txt = _atom(1, " CA", "ALA", "A", 5, 0.0) + _atom(2, " CA", "UNK", "A", 5, 3.8).replace("A   5 ", "A   5A", 1)
    c = parse_structure(txt.encode(), "toy.pdb").chains[0]
    assert c.sequence == "AX"
    assert c.insertion_codes.tolist() == ["", "A"]


def test_only_model_1_is_read(shared_data: Path) -> None:
    text = gzip.decompress(_read(shared_data / "domain_boundaries/ted_pipeline_test30/structures/A0A001.pdb.gz")).decode()
    body = text.split("ENDMDL")[0].split("\n", 1)[1]  # between MODEL 1 and ENDMDL
    shifted = "".join(
        (line[:30] + f"{float(line[30:38]) + 100:8.3f}" + line[38:] + "\n") if line.startswith("ATOM") else line + "\n"
        for line in body.splitlines()
    )
    two = f"MODEL        1\n{body}ENDMDL\nMODEL        2\n{shifted}ENDMDL\nEND\n"
    one = read_structure_file(shared_data / "domain_boundaries/ted_pipeline_test30/structures/A0A001.pdb.gz")
    e = parse_structure(two.encode(), "two_models.pdb")
    assert len(e.structure) == 1
    np.testing.assert_array_equal(e.chains[0].ca_coords, one.chains[0].ca_coords)


def test_non_ascii_bytes_are_tolerated(shared_data: Path) -> None:
    raw = gzip.decompress(_read(shared_data / MYCO / "F4MNP7.pdb.gz"))
    dirty = raw.replace(b"JOHN JUMPER", b"J\xf6HN J\xff\xfeMPER", 1)
    assert dirty != raw
    a = parse_structure(raw, "F4MNP7.pdb")
    b = parse_structure(dirty, "F4MNP7.pdb")
    np.testing.assert_array_equal(a.chains[0].ca_coords, b.chains[0].ca_coords)
    assert b.entry_id == "F4MNP7"


# ------------------------------------------------------------------------------------------
# unusable inputs


def _kind(data: bytes, name: str = "x.pdb", **kw: object) -> str:
    with pytest.raises(InputError) as ei:
        parse_structure(data, name, **kw)  # type: ignore[arg-type]
    return ei.value.kind


def test_corrupt_and_truncated_gzip(shared_data: Path) -> None:
    gz = bytearray(_read(shared_data / MYCO / "F4MNP7.pdb.gz"))
    assert _kind(bytes(gz[: len(gz) // 2]), "F4MNP7.pdb.gz") == "truncated_gzip"
    assert _kind(bytes(gz[:-4]), "F4MNP7.pdb.gz") == "truncated_gzip"  # size field missing
    corrupt = bytearray(gz)
    for i in range(200, 260):
        corrupt[i] ^= 0x5A
    assert _kind(bytes(corrupt), "F4MNP7.pdb.gz") == "corrupt_gzip"
    crc = bytearray(gz)
    crc[-8] ^= 0xFF  # CRC32 of the content
    assert _kind(bytes(crc), "F4MNP7.pdb.gz") == "corrupt_gzip"


def test_multi_member_gzip_and_trailing_zeros(shared_data: Path) -> None:
    raw = gzip.decompress(_read(shared_data / MYCO / "F4MNP7.pdb.gz"))
    half = len(raw) // 2
    joined = gzip.compress(raw[:half]) + gzip.compress(raw[half:]) + b"\x00" * 16
    assert decompress_bytes(joined) == raw
    np.testing.assert_array_equal(
        parse_structure(joined, "F4MNP7.pdb.gz").chains[0].ca_coords,
        parse_structure(raw, "F4MNP7.pdb").chains[0].ca_coords,
    )


def test_empty_inputs() -> None:
    assert _kind(b"") == "empty_file"
    assert _kind(b"  \n\n") == "empty_file"
    assert _kind(gzip.compress(b""), "x.pdb.gz") == "empty_file"


def test_unknown_format_and_binary() -> None:
    assert _kind(b"hello, this is a text file\nwith two lines\n", "notes.txt") == "unknown_format"
    assert _kind(bytes(range(256)) * 4, "blob") == "unknown_format"
    assert _kind(b"\x28\xb5\x2f\xfd" + b"\x00" * 20, "x.pdb.zst") == "unsupported_compression"


def test_gzip_bomb_is_capped_without_allocating_it() -> None:
    bomb = gzip.compress(b"\0" * (64 * 2**20), compresslevel=9)  # 64 MiB of zeros in ~64 KB
    assert len(bomb) < 2**20
    cap = 2**20
    tracemalloc.start()
    try:
        assert _kind(bomb, "bomb.pdb.gz", max_decompressed_bytes=cap) == "decompressed_too_large"
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 4 * cap


def test_no_protein_chain_and_no_ca_atoms() -> None:
    water = _atom(1, " O", "HOH", "A", 1, 0.0, het=True) + _atom(2, " P", " DA", "B", 1, 5.0)
    assert _kind(water.encode()) == "no_protein_chain"
    no_ca = _atom(1, " N", "ALA", "A", 1, 0.0) + _atom(2, " C", "ALA", "A", 1, 1.5)
    assert _kind(no_ca.encode()) == "no_ca_atoms"
    assert _kind(b"REMARK nothing here\nEND\n", "x.pdb") == "no_atoms"


def test_bad_coordinates_and_parse_errors() -> None:
    line = _atom(1, " CA", "ALA", "A", 1, 1.0)
    assert _kind(line.replace("   1.000", "     nan", 1).encode()) == "bad_coordinates"
    assert _kind(b"data_x\nloop_\n_atom_site.id\n'unterminated\n", "x.cif") == "parse_error"


# ------------------------------------------------------------------------------------------
# export


@pytest.mark.parametrize("fmt", ["pdb", "mmcif"])
def test_write_fragment_structure_round_trip(shared_data: Path, fmt: str) -> None:
    e = read_structure_file(shared_data / MISC / "alphafill_test/AF-P29373-F1-model_v4.cif.gz")
    c = e.chains[0]
    idx = np.r_[10:40, 60:80]
    out = write_fragment_structure(e, "A", idx, fmt=fmt)
    frag = parse_structure(out, f"frag.{'pdb' if fmt == 'pdb' else 'cif'}")
    (fc,) = frag.chains
    assert fc.sequence == "".join(c.sequence[i] for i in idx)
    np.testing.assert_allclose(fc.ca_coords, c.ca_coords[idx], atol=1e-3)
    np.testing.assert_array_equal(fc.residue_numbers, c.residue_numbers[idx])
    np.testing.assert_allclose(fc.plddt, c.plddt[idx], atol=0.01)  # B-factors carry pLDDT
    # all atoms of the chosen residues, not only C-alpha
    src = e.structure[0][e.residue_map[0][0]]
    n_atoms = sum(len(src[int(p)]) for p in e.residue_map[0][1][idx])
    assert sum(len(r) for r in frag.structure[0][0]) == n_atoms > 4 * len(idx)


def test_write_fragment_structure_rejects_bad_requests(shared_data: Path) -> None:
    e = read_structure_file(shared_data / "openfold3_example_outputs/hemoglobin_seed_42_sample_1_model.cif.gz")
    out = write_fragment_structure(e, "D", np.arange(5)).decode()
    assert sum(line.startswith("ATOM") for line in out.splitlines()) > 20
    with pytest.raises(KeyError):
        write_fragment_structure(e, "Z", np.arange(5))
    with pytest.raises(IndexError):
        write_fragment_structure(e, "A", np.array([0, 141]))
    with pytest.raises(ValueError):
        write_fragment_structure(e, "A", np.array([0.5]))
