"""Parse predicted-structure files (mmCIF/PDB bytes) into NumPy chains with per-residue pLDDT.

Reading rules
-------------
* Compression: gzip is detected by its magic bytes (not the name) and stream-decompressed with a
  hard cap (`max_decompressed_bytes`), so a gzip bomb never allocates more than the cap.
  Multi-member gzip is read to the end; bytes after the last member are ignored.
* Format: from the name (``.cif``/``.mmcif`` -> mmCIF, ``.pdb``/``.ent`` -> PDB, each optionally
  ``.gz``); when the extension is unknown the content is sniffed (a ``data_`` block -> mmCIF,
  ``ATOM``/``HETATM``/``HEADER``/``MODEL`` records -> PDB). A file whose content plainly
  contradicts its extension (``data_`` block in a ``.pdb``) is read as what the content says.
* Non-ASCII bytes (structure files are ASCII by specification; they turn up in author names) are
  replaced byte for byte by ``?`` before parsing, so PDB columns stay aligned and nothing crashes.
* Model 1 only (the first model in the file; `ParsedEntry.structure` keeps only that model).
  Alternative conformations: the first conformer (first altloc of CA; the first residue where
  two share one position) is used for the chains and for fragment exports.
* Protein chains only: a residue counts when its name is a tabulated amino acid (standard or
  modified, e.g. MSE; HETATM or ATOM alike) and it has a CA atom. Chains without such residues
  (waters, ligands, nucleic acids) are dropped; no protein chain at all -> ``no_protein_chain``.
* pLDDT per residue: mmCIF ``_ma_qa_metric_local`` (local pLDDT metric of model 1, mapped by
  label_asym_id + label_seq_id) when it covers every residue of the chain, else the CA atom's
  B-factor (AFDB PDB: residue value on every atom; OpenFold3: per-atom pLDDT, so CA's value).
  The two agree to 0.005 on every AFDB mmCIF in the shared data. A ModelCIF metric of type
  ``pLDDT in [0,1]`` is scaled to 0-100. B-factors are pLDDT on 0-100 unless every B-factor pLDDT
  of the file is <= 1 (and not all 0): ESMFold and some other predictors write 0-1 there, so such
  a file is scaled x100 and its chains say ``plddt_source = "b_factor_0_1"``. On 0-100 it would
  be a model with no residue above pLDDT 1, and every residue would silently be unusable.
* Chain ids: each gemmi chain is one chain, and a PDB ``TER`` record ends a chain (as the format
  says), so two proteins that both say chain ``A`` around a ``TER`` stay two chains instead of
  being merged (which fused residues of equal number and name). A protein chain whose id an
  earlier protein chain of the file already has (that, or an mmCIF ``auth_asym_id`` shared by two
  ``label_asym_id``) is renamed ``A2`` (then ``A3`` ...; a suffix already used as a chain id in
  the file is skipped), so chain ids are unique in the tables and exports. Waters and ligands
  after a ``TER`` are no protein chain and take no id.
* Residue numbers are the author numbers in the file: AFDB fragment files (F2, F3, ...) number
  from 1 within the fragment, not in UniProt coordinates.

Inputs that are refused (`InputError`, one errors-table row; the table with every kind and an
example message is in docs/limits.md):

* more than `max_atoms` atom records (counted on the text before gemmi builds the structure, then
  on the structure) -> ``too_many_atoms``;
* any atom of model 1 with a NaN/infinite coordinate or one more than `MAX_ABS_COORDINATE`
  (100,000 A) from the origin, or two C-alpha atoms of a chain at exactly the same position
  (placeholder coordinates, e.g. every atom at 0,0,0) -> ``bad_coordinates``. Such values would
  otherwise flow into the spectral splitter, 3Di encoding and exported fragment files;
* with ``require_plddt=True`` (what the fragment stage asks for unless ``whole_chains``), a chain
  whose pLDDT values are all 0 (no ``_ma_qa_metric_local`` and zero B-factors, or a local metric
  of zeros) -> ``no_plddt``: such a file carries no confidence values, and silently reporting
  "0 usable residues" would hide that. pLDDT values that are merely low are not an error (the
  chain gets a chains-table row with 0 fragments).

What is skipped silently: models after the first, non-protein chains (ligands, waters, nucleic
acids) in a file that has a protein chain, amino-acid residues without a CA atom, and non-ASCII
bytes (replaced by ``?``).

Entry id and accession
----------------------
Content wins over the file name. The UniProt accession comes from mmCIF
``_ma_target_ref_db_details.db_accession`` / ``_struct_ref.pdbx_db_accession`` (UniProt rows),
PDB ``DBREF ... UNP <acc>`` or a TITLE ``... PREDICTION FOR ... (<acc>)``; else from the name
(``AF-<acc>-F<n>-model_v<k>...`` or a bare accession such as ``F4MNP7.pdb.gz``).

* AlphaFold DB models (content ``_entry.id AF-<acc>-F<n>``, an AlphaFold TITLE/database record,
  an ``AF-<acc>-F<n>`` name or a bare-accession name): ``entry_id`` is the accession for fragment
  F1 and ``<acc>-F<n>`` for n > 1 (``AF-Q15772-F3`` -> ``Q15772-F3``). The fragment number comes
  from the content id, else the name, else the UniProt start of the model (AFDB fragments start
  at residue 200*(n-1)+1), else 1.
* Anything else (e.g. OpenFold3 ``hemoglobin_seed_42_sample_1_model.cif``): ``_entry.id`` when it
  is meaningful (not empty/``?``/generic such as ``structure``), else the file name without its
  structure/compression extensions. ``accession`` is the UniProt accession when the content names
  exactly one, else None.

Only the last path component of ``name`` is used (``s3://b/shard.tar#dir/AF-P1-F1...`` works).
Entry ids are sanitised to ``[A-Za-z0-9._-]`` (other characters -> ``_``).
"""

