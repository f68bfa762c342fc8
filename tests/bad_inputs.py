"""A corpus of bad (and awkward but valid) inputs, derived at test time from real shared AFDB files.

`build_corpus(base, shared_data)` writes every input under ``base/corpus`` (small files only, a
few MB in all; nothing is committed) and returns a `Corpus` that says what each input must give:

* `errors`: source URI -> (stage, error_kind) of the one error row the input must produce;
* `good`: source URI -> entry id of inputs that must be parsed and fragmented (>= 1 fragment), among
  them two real models that both say chain A around a TER (`REPEATED_CHAIN_ID`) and a model with
  pLDDT on a 0-1 scale in its B-factors (`PLDDT_0_1`);
* `no_fragments`: source URI -> entry id of inputs that must give chain rows but no fragment and no
  error (a 1-residue chain, a chain whose pLDDT is all below the cutoff);
* `skipped`: paths that listing a folder skips silently (no row anywhere);
* `explicit`: inputs that a folder walk skips and that must be named on their own (unknown extension);
* `odd_names`: source URI (as the tables show it) -> entry id of good files whose local name is not
  valid UTF-8; they live in ``base/odd_names``, outside the corpus folder, because the Ray driver
  (`fragmenting.plan_units`) cannot hash such a name yet. Tar members with such names are in the corpus.

`Corpus.read` is the `ReadConfig` the expectations assume (small caps, so that the size limits are
exercised with small files). Used by tests/test_bad_inputs.py.
"""

from __future__ import annotations

import gzip
import os
import tarfile
from dataclasses import dataclass, field
from pathlib import Path

import gemmi

from conftest import add_tar_member as _add
from rayfold.config import ReadConfig

GOOD_PDB = "afdb_mycoplasma_mycoides_pdb/structures/F4MNP7.pdb.gz"  # 450 residues, AFDB v4 PDB
GOOD_CIF = "afdb_misc_models/alphafill_test/AF-P29373-F1-model_v4.cif.gz"  # 138 residues, AFDB v4 mmCIF
OTHER_PDB = "afdb_misc_models/merizo_examples/AF-Q96HM7-F1-model_v4.pdb.gz"
ODD_NAME_CIF = "afdb_misc_models/lahuta_models/AF-Q57552-F1-model_v4.cif.gz"
TAR_LATIN1 = "afdb_misc_models/dpam_examples/O05011.pdb.gz"
LONG_PDB = "afdb_misc_models/merizo_examples/AF-Q9P273-F1-model_v4.pdb.gz"  # teneurin-3, 2,699 residues
TAR_GOOD = "afdb_misc_models/dpam_examples/O05012.cif.gz"
TAR_GOOD_2 = "afdb_misc_models/dpam_examples/O05023.cif.gz"

REPEATED_CHAIN_ID = "repeated_chain_id.pdb"  # GOOD_PDB, TER, OTHER_PDB's atoms: both chain A
PLDDT_0_1 = "plddt_0_1.pdb"  # GOOD_PDB with B-factors / 100, as ESMFold writes pLDDT

# Small caps so that each limit is hit by a file of a few MB; every good input stays under them
# (the 2,699-residue model: 1.7 MB decompressed, 21,147 atoms).
CORPUS_READ = ReadConfig(max_file_bytes=3 * 2**20, max_decompressed_bytes=8 * 2**20, max_atoms=30_000)


@dataclass
class Corpus:
    root: Path
    read: ReadConfig
    errors: dict[str, tuple[str, str]] = field(default_factory=dict)
    good: dict[str, str] = field(default_factory=dict)
    no_fragments: dict[str, str] = field(default_factory=dict)
    skipped: list[str] = field(default_factory=list)
    explicit: list[str] = field(default_factory=list)
    odd_names: dict[str, str] = field(default_factory=dict)
    odd_dir: str = ""  # the folder holding them
    duplicates: tuple[str, str] = ("", "")  # two files with identical content (same entry id)

    def specs(self) -> list[str]:
        """What to pass to `list_inputs` / `run_fragment`: the folder plus the explicit files."""
        return [str(self.root), *self.explicit]


def _gunzip(shared: Path, rel: str) -> bytes:
    return gzip.decompress((shared / rel).read_bytes())


