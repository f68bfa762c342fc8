"""The sparse eigen-solver must give exactly the dense reference's cuts on every shared model."""

from __future__ import annotations

from pathlib import Path

import pytest

from conftest import SHARED_DATA
from rayfold.config import FragmentConfig
from rayfold.fragment.chain import fragment_chain
from rayfold.io.structure import read_structure_file
from rayfold.model.errors import InputError


def shared_models() -> list[Path]:
    if not SHARED_DATA.is_dir():
        return []
    files = [p for pattern in ("*.pdb.gz", "*.cif.gz") for p in SHARED_DATA.rglob(pattern)]
    return sorted(p for p in files if "merizo_output" not in p.parts)


MODELS = shared_models()


def test_the_shared_models_are_there():
    assert len(MODELS) >= 400, f"expected the shared structure files under {SHARED_DATA}"


@pytest.mark.parametrize("path", MODELS, ids=lambda p: str(p.relative_to(SHARED_DATA)))
def test_sparse_and_dense_give_identical_cuts(path: Path):
    try:
        entry = read_structure_file(path)
    except InputError as exc:  # e.g. nucleic-acid-only files: nothing to cut
        pytest.skip(str(exc))
    sparse_config = FragmentConfig(solver="sparse")
    dense_config = FragmentConfig(solver="dense")
    for chain in entry.chains:
        sparse = fragment_chain(chain, sparse_config)
        dense = fragment_chain(chain, dense_config)
        assert [f.residue_index.tolist() for f in sparse.fragments] == [f.residue_index.tolist() for f in dense.fragments]
        assert sparse.linker_index.tolist() == dense.linker_index.tolist()