from __future__ import annotations

import math
import os
import re
import zlib
from dataclasses import dataclass, field, replace

import gemmi
import numpy as np

from rayfold.io.storage import STRUCTURE_EXTENSIONS, basename
from rayfold.model.errors import InputError

__all__ = [
    "DEFAULT_MAX_ATOMS",
    "MAX_ABS_COORDINATE",
    "Chain",
    "ParsedEntry",
    "backbone_atoms",
    "decompress_bytes",
    "detect_format",
    "parse_structure",
    "read_structure_file",
    "strip_structure_extensions",
    "write_fragment_structure",
]


@dataclass(frozen=True, eq=False)
class Chain:
    """One protein chain: C-alpha trace, sequence, author numbering and per-residue pLDDT.

    Only residues with a C-alpha atom are kept; arrays are aligned index by index.
    """

    entry_id: str
    accession: str | None
    chain_id: str
    sequence: str  # one-letter codes, 'X' for unknown residues
    residue_numbers: np.ndarray  # int32 (N,), author sequence numbers
    insertion_codes: np.ndarray  # '<U1' (N,), '' where none
    ca_coords: np.ndarray  # float32 (N, 3), Angstrom
    plddt: np.ndarray  # float32 (N,), 0-100
    plddt_source: str  # "ma_qa_metric_local", "b_factor", or "b_factor_0_1" (0-1 B-factors scaled x100)

    @property
    def n_residues(self) -> int:
        return len(self.sequence)


@dataclass(frozen=True, eq=False)
class ParsedEntry:
    """A parsed file: its protein chains plus the gemmi structure (model 1) for all-atom export."""

    entry_id: str
    accession: str | None
    source_uri: str
    chains: list[Chain]  # protein chains only, in file order
    structure: gemmi.Structure
    file_format: str = ""  # "mmcif" or "pdb"
    # Per chain (aligned with `chains`): index of the gemmi chain in structure[0] and the position
    # of every Chain residue inside that gemmi chain. Internal, used by write_fragment_structure.
    residue_map: tuple[tuple[int, np.ndarray], ...] = field(default=(), repr=False)

    def chain(self, chain_id: str) -> Chain:
        """The protein chain with this id (KeyError when absent)."""
        for c in self.chains:
            if c.chain_id == chain_id:
                return c
        raise KeyError(f"{self.entry_id}: no protein chain {chain_id!r}")


# --------------------------------------------------------------------------------------------
# bytes -> text

_GZIP_MAGIC = b"\x1f\x8b"
_OTHER_COMPRESSION = {
    b"\x28\xb5\x2f\xfd": "zstd",
    b"\xfd7zXZ": "xz",
    b"BZh": "bzip2",
    b"PK\x03\x04": "zip",
}
_CHUNK = 1 << 20
DEFAULT_MAX_ATOMS = 2_000_000  # = ReadConfig.max_atoms
# Angstrom. Predicted models sit near the origin; the largest deposited assemblies span a few
# thousand A (and PDB's fixed columns cannot hold more than 9999.999 anyway).
MAX_ABS_COORDINATE = 100_000.0
_NON_ASCII = bytes(range(128)) + b"?" * 128


