"""`rayfold run` releases on a real local Ray: incremental growth, changed inputs, resume after a kill."""

from __future__ import annotations

import gzip
import os
import shutil
import tempfile
import time
from pathlib import Path

import pyarrow.compute as pc
import pytest

from cli_processes import kill_run, run_cli, wait_for
from conftest import EXAMPLES_AFDB
from rayfold.cluster.rules import ClusterConfig
from rayfold.config import FragmentConfig, RunConfig
from rayfold.io.storage import read_parquet_dataset
from rayfold.model.errors import InputError
from rayfold.release.run import ReleaseConfig, run_release

pytestmark = pytest.mark.ray

CONFIG = ReleaseConfig(cluster=ClusterConfig(engine="builtin"))
MODELS = sorted(p for p in EXAMPLES_AFDB.iterdir() if p.name.endswith(".gz"))
CLUSTERING = ("clusters", "members", "merges", "singleton_audit")


def table(out: Path, name: str):
    return read_parquet_dataset(str(out / name))


def partition(out: Path) -> dict[frozenset, str]:
    """{member set: cluster id} of the published members table."""
    groups: dict[str, set] = {}
    for row in table(out, "members").to_pylist():
        groups.setdefault(row["cluster_id"], set()).add(row["fragment_id"])
    return {frozenset(v): k for k, v in groups.items()}


def assert_no_duplicates(out: Path) -> None:
    for name, key in [("fragments", "fragment_id"), ("members", "fragment_id"), ("clusters", "cluster_id")]:
        ids = table(out, name).column(key).to_pylist()
        assert len(ids) == len(set(ids)), f"duplicate {key} in {name}"
    chains = table(out, "chains").select(["source_uri", "chain_id"]).to_pylist()
    assert len(chains) == len({(r["source_uri"], r["chain_id"]) for r in chains})
    manifest = table(out, "manifest").select(["input_uri", "release"]).to_pylist()
    assert len(manifest) == len({(r["input_uri"], r["release"]) for r in manifest})
    releases = table(out, "releases").column("release").to_pylist()
    assert releases == sorted(set(releases))


@pytest.fixture(scope="module")
def grown(ray_local, tmp_path_factory) -> dict:
    """Release 1 on half the examples, release 2 after the other half arrives, and one full run."""
    root = tmp_path_factory.mktemp("release")
    inputs, inc, full = root / "inputs", root / "inc", root / "full"
    inputs.mkdir()
    first, second = MODELS[::2], MODELS[1::2]
    for p in first:
        shutil.copy2(p, inputs / p.name)
    r1 = run_release([str(inputs)], str(inc), config=CONFIG, progress=False, analytics=False)
    partition1 = partition(inc)
    for p in second:
        shutil.copy2(p, inputs / p.name)
    r2 = run_release([str(inputs)], str(inc), config=CONFIG, progress=False, analytics=False)
    single = run_release([str(inputs)], str(full), config=CONFIG, progress=False, analytics=False)
    return {"inputs": inputs, "inc": inc, "full": full, "r1": r1, "r2": r2, "single": single,
            "partition1": partition1, "second": {str(inputs / p.name) for p in second}}


def test_second_release_reads_only_new_inputs(grown):
    r1, r2 = grown["r1"], grown["r2"]
    assert (r1.release, r1.new_inputs, r2.release, r2.new_inputs) == (1, len(MODELS[::2]), 2, len(MODELS[1::2]))
    assert r2.changed_inputs == 0 and r2.inputs == len(MODELS)
    manifest = table(grown["inc"], "manifest")
    assert set(manifest.filter(pc.field("release") == 2).column("input_uri").to_pylist()) == grown["second"]
    # every input was read exactly once over both releases
    assert sorted(manifest.column("input_uri").to_pylist()) == sorted(str(grown["inputs"] / p.name) for p in MODELS)
    assert r2.new_fragments < r2.fragments and r2.reused_alignments > 0


def test_incremental_tables_equal_a_single_run(grown):
    for name in CLUSTERING:  # the same clusters, representatives, ids, merges and audit, row for row
        assert table(grown["inc"], name).equals(table(grown["full"], name)), name
    for name in ("fragments", "chains"):
        a = table(grown["inc"], name).sort_by("source_uri").column("source_uri").to_pylist()
        b = table(grown["full"], name).sort_by("source_uri").column("source_uri").to_pylist()
        assert a == b
    # release 2 aligned only pairs release 1 had not: together no more than the single run
    r1, r2, single = grown["r1"], grown["r2"], grown["single"]
    assert r2.alignments < single.alignments and r2.reused_alignments <= r1.alignments
    stored = table(grown["inc"], "alignments")
    assert stored.num_rows == r1.alignments + r2.alignments