def _pdb_lines(text: bytes) -> list[bytes]:
    return text.split(b"\n")


def _is_atom(line: bytes) -> bool:
    return line.startswith((b"ATOM  ", b"HETATM"))


def _set_columns(line: bytes, start: int, stop: int, value: str) -> bytes:
    return line[:start] + value.rjust(stop - start).encode() + line[stop:]


def with_insertion_codes(pdb_text: bytes, first: int, last: int) -> tuple[bytes, dict[int, str]]:
    """`pdb_text` renumbered as a chain with inserted residues: `first` keeps its number, `first`+1
    .. `last` become `first`A, `first`B ... and later residues move down by `last` - `first`.

    Returns the text and {old number: new label} (e.g. 229 -> '229', 233 -> '229D', 290 -> '229').
    """
    assert 0 <= last - first <= 26
    label = {}
    out = []
    for ln in _pdb_lines(pdb_text):
        if _is_atom(ln) or ln.startswith(b"TER "):
            old = int(ln[22:26])
            num, code = (old, "") if old <= first else (first, chr(64 + old - first)) if old <= last else (
                old - (last - first), "")
            label[old] = f"{num}{code}"
            ln = _set_columns(_set_columns(ln, 22, 26, str(num)), 26, 27, code or " ")
        out.append(ln)
    return b"\n".join(out), label


def _cif_edit(text: bytes, edit) -> bytes:
    doc = gemmi.cif.read_string(text)
    edit(doc.sole_block())
    return doc.as_string().encode()