def decompress_bytes(data: bytes, max_decompressed_bytes: int = 512 * 2**20) -> bytes:
    """Gunzip `data` when it starts with the gzip magic, else return it unchanged.

    Stream-decompresses so that no more than `max_decompressed_bytes` (+1) are ever produced.
    """
    if not data.startswith(_GZIP_MAGIC):
        return data
    out: list[bytes] = []
    total = 0
    view = memoryview(data)
    pos = 0
    n = len(data)
    while True:
        d = zlib.decompressobj(wbits=16 + zlib.MAX_WBITS)
        pending: bytes | memoryview = b""
        while not d.eof:
            if not pending:
                if pos >= n:
                    raise InputError(
                        "truncated_gzip",
                        f"gzip stream ends early after {total} decompressed bytes: the file is cut short "
                        "(an interrupted download or copy?)",
                    )
                pending = view[pos : pos + _CHUNK]
                pos += len(pending)
            try:
                chunk = d.decompress(pending, max_decompressed_bytes - total + 1)
            except zlib.error as exc:
                raise InputError("corrupt_gzip", f"gzip data is corrupt: {exc}") from None
            pending = d.unconsumed_tail
            total += len(chunk)
            if total > max_decompressed_bytes:
                raise InputError(
                    "decompressed_too_large",
                    f"decompresses to more than {max_decompressed_bytes} bytes "
                    "(limit: ReadConfig.max_decompressed_bytes; a gzip bomb?)",
                )
            if chunk:
                out.append(chunk)
        rest = bytes(d.unused_data) + bytes(view[pos:]) if d.unused_data else bytes(view[pos:])
        rest = rest.lstrip(b"\x00")  # zero padding after a member, as gzip(1) tolerates
        if not rest.startswith(_GZIP_MAGIC):
            break  # end of data (trailing garbage is ignored, like gzip -d does)
        view, pos, n = memoryview(rest), 0, len(rest)
    return b"".join(out)


_CIF_EXT = (".cif", ".mmcif")
_PDB_EXT = (".pdb", ".ent")
_STRIP_EXT = (".gz", *STRUCTURE_EXTENSIONS)
_CIF_SNIFF = re.compile(rb"^\s*data_", re.MULTILINE)
_PDB_SNIFF = re.compile(rb"^(?:ATOM  |HETATM|HEADER|MODEL |CRYST1)", re.MULTILINE)


def strip_structure_extensions(name: str) -> str:
    """File name without directories and without trailing .gz/.cif/.mmcif/.pdb/.ent."""
    base = basename(name)
    changed = True
    while changed:
        changed = False
        low = base.lower()
        for ext in _STRIP_EXT:
            if low.endswith(ext) and len(base) > len(ext):
                base = base[: -len(ext)]
                changed = True
                break
    return base


def detect_format(text: bytes, name: str) -> str:
    """'mmcif' or 'pdb' from the name, falling back on (or corrected by) the content."""
    low = basename(name).lower()
    low = low.removesuffix(".gz")
    head = text[:65536]
    by_name = "mmcif" if low.endswith(_CIF_EXT) else "pdb" if low.endswith(_PDB_EXT) else None
    starts_cif = head.lstrip()[:5] == b"data_"
    if by_name == "pdb" and starts_cif:
        return "mmcif"
    if by_name == "mmcif" and not _CIF_SNIFF.search(head) and _PDB_SNIFF.search(head):
        return "pdb"
    if by_name:
        return by_name
    if starts_cif or _CIF_SNIFF.search(head):
        return "mmcif"
    if _PDB_SNIFF.search(head):
        return "pdb"
    raise InputError(
        "unknown_format",
        f"{basename(name)!r}: neither mmCIF nor PDB by name or content "
        "(rayfold reads .cif, .mmcif, .pdb and .ent files, each optionally .gz)",
    )


# --------------------------------------------------------------------------------------------
# identifiers

_ACC = r"(?:[OPQ][0-9][A-Z0-9]{3}[0-9]|[A-NR-Z][0-9](?:[A-Z][A-Z0-9]{2}[0-9]){1,2})(?:-[0-9]+)?"
_ACC_RE = re.compile(rf"^{_ACC}$")
_AF_ID_RE = re.compile(rf"AF-({_ACC})-F([0-9]+)")
_NAME_ACC_RE = re.compile(rf"^({_ACC})(?:-F([0-9]+))?$")
_TITLE_ACC_RE = re.compile(r"\(([A-Z0-9-]+)\)\s*$")
_SANITIZE_RE = re.compile(r"[^A-Za-z0-9._-]")
_GENERIC_IDS = {"", "?", ".", "structure", "model", "unnamed", "unknown", "xxxx", "none", "string"}
_UNIPROT_DB = {"UNP", "UNIPROT", "UNIPROTKB", "SWISS-PROT", "TREMBL"}
_AFDB_FRAGMENT_STEP = 200


def _sanitize(s: str) -> str:
    return _SANITIZE_RE.sub("_", s.strip())


@dataclass
class _Ids:
    accessions: list[str] = field(default_factory=list)  # UniProt accessions named in the content
    af_id: tuple[str, int] | None = None  # (accession, fragment) from an AF-...-F<n> id
    alphafold: bool = False  # content says AlphaFold DB
    entry_id: str | None = None  # content entry id (mmCIF _entry.id)
    db_begin: int | None = None  # UniProt start of the modelled sequence