def test_cluster_map_says_how_ids_moved(grown):
    before, now = grown["partition1"], partition(grown["inc"])
    changes = table(grown["inc"], "cluster_map").filter(pc.field("release") == 2).to_pylist()
    changed = {r["cluster_id"] for r in changes}
    for members, cluster_id in now.items():
        # a cluster has no row exactly when it had the same id and members in release 1
        assert (before.get(members) == cluster_id) == (cluster_id not in changed)
    size_then = {cid: len(m) for m, cid in before.items()}
    size_now = {cid: len(m) for m, cid in now.items()}
    for cid in changed:  # its rows account for each of its members once
        assert sum(r["fragments"] for r in changes if r["cluster_id"] == cid) == size_now[cid]
    for cid in {r["previous_cluster_id"] for r in changes} - {None}:
        assert sum(r["fragments"] for r in changes if r["previous_cluster_id"] == cid) == size_then[cid]
    assert {r["change"] for r in changes} <= {"same_id", "moved", "new", "removed"}
    assert sum(r["fragments"] for r in changes if r["change"] == "new") == grown["r2"].new_fragments
    assert grown["r2"].changed_clusters == len(changed)


def test_only_the_newest_state_is_kept(grown):
    assert sorted(p.name for p in (grown["inc"] / "state").iterdir()) == ["000002"]


def test_rerun_with_nothing_new_writes_nothing(grown):
    before = {p: p.stat().st_mtime_ns for p in grown["inc"].rglob("*.parquet")}
    again = run_release([str(grown["inputs"])], str(grown["inc"]), config=CONFIG, progress=False, analytics=False)
    assert again.up_to_date and again.release == 2
    assert {p: p.stat().st_mtime_ns for p in grown["inc"].rglob("*.parquet")} == before
    assert_no_duplicates(grown["inc"])


def test_other_fragment_settings_are_refused_before_any_work(grown):
    before = {p: p.stat().st_mtime_ns for p in grown["inc"].rglob("*.parquet")}
    other = ReleaseConfig(cluster=CONFIG.cluster, fragment=FragmentConfig(split_max_rg_ratio=None))
    with pytest.raises(InputError, match=r"settings_changed: .*fragment\.split_max_rg_ratio: 1\.5 -> None"):
        run_release([str(grown["inputs"])], str(grown["inc"]), config=other, progress=False, analytics=False)
    assert {p: p.stat().st_mtime_ns for p in grown["inc"].rglob("*.parquet")} == before


