"""Rebuild the bundled AFDB examples (file choice, manifest.tsv) from the shared data folder.

Usage: python examples/afdb/build_examples.py [/path/to/shared/data]
The choice is deterministic (manifest order + fixed rules), so reruns give the same 30 files.
"""

from __future__ import annotations

import csv
import shutil
import sys
from pathlib import Path

import numpy as np

from rayfold.io.structure import read_structure_file

HERE = Path(__file__).resolve().parent
MYCO = "afdb_mycoplasma_mycoides_pdb"
PF = "afdb_pf04034_knotted_mmcif_v3"
TED = "domain_boundaries/ted_consensus_example"


def _rows(manifest: Path) -> list[dict[str, str]]:
    with open(manifest, newline="") as fh:
        return list(csv.DictReader(fh, delimiter="\t"))


def _spread(items: list, k: int) -> list:
    """k items at evenly spaced positions (first and last included)."""
    if len(items) <= k:
        return list(items)
    idx = np.round(np.linspace(0, len(items) - 1, k)).astype(int)
    return [items[i] for i in idx]


def choose(data: Path) -> list[tuple[str, str]]:
    """(source folder relative to data/, file name) for every example file."""
    myco = _rows(data / MYCO / "manifest.tsv")
    n = lambda r: int(r["n_residues"])  # noqa: E731
    tail = lambda r: max(int(r["nterm_tail_lt65"]), int(r["cterm_tail_lt65"]))  # noqa: E731
    # 2 models > 800 residues with a long low-pLDDT tail, smallest files first
    long_ = sorted((r for r in myco if n(r) > 800 and tail(r) >= 20), key=lambda r: int(r["bytes_uncompressed"]))[:2]
    taken = {r["file"] for r in long_}
    # 5 partly folded models with a terminal low-pLDDT tail of >= 40 residues
    tails = sorted(
        (r for r in myco if n(r) <= 800 and tail(r) >= 40 and int(r["n_res_plddt_lt65"]) < n(r)),
        key=lambda r: r["file"],
    )
    tails = _spread(tails, 5)
    taken |= {r["file"] for r in tails}
    # 12 more spread over the size range
    rest = sorted((r for r in myco if n(r) <= 800 and r["file"] not in taken), key=lambda r: (n(r), r["file"]))
    spread = _spread(rest, 12)
    picks = [(MYCO + "/structures", r["file"]) for r in sorted(long_ + tails + spread, key=lambda r: r["file"])]
    pf = sorted((r for r in _rows(data / PF / "manifest.tsv") if n(r) < 900), key=lambda r: r["file"])
    picks += [(PF + "/structures", r["file"]) for r in _spread(pf, 6)]
    picks += [(TED + "/structures", p.name) for p in sorted((data / TED / "structures").glob("*.pdb.gz"))]
    return picks


SOURCES = {
    MYCO + "/structures": (
        "a-ziaj/High-throughput_structure-based_phylogenies",
        "7f673f653b27ac7fe3b4f358375689516edbcdd6",
        "m_myocoides_proteome_af/{acc}.pdb",
        "no LICENSE file in the repository; data: AlphaFold DB, CC BY 4.0",
    ),
    PF + "/structures": (
        "NomadThisTime/PROT_DATA",
        "b6c364554e6ceb25270dc54e7c9bd47ab5d41ed8",
        "cif/{stem}.cif",
        "no LICENSE file in the repository; data: AlphaFold DB, CC BY 4.0",
    ),
    TED + "/structures": (
        "psipred/ted-tools",
        "6041723c28f1782c2cbb1a4edb9b3523c0a1739c",
        "ted_consensus_1.0/example/{stem}.pdb",
        "repository MIT; data: AlphaFold DB, CC BY 4.0",
    ),
}