def _cif_ids(block: gemmi.cif.Block) -> _Ids:
    ids = _Ids()
    entry = block.find_value("_entry.id")
    if entry is not None:
        ids.entry_id = gemmi.cif.as_string(entry)
    for tag in ("_entry.id", "_database_2.database_code"):
        for v in block.find_values(tag):
            m = _AF_ID_RE.search(gemmi.cif.as_string(v))
            if m and ids.af_id is None:
                ids.af_id = (m.group(1), int(m.group(2)))
    if any(gemmi.cif.as_string(v) == "AlphaFoldDB" for v in block.find_values("_database_2.database_id")):
        ids.alphafold = True
    for prefix, acc_tag, db_tag, begin_tag in (
        ("_ma_target_ref_db_details.", "db_accession", "db_name", "seq_db_align_begin"),
        ("_struct_ref.", "pdbx_db_accession", "db_name", "pdbx_align_begin"),
    ):
        tab = block.find(prefix, [acc_tag, "?" + db_tag, "?" + begin_tag])
        for row in tab:
            acc = gemmi.cif.as_string(row[0])
            db = gemmi.cif.as_string(row[1]).upper() if row.has(1) else "UNP"
            if db in _UNIPROT_DB and _ACC_RE.match(acc):
                if acc not in ids.accessions:
                    ids.accessions.append(acc)
                if ids.db_begin is None and row.has(2):
                    try:
                        ids.db_begin = int(gemmi.cif.as_string(row[2]))
                    except ValueError:
                        pass
    return ids


_DBREF_RE = re.compile(rb"^DBREF .*$", re.MULTILINE)


def _pdb_ids(text: bytes, st: gemmi.Structure) -> _Ids:
    ids = _Ids()
    cut = text.find(b"\nATOM")
    head = text[: cut if cut >= 0 else 200_000]
    for m in _DBREF_RE.finditer(head):
        line = m.group(0).decode("ascii", "replace")
        db = line[26:32].strip().upper()
        acc = line[33:41].strip()
        if db in _UNIPROT_DB and _ACC_RE.match(acc):
            if acc not in ids.accessions:
                ids.accessions.append(acc)
            if ids.db_begin is None:
                try:
                    ids.db_begin = int(line[55:60])
                except ValueError:
                    pass
    title = st.info["_struct.title"] if "_struct.title" in st.info else ""  # noqa: SIM401 - gemmi InfoMap has no .get
    if "ALPHAFOLD" in title.upper():
        ids.alphafold = True
        title_match = _TITLE_ACC_RE.search(title)
        if title_match and _ACC_RE.match(title_match.group(1)) and title_match.group(1) not in ids.accessions:
            ids.accessions.append(title_match.group(1))
    if b"ALPHAFOLD" in head[:20000].upper():
        ids.alphafold = True
    return ids


def _resolve_ids(ids: _Ids, name: str) -> tuple[str, str | None]:
    """(entry_id, accession) following the rule in the module docstring."""
    stem = strip_structure_extensions(name)
    name_af = _AF_ID_RE.match(stem)
    name_acc = _NAME_ACC_RE.match(stem)
    content_acc = ids.accessions[0] if len(ids.accessions) == 1 else None
    if ids.af_id is not None and content_acc is None and not ids.accessions:
        content_acc = ids.af_id[0]
    is_afdb = bool(ids.af_id or ids.alphafold or name_af or name_acc)
    if is_afdb:
        acc = content_acc or (ids.af_id[0] if ids.af_id else None) or (name_af.group(1) if name_af else None) or (
            name_acc.group(1) if name_acc else None
        )
        if acc is not None:
            if ids.af_id is not None and ids.af_id[0] == acc:
                frag = ids.af_id[1]
            elif name_af is not None and name_af.group(1) == acc:
                frag = int(name_af.group(2))
            elif name_acc is not None and name_acc.group(1) == acc and name_acc.group(2):
                frag = int(name_acc.group(2))
            elif ids.db_begin is not None and ids.db_begin > 1 and (ids.db_begin - 1) % _AFDB_FRAGMENT_STEP == 0:
                frag = (ids.db_begin - 1) // _AFDB_FRAGMENT_STEP + 1
            else:
                frag = 1
            entry = acc if frag == 1 else f"{acc}-F{frag}"
            return _sanitize(entry), acc
    entry = ids.entry_id if ids.entry_id and ids.entry_id.strip().lower() not in _GENERIC_IDS else stem
    entry = _sanitize(entry) or "unnamed"
    return entry, content_acc


# --------------------------------------------------------------------------------------------
# residues


_RESIDUE_KINDS: dict[str, tuple[bool, str]] = {}


def _residue_kind(resname: str) -> tuple[bool, str]:
    """(is amino acid, one-letter code) for a residue name, memoised in _RESIDUE_KINDS."""
    info = gemmi.find_tabulated_residue(resname)
    if info is None or not info.is_amino_acid():
        kind = (False, "")
    else:
        code = info.one_letter_code.upper()
        kind = (True, code if code.strip() and code.isalpha() else "X")
    if len(_RESIDUE_KINDS) < 10000:
        _RESIDUE_KINDS[resname] = kind
    return kind