def test_changed_input_replaces_its_fragments(ray_local, tmp_path):
    inputs, out = tmp_path / "inputs", tmp_path / "out"
    inputs.mkdir()
    for p in MODELS[:6]:
        shutil.copy2(p, inputs / p.name)
    run_release([str(inputs)], str(out), config=CONFIG, progress=False, analytics=False)
    target = next(p for p in sorted(inputs.iterdir()) if p.name.endswith(".pdb.gz"))
    lines = gzip.decompress(target.read_bytes()).decode().splitlines()
    atoms = [i for i, line in enumerate(lines) if line.startswith("ATOM")]
    cut = lines[: atoms[len(atoms) // 2]] + ["END"]  # the same entry, with its second half gone
    target.write_bytes(gzip.compress("\n".join(cut).encode()))
    touched = next(p for p in sorted(inputs.iterdir()) if p != target)
    os.utime(touched, None)  # new mtime, same bytes: re-read, but its clustering stands
    r2 = run_release([str(inputs)], str(out), config=CONFIG, progress=False, analytics=False)
    assert (r2.release, r2.new_inputs, r2.changed_inputs) == (2, 2, 1)
    assert_no_duplicates(out)
    chains = table(out, "chains").filter(pc.field("source_uri") == str(target))
    assert chains.num_rows == 1 and chains.column("n_residues")[0].as_py() < len(atoms)
    members = set(table(out, "members").column("fragment_id").to_pylist())
    passed = set(table(out, "fragments").filter(pc.field("passed")).column("fragment_id").to_pylist())
    assert members == passed


# --- a driver killed part-way ---------------------------------------------------------------------


def test_killed_driver_resumes_without_duplicates(ray_local, tmp_path):
    inputs, out, reference = tmp_path / "inputs", tmp_path / "out", tmp_path / "reference"
    inputs.mkdir()
    for p in MODELS[:12]:
        shutil.copy2(p, inputs / p.name)
    run_release([str(inputs)], str(reference), config=CONFIG, run=RunConfig(unit_size=2), progress=False,
                analytics=False)
    ray_tmp = tempfile.mkdtemp(prefix="rfk-", dir="/tmp")
    try:
        def parts(name: str) -> int:
            return len(list((out / name).glob("part-*.parquet"))) if (out / name).is_dir() else 0

        # 1. killed while fragmenting: some units written, not all
        proc = run_cli([inputs], out, ray_tmp)
        assert wait_for(lambda: parts("manifest") >= 1, proc), proc.stderr.read().decode()[-3000:]
        kill_run(proc, ray_tmp)
        killed_at = parts("manifest")
        assert not (out / "releases").exists()
        # 2. killed again after fragmenting, while clustering (before the commit)
        proc = run_cli([inputs], out, ray_tmp)
        assert wait_for(lambda: parts("manifest") == 6, proc), proc.stderr.read().decode()[-3000:]
        time.sleep(1.0)
        kill_run(proc, ray_tmp)
        # 3. to the end
        proc = run_cli([inputs], out, ray_tmp)
        _, stderr = proc.communicate(timeout=600)
        assert proc.returncode == 0, stderr.decode()[-3000:]
    finally:
        shutil.rmtree(ray_tmp, ignore_errors=True)
    assert killed_at < 6
    assert_no_duplicates(out)
    assert table(out, "releases").num_rows == 1
    for name in ("members", "clusters", "merges", "singleton_audit"):
        assert table(out, name).equals(table(reference, name)), name
    for name in ("fragments", "chains", "errors"):
        a, b = table(out, name), table(reference, name)
        key = "fragment_id" if name == "fragments" else "source_uri"
        assert a.sort_by(key).select(b.column_names).equals(b.sort_by(key)), name


def test_input_filter_keeps_only_listed_entries(ray_local, tmp_path):
    from rayfold.release.inputfilter import read_id_table

    inputs, out = tmp_path / "inputs", tmp_path / "out"
    inputs.mkdir()
    chosen = MODELS[-4:]
    for p in chosen:
        shutil.copy2(p, inputs / p.name)
    keep = [chosen[0].name.split(".")[0], chosen[2].name.split(".")[0]]  # e.g. F4MR59 (an AFDB accession)
    (tmp_path / "ids.txt").write_text("\n".join(keep) + "\n")
    entry_filter = read_id_table(str(tmp_path / "ids.txt"))
    run_release([str(inputs)], str(out), config=CONFIG, entry_filter=entry_filter, progress=False, analytics=False)
    entries = set(table(out, "chains").column("entry_id").to_pylist())
    assert entries == set(keep)
    assert set(table(out, "manifest").column("input_uri").to_pylist()) == {str(inputs / p.name) for p in chosen}


def test_one_entry_in_two_inputs_is_clustered_once(ray_local, tmp_path):
    a, b, out = tmp_path / "a", tmp_path / "b", tmp_path / "out"
    a.mkdir()
    b.mkdir()
    model = MODELS[0]
    shutil.copy2(model, a / model.name)
    run_release([str(a)], str(out), config=CONFIG, progress=False, analytics=False)
    first = set(table(out, "fragments").filter(pc.field("passed")).column("fragment_id").to_pylist())
    assert first
    shutil.copy2(model, b / model.name)  # the same model arrives under a second folder
    shutil.copy2(MODELS[1], b / MODELS[1].name)
    for _ in range(2):  # the second release, then a third after one more new file
        run_release([str(a), str(b)], str(out), config=CONFIG, progress=False, analytics=False)
        shutil.copy2(MODELS[2], b / MODELS[2].name)
    errors = table(out, "errors").filter(pc.field("error_kind") == "duplicate_entry")
    assert errors.num_rows == len(first)  # one row per extra copy, not one per release
    assert set(errors.column("source_uri").to_pylist()) == {str(b / model.name)}
    fragments = table(out, "fragments").filter(pc.field("passed")).column("fragment_id").to_pylist()
    members = table(out, "members").column("fragment_id").to_pylist()
    assert len(members) == len(set(members)) == len(set(fragments))
    assert table(out, "releases").num_rows == 3
