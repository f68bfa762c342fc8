"""The fragmenting job on a real local Ray, against local folders and a real (moto) S3 server."""

from __future__ import annotations

import gzip
import shutil
from pathlib import Path

import numpy as np
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest

from rayfold.cli import main as cli_main
from rayfold.config import FragmentConfig, RunConfig
from rayfold.io.storage import list_inputs, read_parquet_dataset
from rayfold.model import schema
from rayfold.runtime.fragmenting import plan_units, run_fragment

pytestmark = pytest.mark.ray

MODELS = [
    "afdb_mycoplasma_mycoides_pdb/structures/F4MNP7.pdb.gz",
    "afdb_pf04034_knotted_mmcif_v3/structures/AF-A0A371CK35-F1-model_v3.cif.gz",
    "afdb_misc_models/merizo_examples/AF-Q96HM7-F1-model_v4.pdb.gz",
    "domain_boundaries/ted_consensus_example/structures/AF-A0A1X0B8H0-F1-model_v4.pdb.gz",
    "openfold3_example_outputs/hemoglobin_seed_42_sample_1_model.cif.gz",
]


@pytest.fixture()
def input_dir(tmp_path: Path, shared_data: Path) -> Path:
    folder = tmp_path / "inputs"
    folder.mkdir()
    for rel in MODELS:
        shutil.copy(shared_data / rel, folder / Path(rel).name)
    (folder / "broken.pdb.gz").write_bytes(gzip.compress(b"ATOM  garbage")[:-6])  # truncated gzip
    return folder


def read(out: str | Path, table: str):
    return pq.read_table(str(Path(out) / table))


def test_plan_units_is_deterministic(input_dir: Path):
    refs = list_inputs([str(input_dir)])
    first = plan_units(refs, unit_size=2)
    again = plan_units(list(reversed(refs)), unit_size=2)
    assert [u.unit_id for u in first] == [u.unit_id for u in again]
    assert [len(u.refs) for u in first] == [2, 2, 2]


def test_fragment_job_writes_tables_and_resumes(ray_local, input_dir: Path, tmp_path: Path):
    out = tmp_path / "out"
    summary = run_fragment([str(input_dir)], str(out), run=RunConfig(unit_size=2), progress=False)
    assert summary.inputs == 6 and summary.units == 3 and summary.units_skipped == 0
    fragments = read(out, "fragments")
    errors = read(out, "errors")
    chains = read(out, "chains")
    assert fragments.schema.names == schema.FRAGMENTS.names
    assert fragments.num_rows == summary.fragments > 5
    ids = fragments.column("fragment_id").to_pylist()
    assert len(ids) == len(set(ids))
    assert "F4MNP7_f1" in ids
    # every fragment: >= 20 residues, coordinates and pLDDT aligned with its residues; residues under
    # pLDDT 65 only inside short interior gaps (FragmentConfig.fill_gap_max), never at a fragment's ends
    config = FragmentConfig()
    for row in fragments.to_pylist():
        assert row["n_residues"] >= 20
        assert len(row["ca_coords"]) == len(row["plddt"]) == len(row["sequence"]) == row["n_residues"]
        low = np.asarray(row["plddt"]) < config.plddt_cutoff
        assert not low[0] and not low[-1]
        runs = np.diff(np.flatnonzero(np.diff(np.r_[0, low.astype(int), 0])).reshape(-1, 2), axis=1)
        assert (runs <= config.fill_gap_max).all()
    assert errors.num_rows == 1
    error = errors.to_pylist()[0]
    assert error["source_uri"].endswith("broken.pdb.gz") and error["stage"] == "parse"
    # OpenFold3 hemoglobin: 4 protein chains are read (its pLDDTs are all < 65, so no fragment)
    hemoglobin = chains.filter(pc.starts_with(chains.column("source_uri"), str(input_dir / "hemoglobin")))
    assert hemoglobin.num_rows == 4
    assert sum(hemoglobin.column("n_fragments").to_pylist()) == 0

    again = run_fragment([str(input_dir)], str(out), run=RunConfig(unit_size=2), progress=False)
    assert again.units_skipped == 3 and again.fragments == 0
    assert read(out, "fragments").num_rows == fragments.num_rows  # nothing duplicated


def test_whole_chains_and_export_through_cli(ray_local, input_dir: Path, tmp_path: Path):
    out = tmp_path / "whole"
    code = cli_main(["fragment", str(input_dir / "F4MNP7.pdb.gz"), "--out", str(out), "--whole-chains",
                     "--export-structures", "--no-progress"])
    assert code == 0
    fragments = read(out, "fragments")
    assert fragments.column("fragment_id").to_pylist() == ["F4MNP7_f1"]
    assert fragments.column("n_residues").to_pylist() == [450]
    exported = (out / "structures" / "F4MNP7_f1.pdb").read_text()
    assert exported.count(" CA ") == 450


def test_fragment_job_from_and_to_s3(ray_local, s3_server, input_dir: Path):
    bucket = s3_server.create_bucket()
    for path in sorted(input_dir.iterdir()):
        s3_server.put(bucket, f"release-1/{path.name}", path.read_bytes())
    out = f"s3://{bucket}/results"
    summary = run_fragment([f"s3://{bucket}/release-1/"], out, run=RunConfig(unit_size=3), progress=False)
    assert summary.inputs == 6 and summary.errors == 1
    fragments = read_parquet_dataset(f"{out}/fragments")
    assert fragments is not None and fragments.num_rows == summary.fragments
    assert all(uri.startswith(f"s3://{bucket}/release-1/") for uri in fragments.column("source_uri").to_pylist())