def _local_plddt(block: gemmi.cif.Block, model_num: int) -> dict[str, tuple[np.ndarray, np.ndarray]] | None:
    """label_asym_id -> (sorted label_seq_id, pLDDT) from _ma_qa_metric_local, or None."""
    tab = block.find(
        "_ma_qa_metric_local.",
        ["label_asym_id", "label_seq_id", "metric_value", "?metric_id", "?model_id"],
    )
    if len(tab) == 0:
        return None
    # which metric ids are local pLDDT (and on which scale)
    scale: dict[str, float] | None = None
    mt = block.find("_ma_qa_metric.", ["id", "?mode", "?type", "?name"])
    if len(mt):
        scale = {}
        for row in mt:
            mode = gemmi.cif.as_string(row[1]).lower() if row.has(1) else "local"
            typ = gemmi.cif.as_string(row[2]) if row.has(2) else ""
            nm = gemmi.cif.as_string(row[3]) if row.has(3) else ""
            if mode != "local" or "plddt" not in (typ + " " + nm).lower():
                continue
            scale[gemmi.cif.as_string(row[0])] = 100.0 if "[0,1]" in typ.replace(" ", "") else 1.0
        if not scale:
            return None
    asym = np.array(list(tab.column(0)), dtype=object)
    try:
        seq = np.array(list(tab.column(1)), dtype=np.int64)
        val = np.array(list(tab.column(2)), dtype=np.float64)
    except ValueError:
        return None
    keep = np.ones(len(asym), dtype=bool)
    if scale is not None and tab.has_column(3):
        mid = np.array(list(tab.column(3)), dtype=object)
        factors = np.array([scale.get(m, np.nan) for m in mid], dtype=np.float64)
        keep &= np.isfinite(factors)
        val = val * np.where(np.isfinite(factors), factors, 1.0)
    if tab.has_column(4):
        mod = np.array(list(tab.column(4)), dtype=object)
        keep &= mod == str(model_num)
        if not keep.any():  # model numbering differs from _atom_site: take the first model listed
            keep = mod == mod[0]
    out: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    for a in dict.fromkeys(asym[keep]):
        sel = keep & (asym == a)
        s, v = seq[sel], val[sel]
        order = np.argsort(s, kind="stable")
        s, v = s[order], v[order]
        first = np.ones(len(s), dtype=bool)
        first[1:] = s[1:] != s[:-1]
        out[a] = (s[first], v[first])
    return out


def _lookup_local(
    table: dict[str, tuple[np.ndarray, np.ndarray]], subchains: list[str], label_seq: np.ndarray
) -> np.ndarray | None:
    """pLDDT for each residue from the local-metric table, or None when any residue is missing."""
    out = np.empty(len(label_seq), dtype=np.float64)
    sub = np.array(subchains, dtype=object)
    for a in dict.fromkeys(subchains):
        if a not in table:
            return None
        sel = sub == a
        s, v = table[a]
        want = label_seq[sel]
        idx = np.searchsorted(s, want)
        idx = np.minimum(idx, len(s) - 1)
        if len(s) == 0 or not np.array_equal(s[idx], want):
            return None
        out[sel] = v[idx]
    return out


# --------------------------------------------------------------------------------------------
# parsing


def _read(text: bytes, fmt: str) -> tuple[gemmi.Structure, gemmi.cif.Block | None]:
    try:
        if fmt == "mmcif":
            doc = gemmi.cif.read_string(text)
            if len(doc) == 0:
                raise InputError("parse_error", "mmCIF file has no data block")
            block = doc.sole_block() if len(doc) == 1 else doc[0]
            st = gemmi.make_structure_from_block(block)
            return st, block
        st = gemmi.read_pdb_string(text, split_chain_on_ter=True)  # TER ends a chain, even if its id comes back
        return st, None
    except InputError:
        raise
    except (RuntimeError, ValueError, UnicodeDecodeError, IndexError) as exc:
        msg = str(exc).splitlines()[0][:300] if str(exc) else type(exc).__name__
        raise InputError("parse_error", f"{fmt}: {msg}") from None


def _count_atom_records(text: bytes) -> int:
    """Lines starting with ATOM/HETATM: PDB records, and mmCIF _atom_site rows (every common writer
    puts group_PDB first; a file that does not is counted again on the parsed structure)."""
    return text.count(b"\nATOM") + text.count(b"\nHETATM") + (1 if text.startswith((b"ATOM", b"HETATM")) else 0)


def _atom_label(ch: gemmi.Chain, res: gemmi.Residue, atom: gemmi.Atom) -> str:
    icode = res.seqid.icode.strip()
    return f"chain {ch.name} residue {res.name} {res.seqid.num}{icode} atom {atom.name}"


