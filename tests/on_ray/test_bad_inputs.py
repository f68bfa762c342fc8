"""Bad inputs: each gives one clear errors-table row, never an exception, and good inputs beside it
are still processed. The corpus is generated from real shared AFDB files (tests/bad_inputs.py)."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pyarrow.compute as pc
import pytest

from bad_inputs import (
    CORPUS_READ,
    GOOD_PDB,
    OTHER_PDB,
    PLDDT_0_1,
    REPEATED_CHAIN_ID,
    Corpus,
    build_corpus,
)
from rayfold.config import FragmentConfig, RunConfig
from rayfold.fragment import stage as stages
from rayfold.fragment.stage import FragmentStage, UnitResult
from rayfold.io.storage import InputRef, filesystem_for, list_inputs, read_parquet_dataset
from rayfold.io.structure import parse_structure
from rayfold.model.errors import ERROR_KINDS, InputError
from rayfold.runtime.fragmenting import run_fragment

REPO = Path(__file__).resolve().parents[2]

# Every bad input of the corpus, relative to its folder (a shard stands for its members' rows).
BAD = [
    "too_large.pdb",
    "truncated.pdb.gz",
    "corrupt.pdb.gz",
    "empty.cif",
    "no_atom_site.cif",
    "no_ca.pdb",
    "nucleic_acid.pdb",
    "no_plddt.pdb",
    "no_plddt.cif",
    "zero_plddt_metric.cif",
    "nan_coords.pdb",
    "huge_coords.cif",
    "placeholder_coords.pdb",
    "bomb.pdb.gz",
    "too_many_atoms.pdb.gz",
    "unknown.xyz",
    "shards/hostile.tar",
    "shards/bomb.tar.gz",
]


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory, shared_data: Path) -> Corpus:
    return build_corpus(tmp_path_factory.mktemp("bad-inputs"), shared_data)


@pytest.fixture(scope="module")
def stage() -> FragmentStage:
    return FragmentStage(read=CORPUS_READ)


def _ref(path: str) -> InputRef:
    (ref,) = list_inputs([path])
    return ref


def _rows(table, column: str, value: str) -> list[dict]:
    return table.filter(pc.equal(table.column(column), value)).to_pylist()


def _fragments_of(result: UnitResult, uri: str) -> list[tuple]:
    return [(r["fragment_id"], r["chopping"], r["passed"]) for r in _rows(result.fragments, "source_uri", uri)]


def _input_of(uri: str) -> str:
    return uri.split("#", 1)[0]


@pytest.fixture(scope="module")
def good(corpus: Corpus, stage: FragmentStage) -> tuple[str, list[tuple]]:
    """The good file mixed into every unit, and its fragments when processed alone."""
    uri = str(corpus.root / "F4MNP7.pdb.gz")
    result = stage.process([_ref(uri)])
    assert result.errors.num_rows == 0
    frags = _fragments_of(result, uri)
    assert len(frags) >= 2 and frags[0][0] == "F4MNP7_f1"
    return uri, frags


# ------------------------------------------------------------------------------------------
# listing


def test_listing_skips_silently_and_keeps_explicit_files(corpus: Corpus) -> None:
    refs = list_inputs(corpus.specs())
    uris = {r.uri for r in refs}
    expected = {_input_of(u) for u in [*corpus.errors, *corpus.good, *corpus.no_fragments]}
    assert uris == expected
    assert not uris & set(corpus.skipped)  # other extensions, hidden names, a named pipe: no row at all
    unknown = str(corpus.root / "unknown.xyz")
    assert unknown not in {r.uri for r in list_inputs([str(corpus.root)])}  # a folder walk skips it
    assert [r.uri for r in list_inputs([unknown])] == [unknown]  # named exactly: kept, content decides
    with pytest.raises(InputError) as ei:
        list_inputs([str(corpus.root / "*.xyz")])  # a glob filters like a folder walk
    assert ei.value.kind == "not_found"
    fifo = corpus.root / "pipe.pdb"
    if fifo.exists():
        with pytest.raises(InputError) as ei:
            list_inputs([str(fifo)])
        assert ei.value.kind == "not_a_file" and "pipe" in ei.value.message


def test_corpus_cases_are_all_listed_here(corpus: Corpus) -> None:
    assert {_input_of(u) for u in corpus.errors} == {str(corpus.root / b) for b in BAD}
    assert set(corpus.errors.values()) <= {(stage, kind) for kind, (st, _) in ERROR_KINDS.items() for stage in st}


# ------------------------------------------------------------------------------------------
# each bad input beside a good file in one unit


@pytest.mark.parametrize("name", BAD)
def test_bad_input_gives_one_error_row_and_good_file_is_kept(
    corpus: Corpus, stage: FragmentStage, good: tuple[str, list[tuple]], name: str
) -> None:
    good_uri, good_fragments = good
    bad_uri = str(corpus.root / name)
    for refs in ([_ref(bad_uri), _ref(good_uri)], [_ref(good_uri), _ref(bad_uri)]):
        result = stage.process(refs)  # never raises
        errors = {(r["source_uri"], r["stage"], r["error_kind"]) for r in result.errors.to_pylist()}
        expected = {(u, st, kind) for u, (st, kind) in corpus.errors.items() if _input_of(u) == bad_uri}
        assert errors == expected
        assert result.errors.num_rows == len(expected)  # one row per bad input (tar: per bad member)
        for row in result.errors.to_pylist():
            assert row["message"] and len(row["message"]) < 400
            assert "Traceback" not in row["message"]
        assert _fragments_of(result, good_uri) == good_fragments
        for uri, entry_id in corpus.good.items():  # good members of a bad shard are still read
            if _input_of(uri) == bad_uri:
                assert _rows(result.fragments, "source_uri", uri), uri
                assert {r["entry_id"] for r in _rows(result.chains, "source_uri", uri)} == {entry_id}
        # a bad input leaves no chain or fragment rows of its own
        assert not _rows(result.chains, "source_uri", bad_uri)
        summaries = {s.ref.uri: s for s in result.inputs}
        assert summaries[bad_uri].errors == len(expected) and summaries[good_uri].errors == 0


def test_error_messages_say_what_is_wrong(corpus: Corpus, stage: FragmentStage) -> None:
    result = stage.process([_ref(str(corpus.root / b)) for b in BAD])
    root = len(str(corpus.root)) + 1
    msg = {r["source_uri"][root:]: r["message"] for r in result.errors.to_pylist()}
    assert "ReadConfig.max_file_bytes" in msg["too_large.pdb"]
    assert "ReadConfig.max_decompressed_bytes" in msg["bomb.pdb.gz"]
    assert "ReadConfig.max_decompressed_bytes" in msg["shards/bomb.tar.gz"]
    assert "ReadConfig.max_atoms" in msg["too_many_atoms.pdb.gz"]
    assert "_atom_site" in msg["no_atom_site.cif"]
    assert "nan" in msg["nan_coords.pdb"] and "atom CB" in msg["nan_coords.pdb"]
    assert "1e+09" in msg["huge_coords.cif"]
    assert "placeholder" in msg["placeholder_coords.pdb"]
    assert "B-factors" in msg["no_plddt.pdb"] and "--whole-chains" in msg["no_plddt.pdb"]
    assert "_ma_qa_metric_local" in msg["zero_plddt_metric.cif"]
    assert ".cif" in msg["unknown.xyz"] and ".pdb" in msg["unknown.xyz"]
    assert "symbolic link" in msg["shards/hostile.tar#link.pdb"] and "hard link" in msg["shards/hostile.tar#hard.pdb"]
    assert "'..'" in msg["shards/hostile.tar#../escape.pdb"] and "absolute" in msg["shards/hostile.tar#/abs.pdb"]


# ------------------------------------------------------------------------------------------
# awkward but valid inputs: no error rows


def test_awkward_valid_inputs_are_read(corpus: Corpus, stage: FragmentStage, shared_data: Path) -> None:
    uris = sorted({_input_of(u) for u in [*corpus.good, *corpus.no_fragments]})
    odd = list_inputs([corpus.odd_dir])  # names that are not UTF-8 are listed and read like any other
    assert len(odd) == len(corpus.odd_names)
    result = stage.process([_ref(u) for u in uris] + odd)
    # no error rows but those of the bad members of the two shards that hold good members
    errors = {(r["source_uri"], r["stage"], r["error_kind"]) for r in result.errors.to_pylist()}
    assert errors == {(u, st, kind) for u, (st, kind) in corpus.errors.items() if "shards/" in u}
    for uri, entry_id in {**corpus.good, **corpus.odd_names}.items():
        frags = _rows(result.fragments, "source_uri", uri)
        assert frags and {f["entry_id"] for f in frags} == {entry_id}, uri
    # a chain with no usable residues is a chains-table row with 0 fragments, not an error
    for uri, entry_id in corpus.no_fragments.items():
        (chain,) = _rows(result.chains, "source_uri", uri)
        assert chain["entry_id"] == entry_id and chain["n_fragments"] == 0
    (one,) = _rows(result.chains, "source_uri", str(corpus.root / "one_residue.pdb"))
    assert one["n_residues"] == 1 and one["n_dropped_short"] == 1
    (low,) = _rows(result.chains, "source_uri", str(corpus.root / "low_plddt.pdb"))
    assert low["n_residues"] == 450 and low["n_usable"] == 0
    # the 2,699-residue chain fragments like any other
    (long_chain,) = _rows(result.chains, "source_uri", str(corpus.root / "long/AF-Q9P273-F1-model_v4.pdb.gz"))
    assert long_chain["n_residues"] == 2699 and long_chain["n_fragments"] >= 5
    # the same content under two names: both processed, with the same entry and fragment ids
    a, b = corpus.duplicates
    ids_a = [f["fragment_id"] for f in _rows(result.fragments, "source_uri", a)]
    ids_b = [f["fragment_id"] for f in _rows(result.fragments, "source_uri", b)]
    assert ids_a == ids_b and ids_a[0] == "F4MNP7_f1"
    digests = {s.ref.uri: s.content_sha256 for s in result.inputs}
    assert digests[a] == digests[b]
    # non-UTF-8 bytes inside the files: read as '?', the coordinates are those of the clean file
    for name, rel in (("latin1.pdb", "afdb_misc_models/merizo_examples/AF-Q96HM7-F1-model_v4.pdb.gz"),
                      ("latin1.cif", "afdb_misc_models/alphafill_test/AF-P29373-F1-model_v4.cif.gz")):
        clean = parse_structure((shared_data / rel).read_bytes(), rel)
        dirty = parse_structure((corpus.root / "encoding" / name).read_bytes(), name)
        np.testing.assert_array_equal(dirty.chains[0].ca_coords, clean.chains[0].ca_coords)
        np.testing.assert_array_equal(dirty.chains[0].plddt, clean.chains[0].plddt)


def test_whole_chains_keeps_chains_without_plddt(corpus: Corpus) -> None:
    result = FragmentStage(FragmentConfig(whole_chains=True), CORPUS_READ).process(
        [_ref(str(corpus.root / n)) for n in ("no_plddt.pdb", "no_plddt.cif", "one_residue.pdb")])
    assert result.errors.num_rows == 0
    assert result.fragments.column("n_residues").to_pylist() == [450, 138, 1]
    assert set(result.chains.column("plddt_source").to_pylist()) == {"b_factor"}  # all-0 is not 0-1 pLDDT


def test_repeated_chain_id_after_ter_gives_two_chains(
    corpus: Corpus, stage: FragmentStage, good: tuple[str, list[tuple]], shared_data: Path
) -> None:
    """Two real models that both say chain A, a TER between: chains A and A2, each as if read alone
    (nothing fused, no fragment across the two, 3Di from the right chain)."""
    uri = str(corpus.root / REPEATED_CHAIN_ID)
    result = stage.process([_ref(uri)])
    assert result.errors.num_rows == 0
    alone = stage.process([_ref(str(shared_data / OTHER_PDB))])
    (other,) = alone.chains.to_pylist()
    chains = _rows(result.chains, "source_uri", uri)
    assert [(c["chain_id"], c["n_residues"], c["n_usable"]) for c in chains] == [
        ("A", 450, 419), ("A2", other["n_residues"], other["n_usable"])]
    frags = _rows(result.fragments, "source_uri", uri)
    assert [(f["fragment_id"], f["chopping"], f["passed"]) for f in frags if f["chain_id"] == "A"] == good[1]
    second = [(f["chopping"], f["n_residues"], f["passed"], f["states_3di"]) for f in frags if f["chain_id"] == "A2"]
    assert second and second == [
        (f["chopping"], f["n_residues"], f["passed"], f["states_3di"]) for f in alone.fragments.to_pylist()]
    entry = parse_structure(Path(uri).read_bytes(), uri)
    firsts = [parse_structure((shared_data / rel).read_bytes(), rel).chains[0] for rel in (GOOD_PDB, OTHER_PDB)]
    for chain, first in zip(entry.chains, firsts):
        assert chain.sequence == first.sequence
        np.testing.assert_array_equal(chain.ca_coords, first.ca_coords)


def test_plddt_on_a_0_1_scale_is_scaled_to_0_100(
    corpus: Corpus, stage: FragmentStage, good: tuple[str, list[tuple]], shared_data: Path
) -> None:
    """B-factors / 100 (as ESMFold writes pLDDT): scaled back, said in plddt_source, same fragments."""
    uri = str(corpus.root / PLDDT_0_1)
    result = stage.process([_ref(uri)])
    assert result.errors.num_rows == 0
    (chain,) = _rows(result.chains, "source_uri", uri)
    assert chain["plddt_source"] == "b_factor_0_1"
    assert _fragments_of(result, uri) == good[1]
    scaled = parse_structure(Path(uri).read_bytes(), uri).chains[0].plddt
    original = parse_structure((shared_data / GOOD_PDB).read_bytes(), GOOD_PDB).chains[0].plddt
    np.testing.assert_allclose(scaled, original, atol=0.5 + 1e-4)  # 0-1 with 2 decimals: 0.5 points


def test_a_failure_after_fragmenting_drops_the_whole_entry_only(
    corpus: Corpus, good: tuple[str, list[tuple]], monkeypatch: pytest.MonkeyPatch
) -> None:
    good_uri, good_fragments = good
    victim = str(corpus.root / "long/AF-Q9P273-F1-model_v4.pdb.gz")
    real = stages.encode_fragment

    def flaky(entry, chain_id, idx):
        if entry.entry_id == "Q9P273" and len(idx) > 100:
            raise RuntimeError("3Di encoder failed")
        return real(entry, chain_id, idx)

    monkeypatch.setattr(stages, "encode_fragment", flaky)
    result = FragmentStage(read=CORPUS_READ).process([_ref(victim), _ref(good_uri)])
    assert [(r["source_uri"], r["stage"], r["error_kind"]) for r in result.errors.to_pylist()] == [
        (victim, "fragment", "unexpected")]
    assert "3Di encoder failed" in result.errors.column("message")[0].as_py()
    assert not _rows(result.fragments, "source_uri", victim) and not _rows(result.chains, "source_uri", victim)
    assert _fragments_of(result, good_uri) == good_fragments


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="needs named pipes")
def test_file_replaced_by_a_pipe_after_listing_does_not_block(
    tmp_path: Path, good: tuple[str, list[tuple]]
) -> None:
    good_uri, good_fragments = good
    victim = tmp_path / "x.pdb"
    victim.write_bytes(b"ATOM")
    refs = list_inputs([str(victim)])
    victim.unlink()
    os.mkfifo(victim)  # no writer: a blocking open would wait forever
    result = FragmentStage(read=CORPUS_READ).process([*refs, _ref(good_uri)])
    assert [(r["stage"], r["error_kind"]) for r in result.errors.to_pylist()] == [("read", "not_a_file")]
    assert _fragments_of(result, good_uri) == good_fragments


# ------------------------------------------------------------------------------------------
# S3: an object deleted between listing and reading


def test_s3_object_deleted_after_listing(s3_server, shared_data: Path, good: tuple[str, list[tuple]]) -> None:
    good_uri, good_fragments = good
    bucket = s3_server.create_bucket()
    data = Path(good_uri).read_bytes()
    s3_server.put(bucket, "in/F4MNP7.pdb.gz", data)
    s3_server.put(bucket, "in/gone.pdb.gz", data)
    refs = list_inputs([f"s3://{bucket}/in/"])
    assert [r.uri.rsplit("/", 1)[-1] for r in refs] == ["F4MNP7.pdb.gz", "gone.pdb.gz"]
    fs, path = filesystem_for(refs[1].uri)
    fs.rm(path)
    result = FragmentStage(read=CORPUS_READ).process(refs)
    (row,) = result.errors.to_pylist()
    assert (row["source_uri"], row["stage"], row["error_kind"]) == (refs[1].uri, "read", "not_found")
    assert "deleted" in row["message"] and "testing" not in row["message"]
    kept = _fragments_of(result, refs[0].uri)
    assert [(f, c) for f, c, _ in kept] == [(f, c) for f, c, _ in good_fragments]


# ------------------------------------------------------------------------------------------
# documentation


def test_every_error_kind_is_documented() -> None:
    doc = (REPO / "docs" / "limits.md").read_text()
    missing = [kind for kind in ERROR_KINDS if f"`{kind}`" not in doc]
    assert not missing
    for field in ("max_file_bytes", "max_decompressed_bytes", "max_atoms"):
        assert f"`{field}`" in doc


# ------------------------------------------------------------------------------------------
# the whole corpus through the Ray job


@pytest.mark.ray
def test_corpus_through_ray_job(ray_local, corpus: Corpus, tmp_path: Path) -> None:
    out = tmp_path / "out"
    summary = run_fragment(corpus.specs(), str(out), read=CORPUS_READ, run=RunConfig(unit_size=4), progress=False)
    errors = read_parquet_dataset(str(out / "errors"))
    fragments = read_parquet_dataset(str(out / "fragments"))
    chains = read_parquet_dataset(str(out / "chains"))
    assert errors is not None and fragments is not None and chains is not None
    got = sorted((r["source_uri"], r["stage"], r["error_kind"]) for r in errors.to_pylist())
    assert got == sorted((u, st, kind) for u, (st, kind) in corpus.errors.items())  # one row per bad input
    assert summary.errors == len(corpus.errors)
    for uri, entry_id in corpus.good.items():
        frags = _rows(fragments, "source_uri", uri)
        assert frags and {f["entry_id"] for f in frags} == {entry_id}, uri
    for uri in corpus.no_fragments:
        assert [c["n_fragments"] for c in _rows(chains, "source_uri", uri)] == [0]
    bad_inputs = {_input_of(u) for u in corpus.errors}
    assert not [c for c in chains.to_pylist() if c["source_uri"] in bad_inputs]
    a, b = corpus.duplicates
    ids = [f["fragment_id"] for f in _rows(fragments, "source_uri", a)]
    assert ids == [f["fragment_id"] for f in _rows(fragments, "source_uri", b)]  # duplicate ids, two sources