PROVENANCE_HEAD = """# Provenance: examples/afdb

30 AlphaFold DB models bundled with rayfold as a small, real example input (about 2 MB).
Every file is a byte-for-byte copy of a file from the project's shared test-data collection,
which itself is the `gzip -n -9` of the file in the source repository (`zcat` gives back the
repository blob). Nothing was edited. `build_examples.py` (this folder) re-creates the choice
and `manifest.tsv` from the shared data; the choice is deterministic:

- 19 AFDB v4 PDB models of the *Mycoplasma mycoides* subsp. capri LC str. 95010 proteome
  (`afdb_mycoplasma_mycoides_pdb`; files named by bare UniProt accession): the 2 smallest files
  among models > 800 residues with a terminal low-pLDDT (< 65) tail of >= 20 residues; 5 partly
  folded models with a terminal low-pLDDT tail of >= 40 residues (evenly spaced in accession
  order); 12 more evenly spaced over the size range (69-790 residues).
- 6 AFDB v3 mmCIF models of Pfam family PF04034 (trefoil-knotted core, homologous: one expected
  cluster), evenly spaced in name order among members < 900 residues
  (`afdb_pf04034_knotted_mmcif_v3`).
- The 5 AFDB v4 PDB models of the TED consensus worked example (`ted_consensus_example`),
  for which Chainsaw/Merizo/UniDoc choppings and the TED consensus exist in the shared data.

`manifest.tsv` (computed with `rayfold.io.structure.parse_structure`): file, format, n_residues
(protein residues with a C-alpha), mean_plddt (mean over residues), plddt_source
(`ma_qa_metric_local` for mmCIF, `b_factor` = C-alpha B-factor for PDB), source_folder.

## License and attribution

AlphaFold DB models are (c) DeepMind Technologies Limited / EMBL-EBI and are available under the
Creative Commons Attribution 4.0 International licence (CC BY 4.0,
https://creativecommons.org/licenses/by/4.0/). The files keep their original AlphaFold headers
and disclaimer ("ALPHAFOLD DATA, COPYRIGHT (2021) DEEPMIND TECHNOLOGIES LIMITED ... PROVIDED
AS-IS ... UNDER CC-BY 4.0 LICENCE"). When using them, cite:

- Jumper, J. et al. Highly accurate protein structure prediction with AlphaFold.
  *Nature* 596, 583-589 (2021). doi:10.1038/s41586-021-03819-2
- Varadi, M. et al. AlphaFold Protein Structure Database: massively expanding the structural
  coverage of protein-sequence space with high-accuracy models. *Nucleic Acids Research* 50,
  D439-D444 (2022). doi:10.1093/nar/gkab1061
- Varadi, M. et al. AlphaFold Protein Structure Database in 2024: providing structure coverage
  for over 214 million protein sequences. *Nucleic Acids Research* 52, D368-D375 (2024).
  doi:10.1093/nar/gkad1011

The repositories the files were collected from (commit in the table) are not their authors;
their own licences (where any) cover their code, not these AlphaFold DB data.

## Files

| file | shared-data folder | source repository @ commit | path in repository | license |
|---|---|---|---|---|
"""


def write_provenance(picks: list[tuple[str, str]]) -> None:
    rows = []
    for folder, name in picks:
        repo, commit, pattern, lic = SOURCES[folder]
        stem = name[:-3].rsplit(".", 1)[0]
        path = pattern.format(acc=stem, stem=stem)
        rows.append(f"| `{name}` | `{folder}` | `{repo}` @ `{commit}` | `{path}` | {lic} |")
    (HERE / "PROVENANCE.md").write_text(PROVENANCE_HEAD + "\n".join(rows) + "\n")


def main(data: Path) -> None:
    picks = choose(data)
    for old in HERE.glob("*.gz"):
        old.unlink()
    lines = ["file\tformat\tn_residues\tmean_plddt\tplddt_source\tsource_folder"]
    for folder, name in picks:
        dst = HERE / name
        shutil.copyfile(data / folder / name, dst)
        e = read_structure_file(dst)
        plddt = np.concatenate([c.plddt for c in e.chains]).astype(np.float64)
        fmt = e.file_format
        lines.append(
            f"{name}\t{fmt}\t{sum(c.n_residues for c in e.chains)}\t{plddt.mean():.2f}\t"
            f"{e.chains[0].plddt_source}\t{folder}"
        )
    (HERE / "manifest.tsv").write_text("\n".join(lines) + "\n")
    write_provenance(picks)
    total = sum((HERE / name).stat().st_size for _, name in picks)
    print(f"{len(picks)} files, {total / 1e6:.2f} MB")


if __name__ == "__main__":
    main(Path(sys.argv[1]) if len(sys.argv) > 1 else Path("/work/shared/data"))