def _check_coordinates(st: gemmi.Structure) -> None:
    """bad_coordinates for a non-finite or absurdly large coordinate of any atom of model 1.

    Fast path in C++: the centre of mass is NaN/inf when any coordinate is (NaN is ignored by the
    bounding box), the bounding box catches finite absurd values. Only when one of them looks
    wrong are the atoms walked in Python, to name the atom (or to clear a model whose total mass is
    0, which also gives a NaN centre).
    """
    model = st[0]
    com = model.calculate_center_of_mass()
    box = st.calculate_box()
    lo, hi = box.minimum, box.maximum
    if all(math.isfinite(v) for v in (com.x, com.y, com.z)) and max(
        -lo.x, -lo.y, -lo.z, hi.x, hi.y, hi.z
    ) <= MAX_ABS_COORDINATE:
        return
    for ch in model:
        for res in ch:
            for atom in res:
                p = atom.pos
                for axis, v in zip("xyz", (p.x, p.y, p.z)):
                    if not math.isfinite(v):
                        raise InputError(
                            "bad_coordinates", f"{_atom_label(ch, res, atom)}: {axis} = {v} (not a finite number)"
                        )
                    if abs(v) > MAX_ABS_COORDINATE:
                        raise InputError(
                            "bad_coordinates",
                            f"{_atom_label(ch, res, atom)}: {axis} = {v:g} A, more than {MAX_ABS_COORDINATE:g} A "
                            "from the origin",
                        )


def _check_distinct_ca(chain_name: str, coords: np.ndarray, nums: tuple, icodes: tuple) -> None:
    """bad_coordinates when two C-alpha atoms of one chain sit at exactly the same position."""
    if len(coords) < 2:
        return
    _, first, inverse, counts = np.unique(coords, axis=0, return_index=True, return_inverse=True, return_counts=True)
    if len(counts) == len(coords):
        return
    inverse = inverse.reshape(-1)
    dup = int(np.flatnonzero(counts[inverse] > 1)[0])
    a = int(first[inverse[dup]])
    b = int(np.flatnonzero(inverse == inverse[dup])[1])
    x, y, z = (float(v) for v in coords[a])
    raise InputError(
        "bad_coordinates",
        f"chain {chain_name}: {len(coords) - len(counts)} of {len(coords)} C-alpha atoms repeat another's position "
        f"(e.g. residues {nums[a]}{icodes[a].strip()} and {nums[b]}{icodes[b].strip()} both at "
        f"({x:.3f}, {y:.3f}, {z:.3f})): placeholder coordinates, not a structure",
    )


def _unique_chain_id(name: str, used: set[str], taken: set[str]) -> str:
    """`name`, or `name` + 2, 3 ... when an earlier protein chain already has it (added to `used`).

    Two chains under one id are two molecules (see the module docstring); one id for both would
    make the tables ambiguous and send exports and 3Di to the wrong chain. `taken` holds every id
    of the file, so a renamed chain never takes another chain's real id.
    """
    new, k = name, 2
    while new in used or (new != name and new in taken):
        new, k = f"{name}{k}", k + 1
    used.add(new)
    return new


def _plddt_to_percent(chains: list[Chain]) -> list[Chain]:
    """The chains with B-factor pLDDT written on 0-1 (ESMFold and others) scaled to 0-100.

    The scale belongs to the program that wrote the file, so it is decided over all chains: every
    B-factor pLDDT <= 1, and not all 0 (that is ``no_plddt``, or no pLDDT with --whole-chains).
    """
    from_b = [c.plddt for c in chains if c.plddt_source == "b_factor"]
    if not from_b or max(float(p.max()) for p in from_b) > 1.0 or not any(p.any() for p in from_b):
        return chains
    return [
        replace(c, plddt=c.plddt * np.float32(100), plddt_source="b_factor_0_1") if c.plddt_source == "b_factor" else c
        for c in chains
    ]