def build_corpus(base: Path, shared: Path) -> Corpus:
    root = base / "corpus"
    root.mkdir(parents=True, exist_ok=True)
    c = Corpus(root=root, read=CORPUS_READ)

    def write(name: str, data: bytes) -> str:
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
        return str(path)

    def bad(name: str, data: bytes, stage: str, kind: str) -> str:
        uri = write(name, data)
        c.errors[uri] = (stage, kind)
        return uri

    good_gz = (shared / GOOD_PDB).read_bytes()
    good_pdb = gzip.decompress(good_gz)
    good_cif = _gunzip(shared, GOOD_CIF)
    long_pdb = _gunzip(shared, LONG_PDB)

    # --- good inputs, and the same content twice under two names -----------------------------
    c.good[write("F4MNP7.pdb.gz", good_gz)] = "F4MNP7"
    c.good[write("renamed/copy-of-F4MNP7.pdb.gz", good_gz)] = "F4MNP7"  # content names the entry
    c.duplicates = (str(root / "F4MNP7.pdb.gz"), str(root / "renamed/copy-of-F4MNP7.pdb.gz"))
    c.good[write("long/AF-Q9P273-F1-model_v4.pdb.gz", (shared / LONG_PDB).read_bytes())] = "Q9P273"

    # non-UTF-8 bytes (Latin-1 names, stray 0xFF) in header fields: read, bytes become '?'
    other = _gunzip(shared, OTHER_PDB)
    assert b"JOHN JUMPER" in other
    dirty = other.replace(b"JOHN JUMPER", b"J\xd6HN J\xdcMPER \xff\xfe", 1)
    dirty = dirty.replace(b"\nATOM  ", b"\nREMARK 999 caf\xe9 \xc5ngstr\xf6m \x80\x81\nATOM  ", 1)
    c.good[write("encoding/latin1.pdb", dirty)] = "Q96HM7"
    assert b"Jumper, John" in good_cif
    dirty_cif = good_cif.replace(b"Jumper, John", b"J\xfcmper, J\xf6hn \xff", 1)
    c.good[write("encoding/latin1.cif", dirty_cif)] = "P29373"

    # --- valid files that give chain rows but no fragment (not errors) ------------------------
    lines = _pdb_lines(good_pdb)
    first_res = [_set_columns(ln, 60, 66, "90.00") for ln in lines if _is_atom(ln) and ln[22:26] == b"   1"]
    c.no_fragments[write("one_residue.pdb", b"\n".join([*first_res, b"TER", b"END", b""]))] = "one_residue"
    low = [_set_columns(ln, 60, 66, "40.00") if _is_atom(ln) else ln for ln in lines]
    c.no_fragments[write("low_plddt.pdb", b"\n".join(low))] = "F4MNP7"

    # --- awkward files that must still be read right ----------------------------------------------
    # two models concatenated, both chain A, TER between: merged, residues of equal number fused
    head = good_pdb[: good_pdb.index(b"\nENDMDL")]
    tail = [ln for ln in _pdb_lines(other) if _is_atom(ln)]
    c.good[write(REPEATED_CHAIN_ID, b"\n".join([head, *tail, b"TER", b"ENDMDL", b"END", b""]))] = "F4MNP7"
    # pLDDT on 0-1 in the B-factor column (ESMFold): read as 0-100 it would give 0 fragments
    unit = [_set_columns(ln, 60, 66, f"{float(ln[60:66]) / 100:.2f}") if _is_atom(ln) else ln for ln in lines]
    c.good[write(PLDDT_0_1, b"\n".join(unit))] = "F4MNP7"

    # --- read errors ----------------------------------------------------------------------------
    two_chains = long_pdb.replace(b"\nEND", b"") + b"\n" + b"\n".join(
        _set_columns(ln, 21, 22, "B") for ln in _pdb_lines(long_pdb) if _is_atom(ln)
    ) + b"\nEND\n"
    assert len(two_chains) > c.read.max_file_bytes
    bad("too_large.pdb", two_chains, "read", "file_too_large")

    # --- parse errors ---------------------------------------------------------------------------
    bad("truncated.pdb.gz", good_gz[: len(good_gz) // 2], "parse", "truncated_gzip")
    corrupt = bytearray(good_gz)
    for i in range(200, 260):
        corrupt[i] ^= 0x5A
    bad("corrupt.pdb.gz", bytes(corrupt), "parse", "corrupt_gzip")
    bad("empty.cif", b"", "parse", "empty_file")
    bad("no_atom_site.cif", _cif_edit(good_cif, lambda b: b.find_mmcif_category("_atom_site.").erase()),
        "parse", "no_atoms")
    bad("no_ca.pdb", b"\n".join(ln for ln in lines if not (_is_atom(ln) and ln[12:16] == b" CA ")),
        "parse", "no_ca_atoms")
    # a DNA strand (12 nucleotides, P and C4' atoms on the real model's first C-alphas): no protein
    dna = []
    for i, ln in enumerate([ln for ln in lines if _is_atom(ln) and ln[12:16] == b" CA "][:12]):
        xyz = ln[30:54].decode()
        dna.append(f"ATOM  {2 * i + 1:5d}  P    DA B{i + 1:4d}    {xyz}  1.00 80.00           P")
        dna.append(f"ATOM  {2 * i + 2:5d}  C4'  DA B{i + 1:4d}    {xyz}  1.00 80.00           C")
    bad("nucleic_acid.pdb", ("\n".join(dna) + "\nEND\n").encode(), "parse", "no_protein_chain")
    zero_b = [_set_columns(ln, 60, 66, "0.00") if _is_atom(ln) else ln for ln in lines]
    bad("no_plddt.pdb", b"\n".join(zero_b), "parse", "no_plddt")

    def no_metric_zero_b(block: gemmi.cif.Block) -> None:
        for cat in ("_ma_qa_metric_local.", "_ma_qa_metric_global.", "_ma_qa_metric."):
            block.find_mmcif_category(cat).erase()
        col = block.find_values("_atom_site.B_iso_or_equiv")
        for i in range(len(col)):
            col[i] = "0.00"

    bad("no_plddt.cif", _cif_edit(good_cif, no_metric_zero_b), "parse", "no_plddt")

    def zero_metric(block: gemmi.cif.Block) -> None:
        col = block.find_values("_ma_qa_metric_local.metric_value")
        for i in range(len(col)):
            col[i] = "0.00"

    bad("zero_plddt_metric.cif", _cif_edit(good_cif, zero_metric), "parse", "no_plddt")
    # NaN in a side-chain atom (not C-alpha): would reach 3Di encoding and exported structures
    cb = next(i for i, ln in enumerate(lines) if _is_atom(ln) and ln[12:16] == b" CB ")
    nan = list(lines)
    nan[cb] = _set_columns(nan[cb], 30, 38, "nan")
    bad("nan_coords.pdb", b"\n".join(nan), "parse", "bad_coordinates")

    def far_away(block: gemmi.cif.Block) -> None:
        col = block.find_values("_atom_site.Cartn_x")
        col[len(col) // 2] = "1.0e9"

    bad("huge_coords.cif", _cif_edit(good_cif, far_away), "parse", "bad_coordinates")
    origin = [_set_columns(_set_columns(_set_columns(ln, 30, 38, "0.000"), 38, 46, "0.000"), 46, 54, "0.000")
              if _is_atom(ln) else ln for ln in lines]
    bad("placeholder_coords.pdb", b"\n".join(origin), "parse", "bad_coordinates")
    bomb = gzip.compress(b"\0" * (16 * 2**20), compresslevel=9)
    assert len(bomb) < 64_000
    bad("bomb.pdb.gz", bomb, "parse", "decompressed_too_large")
    bad("too_many_atoms.pdb.gz", gzip.compress(two_chains, compresslevel=1), "parse", "too_many_atoms")
    unknown = write("unknown.xyz", b"3\nwater\nO 0.0 0.0 0.0\nH 0.76 0.59 0.0\nH -0.76 0.59 0.0\n")
    c.explicit.append(unknown)
    c.errors[unknown] = ("parse", "unknown_format")

    # --- tar shards -------------------------------------------------------------------------
    hostile = root / "shards" / "hostile.tar"
    hostile.parent.mkdir(parents=True, exist_ok=True)
    with tarfile.open(hostile, "w") as tf:
        _add(tf, "models/O05012.cif.gz", (shared / TAR_GOOD).read_bytes())
        _add(tf, "../escape.pdb", good_pdb)
        _add(tf, "/abs.pdb", good_pdb)
        _add(tf, "link.pdb", type=tarfile.SYMTYPE, linkname="/etc/passwd")
        _add(tf, "hard.pdb", type=tarfile.LNKTYPE, linkname="models/O05012.cif.gz")
        _add(tf, os.fsdecode(b"models/caf\xe9-O05011.pdb.gz"), (shared / TAR_LATIN1).read_bytes())  # Latin-1 name
    c.good[f"{hostile}#models/O05012.cif.gz"] = "O05012"
    c.good[f"{hostile}#models/caf\ufffd-O05011.pdb.gz"] = "O05011"
    for member in ("../escape.pdb", "/abs.pdb", "link.pdb", "hard.pdb"):
        c.errors[f"{hostile}#{member}"] = ("read", "unsafe_tar_member")

    tar_bomb = root / "shards" / "bomb.tar.gz"
    with tarfile.open(tar_bomb, "w:gz") as tf:
        _add(tf, "models/O05023.cif.gz", (shared / TAR_GOOD_2).read_bytes())
        _add(tf, "padding.bin", b"\0" * (16 * 2**20))  # not a structure name: skipped, but decompressed
        _add(tf, "after.pdb", good_pdb)  # never reached
    assert tar_bomb.stat().st_size < 200_000
    c.good[f"{tar_bomb}#models/O05023.cif.gz"] = "O05023"
    c.errors[str(tar_bomb)] = ("read", "decompressed_too_large")

    # --- skipped silently when a folder is listed -----------------------------------------------
    c.skipped.append(write("notes.txt", b"not a structure\n"))
    c.skipped.append(write(".hidden.pdb", good_pdb))
    fifo = root / "pipe.pdb"  # a named pipe: opening it would block; listing must skip it
    if hasattr(os, "mkfifo"):
        os.mkfifo(fifo)
        c.skipped.append(str(fifo))

    # --- a local file whose name is not valid UTF-8 (outside the corpus folder, see above) -------
    odd = base / "odd_names"
    odd.mkdir(exist_ok=True)
    odd_path = os.path.join(str(odd), os.fsdecode(b"\xff-caf\xe9-Q57552.cif.gz"))
    Path(odd_path).write_bytes((shared / ODD_NAME_CIF).read_bytes())
    c.odd_names[f"{odd}/\ufffd-caf\ufffd-Q57552.cif.gz"] = "Q57552"
    c.odd_dir = str(odd)
    assert not set(c.errors) & set(c.good)
    return c