def parse_structure(
    data: bytes,
    name: str,
    *,
    source_uri: str | None = None,
    max_decompressed_bytes: int = 512 * 2**20,
    max_atoms: int | None = DEFAULT_MAX_ATOMS,
    require_plddt: bool = False,
) -> ParsedEntry:
    """Parse one mmCIF/PDB file (optionally gzipped) into its protein chains.

    `name` is the file name or URI (used for the format and the id fallbacks); raises
    `InputError` for every unusable input. `max_atoms` caps the atom records (None: no cap);
    `require_plddt` refuses chains whose pLDDT values are all 0 (``no_plddt``). See the module
    docstring for the rules.
    """
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise TypeError("data must be bytes")
    data = bytes(data)
    if not data or data.isspace():
        raise InputError("empty_file", "the file is empty (no bytes, or only whitespace)")
    for magic, what in _OTHER_COMPRESSION.items():
        if data.startswith(magic):
            raise InputError("unsupported_compression", f"{what} data: only gzip is supported")
    was_gz = data.startswith(_GZIP_MAGIC)
    text = decompress_bytes(data, max_decompressed_bytes)
    if was_gz and (not text or text.isspace()):
        raise InputError("empty_file", "gzip member decompresses to nothing")
    if not was_gz and len(text) > max_decompressed_bytes:
        raise InputError(
            "file_too_large", f"{len(text)} bytes > limit {max_decompressed_bytes} (ReadConfig.max_decompressed_bytes)"
        )
    if b"\x00" in text[:4096]:
        raise InputError("unknown_format", "binary content (NUL bytes)")
    if not text.isascii():
        text = text.translate(_NON_ASCII)
    fmt = detect_format(text, name)
    if max_atoms is not None and _count_atom_records(text) > max_atoms:
        raise InputError("too_many_atoms", f"more than {max_atoms} atom records (limit: ReadConfig.max_atoms)")
    st, block = _read(text, fmt)

    if len(st) == 0:
        what = "no _atom_site records" if fmt == "mmcif" else "no ATOM/HETATM records"
        raise InputError("no_atoms", f"{fmt}: {what} (no coordinates)")
    if max_atoms is not None:
        n_atoms = sum(m.count_atom_sites() for m in st)
        if n_atoms > max_atoms:
            raise InputError("too_many_atoms", f"{n_atoms} atoms > limit {max_atoms} (ReadConfig.max_atoms)")
    if len(st) > 1:
        del st[1:]
    model = st[0]
    _check_coordinates(st)

    ids = _cif_ids(block) if block is not None else _pdb_ids(text, st)
    entry_id, accession = _resolve_ids(ids, name)
    local = _local_plddt(block, model.num) if block is not None else None

    chains: list[Chain] = []
    residue_map: list[tuple[int, np.ndarray]] = []
    all_names = {ch.name for ch in model}
    chain_ids: set[str] = set()
    saw_amino_acid = False
    kinds = _RESIDUE_KINDS
    with_labels = local is not None
    for ci, ch in enumerate(model):
        rows: list[tuple] = []
        prev_seqid: tuple[int | None, str] | None = None
        for ri, res in enumerate(ch):
            kind = kinds.get(res.name)
            if kind is None:
                kind = _residue_kind(res.name)
            if not kind[0]:
                continue
            saw_amino_acid = True
            ca = res.find_atom("CA", "*")
            if ca is None:
                continue
            sid = res.seqid
            num, icode = sid.num, sid.icode
            if prev_seqid == (num, icode) and ca.has_altloc():
                continue  # microheterogeneity: a second residue at the same position, keep the first
            prev_seqid = (num, icode)
            if with_labels:
                ls = res.label_seq
                label_seq = -(10**9) if ls is None else ls
                rows.append((ri, kind[1], *ca.pos.tolist(), ca.b_iso, num, icode, res.subchain, label_seq))
            else:
                rows.append((ri, kind[1], *ca.pos.tolist(), ca.b_iso, num, icode))
        if not rows:
            continue
        ch.name = _unique_chain_id(ch.name, chain_ids, all_names)
        cols = list(zip(*rows))
        pos = cols[0]
        letters = cols[1]
        bfac = cols[5]
        nums = cols[6]
        icodes = cols[7]
        if with_labels:
            subs, lseq = list(cols[8]), cols[9]
        coords = np.ascontiguousarray(np.array(cols[2:5], dtype=np.float32).T)
        if not np.isfinite(coords).all():  # _check_coordinates saw every atom; kept as a guard
            raise InputError("bad_coordinates", f"chain {ch.name}: non-finite C-alpha coordinates")
        _check_distinct_ca(ch.name, coords, nums, icodes)
        plddt = None
        source = "b_factor"
        if with_labels:
            assert local is not None  # with_labels is local is not None
            plddt = _lookup_local(local, subs, np.array(lseq, dtype=np.int64))
            if plddt is not None:
                source = "ma_qa_metric_local"
        if plddt is None:
            plddt = np.array(bfac, dtype=np.float64)
        plddt32 = plddt.astype(np.float32)
        if not np.isfinite(plddt32).all():
            raise InputError("bad_plddt", f"chain {ch.name}: non-finite pLDDT values")
        if require_plddt and not plddt32.any():
            where = "_ma_qa_metric_local" if source == "ma_qa_metric_local" else "C-alpha B-factors"
            raise InputError(
                "no_plddt",
                f"chain {ch.name}: every pLDDT value ({where}) is 0: the file carries no confidence values "
                "(not a predicted model, or written without pLDDT); --whole-chains keeps chains without pLDDT",
            )
        if all(c == " " for c in icodes):
            icode_arr = np.full(len(icodes), "", dtype="<U1")
        else:
            icode_arr = np.array([c.strip() for c in icodes], dtype="<U1")
        chains.append(
            Chain(
                entry_id=entry_id,
                accession=accession,
                chain_id=ch.name,
                sequence="".join(letters),
                residue_numbers=np.array(nums, dtype=np.int32),
                insertion_codes=icode_arr,
                ca_coords=coords,
                plddt=plddt32,
                plddt_source=source,
            )
        )
        residue_map.append((ci, np.array(pos, dtype=np.int64)))

    if not chains:
        if not any(len(res) for ch in model for res in ch):
            raise InputError("no_atoms", f"{fmt}: no atom records in model 1")
        if saw_amino_acid:
            raise InputError("no_ca_atoms", "amino-acid residues present but none has a CA (C-alpha) atom")
        raise InputError("no_protein_chain", "no amino-acid chain (only ligands/waters/nucleic acids)")
    return ParsedEntry(
        entry_id=entry_id,
        accession=accession,
        source_uri=source_uri if source_uri is not None else name,
        chains=_plddt_to_percent(chains),
        structure=st,
        file_format=fmt,
        residue_map=tuple(residue_map),
    )


def read_structure_file(
    path: str | os.PathLike[str],
    *,
    max_decompressed_bytes: int = 512 * 2**20,
    max_atoms: int | None = DEFAULT_MAX_ATOMS,
    require_plddt: bool = False,
) -> ParsedEntry:
    """Parse a local file (convenience for tests and benchmarks)."""
    p = os.fspath(path)
    try:
        with open(p, "rb") as fh:
            data = fh.read()
    except FileNotFoundError:
        raise InputError("not_found", f"{p}: no such file") from None
    except OSError as exc:
        raise InputError("read_error", f"{p}: {exc.strerror or exc}") from None
    return parse_structure(
        data, p, source_uri=os.path.abspath(p), max_decompressed_bytes=max_decompressed_bytes,
        max_atoms=max_atoms, require_plddt=require_plddt,
    )


# --------------------------------------------------------------------------------------------
# export


def _chain_residues(entry: ParsedEntry, chain_id: str, residue_index: np.ndarray) -> tuple[int, np.ndarray]:
    """Position of the chain in `entry.chains` and the validated residue indices (order kept)."""
    for pos, c in enumerate(entry.chains):
        if c.chain_id == chain_id:
            k = pos
            break
    else:
        raise KeyError(f"{entry.entry_id}: no protein chain {chain_id!r}")
    idx = np.asarray(residue_index)
    if idx.ndim != 1 or (idx.size and not np.issubdtype(idx.dtype, np.integer)):
        raise ValueError("residue_index must be a 1-D integer array")
    if idx.size and (idx.min() < 0 or idx.max() >= c.n_residues):
        raise IndexError(f"residue_index out of range for chain {chain_id!r} ({c.n_residues} residues)")
    return k, idx


def write_fragment_structure(
    entry: ParsedEntry, chain_id: str, residue_index: np.ndarray, fmt: str = "pdb"
) -> bytes:
    """All atoms of the chosen residues of one chain as a PDB (or mmCIF) file.

    `residue_index` are indices into that `Chain`'s arrays; they are sorted and de-duplicated so
    residues come out in chain order. PDB output names the chain 'A' when its id is longer than
    one character (PDB has one column for it).
    """
    if fmt not in ("pdb", "mmcif", "cif"):
        raise ValueError(f"fmt must be 'pdb' or 'mmcif', not {fmt!r}")
    k, idx = _chain_residues(entry, chain_id, residue_index)
    idx = np.unique(idx)
    if idx.size == 0:
        raise ValueError("residue_index is empty")
    gi, positions = entry.residue_map[k]
    src = entry.structure[0][gi]

    out_name = chain_id if (fmt != "pdb" or len(chain_id) <= 1) else "A"
    new_chain = gemmi.Chain(out_name)
    for p in positions[idx]:
        new_chain.add_residue(src[int(p)])
    st = gemmi.Structure()
    st.name = entry.entry_id
    model = gemmi.Model(1)
    model.add_chain(new_chain)
    st.add_model(model)
    st.remove_alternative_conformations()
    st.setup_entities()
    if fmt == "pdb":
        opts = gemmi.PdbWriteOptions(minimal=True, cryst1_record=False)
        return st.make_pdb_string(opts).encode("ascii")
    doc = st.make_mmcif_document()
    return doc.as_string().encode("ascii")


def backbone_atoms(
    entry: ParsedEntry, chain_id: str, residue_index: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """N, CA, C and CB coordinates of the chosen residues of one chain (for 3Di encoding).

    `residue_index` are indices into that `Chain`'s arrays, kept in the order given (not sorted,
    not de-duplicated). Returns four float32 (k, 3) arrays; a missing atom (no CB in glycine, a
    truncated backbone) is NaN. The first conformer is used (first altloc), as for the chain's
    C-alpha trace and for `write_fragment_structure`.
    """
    k, idx = _chain_residues(entry, chain_id, residue_index)
    gi, positions = entry.residue_map[k]
    src = entry.structure[0][gi]
    # one Python list, one array at the end: writing each atom into an array took half the time
    xyz: list[list[float]] = []
    missing = [math.nan] * 3
    for p in positions[idx].tolist():
        res = src[p]
        for name in ("N", "CA", "C", "CB"):
            atom = res.find_atom(name, "*")
            xyz.append(atom.pos.tolist() if atom is not None else missing)
    out = np.array(xyz, dtype=np.float32).reshape(idx.size, 4, 3).transpose(1, 0, 2).copy()
    return out[0], out[1], out[2], out[3]
