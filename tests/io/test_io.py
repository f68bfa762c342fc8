"""Input listing and reading: local folders, globs, tar shards (incl. hostile members) and S3 (moto)."""

from __future__ import annotations

import gzip
import os
import tarfile
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from conftest import add_tar_member as _add
from rayfold.io.storage import (
    InputRef,
    exists,
    filesystem_for,
    iter_structure_bytes,
    join_uri,
    list_files,
    list_inputs,
    read_bytes,
    read_parquet_dataset,
    write_bytes,
    write_parquet,
)
from rayfold.io.structure import parse_structure
from rayfold.model.errors import InputError

MISC = "afdb_misc_models"
SOURCES = [
    "afdb_mycoplasma_mycoides_pdb/structures/F4MNP7.pdb.gz",
    f"{MISC}/dpam_examples/O05012.cif.gz",
    f"{MISC}/chainsaw_examples/AF-A0A0A9LVA1-F1-model_v4.pdb.gz",
]


@pytest.fixture()
def tree(tmp_path: Path, shared_data: Path) -> Path:
    """A small input folder: structures at two depths, a tar shard, and files to be skipped."""
    root = tmp_path / "in"
    (root / "sub" / "deeper").mkdir(parents=True)
    (root / ".cache").mkdir()
    (root / "a.pdb.gz").write_bytes((shared_data / SOURCES[0]).read_bytes())
    (root / "sub" / "b.cif.gz").write_bytes((shared_data / SOURCES[1]).read_bytes())
    (root / "sub" / "deeper" / "c.ent").write_bytes(gzip.decompress((shared_data / SOURCES[2]).read_bytes()))
    (root / "sub" / "shard.tar").write_bytes(b"")  # listed as a tar, content irrelevant here
    (root / "d.MMCIF").write_bytes(b"data_x\n")
    (root / "notes.txt").write_text("not a structure")
    (root / ".hidden.pdb").write_text("hidden")
    (root / ".cache" / "e.pdb").write_text("hidden folder")
    return root


def _names(refs: list[InputRef], root: Path) -> list[str]:
    return [os.path.relpath(r.uri, root) for r in refs]


# ------------------------------------------------------------------------------------------
# listing


def test_list_local_folder_recursive(tree: Path) -> None:
    refs = list_inputs([str(tree)])
    assert _names(refs, tree) == ["a.pdb.gz", "d.MMCIF", "sub/b.cif.gz", "sub/deeper/c.ent", "sub/shard.tar"]
    assert all(os.path.isabs(r.uri) for r in refs)
    assert [r.is_tar for r in refs] == [False, False, False, False, True]
    a = refs[0]
    assert a.size == (tree / "a.pdb.gz").stat().st_size
    assert a.mtime_or_etag == str((tree / "a.pdb.gz").stat().st_mtime_ns)


def test_list_file_uri_relative_paths_and_dedup(tree: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tree.parent)
    refs = list_inputs([f"file://{tree}/sub", "in/sub/b.cif.gz", str(tree / "sub" / "b.cif.gz")])
    assert _names(refs, tree) == ["sub/b.cif.gz", "sub/deeper/c.ent", "sub/shard.tar"]
    assert refs[0].uri == str(tree / "sub" / "b.cif.gz")


def test_list_globs(tree: Path, shared_data: Path) -> None:
    assert _names(list_inputs([str(tree / "**" / "*.gz")]), tree) == ["a.pdb.gz", "sub/b.cif.gz"]
    assert _names(list_inputs([str(tree / "s*")]), tree) == ["sub/b.cif.gz", "sub/deeper/c.ent", "sub/shard.tar"]
    myco = list_inputs([str(shared_data / "afdb_mycoplasma_mycoides_pdb/structures/F4MNP*.pdb.gz")])
    assert [Path(r.uri).name for r in myco] == ["F4MNP7.pdb.gz"]


def test_existing_path_with_glob_characters_is_literal(tmp_path: Path, shared_data: Path) -> None:
    """'model[1].pdb.gz' that exists is that file (as a pattern it would match 'model1.pdb.gz')."""
    folder = tmp_path / "run[1]"
    folder.mkdir()
    data = (shared_data / SOURCES[0]).read_bytes()
    for name in ("model[1].pdb.gz", "model1.pdb.gz", "model*.pdb.gz"):
        (folder / name).write_bytes(data)
    for name in ("model[1].pdb.gz", "model*.pdb.gz"):
        assert [r.uri for r in list_inputs([str(folder / name)])] == [str(folder / name)]
    assert len(list_inputs([str(folder)])) == 3  # a folder with '[' in its name is walked
    assert _names(list_inputs([str(tmp_path / "*" / "model[1].pdb.gz")]), folder) == ["model1.pdb.gz"]  # a glob


def test_existing_s3_key_with_glob_characters_is_literal(s3_server, shared_data: Path) -> None:  # noqa: ANN001
    bucket = s3_server.create_bucket()
    data = (shared_data / SOURCES[0]).read_bytes()
    for name in ("model[1].pdb.gz", "model1.pdb.gz"):
        s3_server.put(bucket, f"in/{name}", data)
    assert [r.uri for r in list_inputs([f"s3://{bucket}/in/model[1].pdb.gz"])] == [f"s3://{bucket}/in/model[1].pdb.gz"]
    assert [r.uri for r in list_inputs([f"s3://{bucket}/in/model?.pdb.gz"])] == [f"s3://{bucket}/in/model1.pdb.gz"]


def test_list_not_found(tree: Path) -> None:
    with pytest.raises(InputError) as ei:
        list_inputs([str(tree), str(tree / "missing")])
    assert ei.value.kind == "not_found" and "missing" in ei.value.message
    (tree / "empty").mkdir()
    (tree / "empty" / "readme.md").write_text("x")
    with pytest.raises(InputError) as ei:
        list_inputs([str(tree / "empty")])
    assert ei.value.kind == "not_found"
    with pytest.raises(InputError):
        list_inputs([str(tree / "*.xyz")])


def test_explicit_file_with_other_extension_is_kept(tree: Path) -> None:
    refs = list_inputs([str(tree / "notes.txt")])
    assert len(refs) == 1 and not refs[0].is_tar


def test_read_plain_files_and_vanished_file(tree: Path, shared_data: Path) -> None:
    refs = list_inputs([str(tree)])
    items = dict(item for r in refs if not r.is_tar for item in iter_structure_bytes(r))
    assert items[str(tree / "a.pdb.gz")] == (shared_data / SOURCES[0]).read_bytes()
    (tree / "a.pdb.gz").unlink()
    ((uri, err),) = list(iter_structure_bytes(refs[0]))
    assert uri == refs[0].uri
    assert isinstance(err, InputError) and err.kind == "not_found"


def test_plain_file_over_cap(tree: Path) -> None:
    ref = list_inputs([str(tree / "a.pdb.gz")])[0]
    ((_, err),) = list(iter_structure_bytes(ref, max_member_bytes=100))
    assert isinstance(err, InputError) and err.kind == "file_too_large"


# ------------------------------------------------------------------------------------------
# tar shards


def _make_shard(path: Path, shared_data: Path, *, hostile: bool = True) -> dict[str, bytes]:
    """Write a tar(.gz) shard; returns the expected member bytes by name."""
    good = {
        "models/F4MNP7.pdb.gz": (shared_data / SOURCES[0]).read_bytes(),
        "models/O05012.cif.gz": (shared_data / SOURCES[1]).read_bytes(),
        "AF-A0A0A9LVA1-F1-model_v4.pdb": gzip.decompress((shared_data / SOURCES[2]).read_bytes()),
    }
    mode = "w:gz" if path.name.endswith("gz") else "w"
    with tarfile.open(path, mode) as tf:
        _add(tf, "models", type=tarfile.DIRTYPE)
        for name, data in good.items():
            _add(tf, name, data)
        _add(tf, "README.txt", b"ignored")
        if hostile:
            _add(tf, "../escape.pdb", b"ATOM")
            _add(tf, "/abs.pdb", b"ATOM")
            _add(tf, "link.pdb", type=tarfile.SYMTYPE, linkname="/etc/passwd")
            _add(tf, "hard.cif", type=tarfile.LNKTYPE, linkname="models/O05012.cif.gz")
            _add(tf, "dev.pdb", type=tarfile.CHRTYPE)
    return good


@pytest.mark.parametrize("shard_name", ["shard.tar", "shard.tar.gz", "shard.tgz"])
def test_tar_shard_members_and_unsafe_members(tmp_path: Path, shared_data: Path, shard_name: str) -> None:
    shard = tmp_path / shard_name
    good = _make_shard(shard, shared_data)
    (ref,) = list_inputs([str(tmp_path)])
    assert ref.is_tar
    items = list(iter_structure_bytes(ref))
    got = {u.split("#", 1)[1]: d for u, d in items}
    assert all(u.startswith(f"{shard}#") for u, _ in items)
    for name, data in good.items():
        assert got[name] == data
    unsafe = {n: d.kind for n, d in got.items() if isinstance(d, InputError)}
    assert unsafe == {n: "unsafe_tar_member" for n in ("../escape.pdb", "/abs.pdb", "link.pdb", "hard.cif", "dev.pdb")}
    assert "README.txt" not in got and "models" not in got
    assert len(items) == 8
    # the bytes parse like the files they came from
    assert parse_structure(got["models/O05012.cif.gz"], f"{shard}#models/O05012.cif.gz").entry_id == "O05012"
    assert not (tmp_path / "escape.pdb").exists() and not (tmp_path.parent / "escape.pdb").exists()


def test_tar_member_cap_and_decompressed_cap(tmp_path: Path, shared_data: Path) -> None:
    shard = tmp_path / "s.tar.gz"
    _make_shard(shard, shared_data, hostile=False)
    ref = InputRef(str(shard), None, None, True)
    kinds = [d.kind for _, d in iter_structure_bytes(ref, max_member_bytes=60_000) if isinstance(d, InputError)]
    assert kinds.count("member_too_large") == 2  # the 66 KB and 83 KB gz members; the 9.6 KB plain 16-residue model fits
    items = list(iter_structure_bytes(ref, max_decompressed_bytes=50_000))
    uri, err = items[-1]
    assert uri == str(shard) and isinstance(err, InputError) and err.kind == "decompressed_too_large"
    # the cap is per member, not per shard: ~160 KB in all, every member < 100 KB
    items = list(iter_structure_bytes(ref, max_decompressed_bytes=100_000))
    assert len(items) == 3 and all(isinstance(d, bytes) for _, d in items)


def test_tar_gz_bomb_member_is_stopped(tmp_path: Path) -> None:
    shard = tmp_path / "bomb.tar.gz"
    with tarfile.open(shard, "w:gz") as tf:
        _add(tf, "huge.pdb", b"\0" * (8 * 2**20))  # 8 MiB of zeros: a few KB compressed
        _add(tf, "after.pdb", b"ATOM")
    assert shard.stat().st_size < 100_000
    items = list(iter_structure_bytes(InputRef(str(shard), None, None, True), max_member_bytes=2**20,
                                      max_decompressed_bytes=2 * 2**20))
    assert [(u.rsplit("/", 1)[-1], getattr(d, "kind", None)) for u, d in items] == [
        ("bomb.tar.gz#huge.pdb", "member_too_large"),
        ("bomb.tar.gz", "decompressed_too_large"),
    ]


def test_truncated_and_empty_shards(tmp_path: Path, shared_data: Path) -> None:
    shard = tmp_path / "s.tar.gz"
    _make_shard(shard, shared_data, hostile=False)
    data = shard.read_bytes()
    cut = tmp_path / "cut.tar.gz"
    cut.write_bytes(data[: len(data) // 2])
    items = list(iter_structure_bytes(InputRef(str(cut), None, None, True)))
    uri, err = items[-1]
    assert uri == str(cut) and isinstance(err, InputError) and err.kind in ("truncated_tar", "corrupt_tar")
    assert all(isinstance(d, bytes) for _, d in items[:-1])

    empty = tmp_path / "empty.tar"
    with tarfile.open(empty, "w") as tf:
        _add(tf, "README.txt", b"x")
    ((uri, err),) = list(iter_structure_bytes(InputRef(str(empty), None, None, True)))
    assert err.kind == "no_structures_in_tar"  # type: ignore[union-attr]

    junk = tmp_path / "junk.tar"
    junk.write_bytes(b"this is not a tar file at all" * 40)
    ((uri, err),) = list(iter_structure_bytes(InputRef(str(junk), None, None, True)))
    assert isinstance(err, InputError) and err.kind == "corrupt_tar"


# ------------------------------------------------------------------------------------------
# S3 (moto server)


def test_s3_round_trip(s3_server, shared_data: Path, tmp_path: Path) -> None:  # noqa: ANN001
    bucket = s3_server.create_bucket()
    for rel in SOURCES:
        s3_server.put(bucket, f"afdb/{Path(rel).name}", (shared_data / rel).read_bytes())
    s3_server.put(bucket, "afdb/nested/deeper/O05012.cif.gz", (shared_data / SOURCES[1]).read_bytes())
    s3_server.put(bucket, "afdb/README.md", b"skip me")
    shard = tmp_path / "shard.tar"
    good = _make_shard(shard, shared_data)
    s3_server.put(bucket, "shards/shard.tar", shard.read_bytes())

    refs = list_inputs([f"s3://{bucket}/afdb/"])
    assert [r.uri for r in refs] == sorted(
        [f"s3://{bucket}/afdb/{Path(rel).name}" for rel in SOURCES] + [f"s3://{bucket}/afdb/nested/deeper/O05012.cif.gz"]
    )
    assert all(r.size and r.mtime_or_etag for r in refs)
    assert list_inputs([f"s3://{bucket}/afdb"]) == refs  # no trailing slash: same folder
    globbed = list_inputs([f"s3://{bucket}/afdb/*.pdb.gz"])
    assert [r.uri.rsplit("/", 1)[1] for r in globbed] == ["AF-A0A0A9LVA1-F1-model_v4.pdb.gz", "F4MNP7.pdb.gz"]

    for ref in refs:
        ((uri, data),) = list(iter_structure_bytes(ref))
        assert uri == ref.uri and isinstance(data, bytes)
        assert data == (shared_data / next(s for s in SOURCES if s.endswith(ref.uri.rsplit("/", 1)[1]))).read_bytes()
        assert parse_structure(data, uri).chains

    (tar_ref,) = list_inputs([f"s3://{bucket}/shards/"])
    assert tar_ref.is_tar
    got = dict(iter_structure_bytes(tar_ref))
    for name, data in good.items():
        assert got[f"s3://{bucket}/shards/shard.tar#{name}"] == data
    assert got[f"s3://{bucket}/shards/shard.tar#../escape.pdb"].kind == "unsafe_tar_member"

    with pytest.raises(InputError) as ei:
        list_inputs([f"s3://{bucket}/nothing-here/"])
    assert ei.value.kind == "not_found"


def test_s3_object_deleted_between_listing_and_reading(s3_server, shared_data: Path) -> None:  # noqa: ANN001
    bucket = s3_server.create_bucket()
    s3_server.put(bucket, "x/F4MNP7.pdb.gz", (shared_data / SOURCES[0]).read_bytes())
    s3_server.put(bucket, "x/shard.tar", b"\0" * 1024)
    specs = [f"s3://{bucket}/x/", f"s3://{bucket}/x/*.pdb.gz", f"s3://{bucket}/x/F4MNP7.pdb.gz"]
    refs = list_inputs([f"s3://{bucket}/x/"])
    assert len(refs) == 2
    assert all(list_inputs([spec]) for spec in specs)
    s3_server.delete(bucket, "x/F4MNP7.pdb.gz")
    s3_server.delete(bucket, "x/shard.tar")
    for ref in refs:
        ((uri, err),) = list(iter_structure_bytes(ref))
        assert uri == ref.uri
        assert isinstance(err, InputError) and err.kind == "not_found"
    # a fresh listing sees the deletion (no stale listing cache)
    for spec in specs:
        with pytest.raises(InputError) as ei:
            list_inputs([spec])
        assert ei.value.kind == "not_found"


def test_s3_settings_come_from_environment(s3_server, monkeypatch: pytest.MonkeyPatch) -> None:  # noqa: ANN001
    fs, path = filesystem_for("s3://some-bucket/key.pdb")
    assert path == "some-bucket/key.pdb"
    assert fs.endpoint_url == s3_server.endpoint_url
    fs2, _ = filesystem_for("s3://some-bucket/key.pdb", {"endpoint_url": "http://127.0.0.1:9"})
    assert fs2 is not fs and fs2.endpoint_url == "http://127.0.0.1:9"
    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://127.0.0.1:8")
    fs3, _ = filesystem_for("s3://some-bucket/key.pdb")
    assert fs3 is not fs and fs3.endpoint_url == "http://127.0.0.1:8"


def test_s3_errors_do_not_leak_secrets(s3_server, monkeypatch: pytest.MonkeyPatch) -> None:  # noqa: ANN001
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "SuperSecretValue123")
    ref = InputRef("s3://no-such-bucket-xyz/k.pdb", 10, None, False)
    ((_, err),) = list(iter_structure_bytes(ref))
    assert isinstance(err, InputError) and err.kind in ("not_found", "read_error")
    assert "SuperSecretValue123" not in str(err)


def test_s3_parquet_and_helpers(s3_server) -> None:  # noqa: ANN001
    bucket = s3_server.create_bucket()
    base = f"s3://{bucket}/out"
    write_parquet(pa.table({"a": [1, 2]}), join_uri(base, "t", "part-0.parquet"))
    write_parquet(pa.table({"a": [3], "b": ["x"]}), join_uri(base, "t", "part-1.parquet"))
    t = read_parquet_dataset(join_uri(base, "t"))
    assert t is not None and t.column("a").to_pylist() == [1, 2, 3]
    assert t.column("b").to_pylist() == [None, None, "x"]
    assert read_parquet_dataset(join_uri(base, "missing")) is None
    assert exists(join_uri(base, "t", "part-0.parquet")) and not exists(join_uri(base, "nope"))
    write_bytes(b"hello", join_uri(base, "x.txt"))
    assert read_bytes(join_uri(base, "x.txt")) == b"hello"


# ------------------------------------------------------------------------------------------
# local helpers


def test_list_files(tree: Path, s3_server) -> None:  # noqa: ANN001
    assert [Path(u).name for u in list_files(str(tree))] == ["a.pdb.gz", "d.MMCIF", "notes.txt"]
    assert [os.path.relpath(u, tree) for u in list_files(str(tree), suffix=".gz", recursive=True)] == [
        "a.pdb.gz",
        "sub/b.cif.gz",
    ]
    assert list_files(str(tree / "missing")) == []
    bucket = s3_server.create_bucket()
    for key in ("t/part-b.parquet", "t/part-a.parquet", "t/sub/x.parquet", "t/.tmp"):
        s3_server.put(bucket, key, b"x")
    assert list_files(f"s3://{bucket}/t") == [f"s3://{bucket}/t/part-a.parquet", f"s3://{bucket}/t/part-b.parquet"]
    assert len(list_files(f"s3://{bucket}/t/", recursive=True)) == 3
    assert list_files(f"s3://{bucket}/none") == []


def test_join_uri() -> None:
    assert join_uri("s3://b/prefix/", "fragments", "part-0.parquet") == "s3://b/prefix/fragments/part-0.parquet"
    assert join_uri("/tmp/out", "a", "/b/") == os.path.join("/tmp/out", "a", "b")
    assert join_uri("file:///tmp/out", "a") == "file:///tmp/out/a"


def test_local_parquet_atomic_write_and_dataset(tmp_path: Path) -> None:
    out = tmp_path / "res" / "tbl"
    write_parquet(pa.table({"a": [1]}), str(out / "part-0.parquet"))
    write_parquet(pa.table({"a": [2, 3]}), str(out / "part-1.parquet"))
    write_parquet(pa.table({"a": [9]}), str(out / "part-1.parquet"))  # overwrite in place
    (out / ".part-2.parquet.abc.tmp").write_bytes(b"partial")  # a crashed writer's temp file
    (out / "_SUCCESS").write_bytes(b"")
    assert sorted(p.name for p in out.iterdir() if not p.name.startswith((".", "_"))) == [
        "part-0.parquet",
        "part-1.parquet",
    ]
    t = read_parquet_dataset(str(out))
    assert t is not None and t.column("a").to_pylist() == [1, 9]
    assert read_parquet_dataset(str(out / "part-0.parquet")).num_rows == 1  # type: ignore[union-attr]
    (tmp_path / "empty").mkdir()
    assert read_parquet_dataset(str(tmp_path / "empty")) is None
    assert read_parquet_dataset(str(tmp_path / "nope")) is None
    assert exists(str(out)) and not exists(str(tmp_path / "nope"))


def test_local_write_failure_leaves_no_temp_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import rayfold.io.storage as rio

    class HalfWriter:  # opens the file, writes part of it, then the disk is full
        def __init__(self, where: str, schema: pa.Schema, **kw: object) -> None:
            Path(where).write_bytes(b"partial")

        def __enter__(self) -> HalfWriter:
            return self

        def __exit__(self, *exc: object) -> None:
            return None

        def write_table(self, table: pa.Table) -> None:
            raise OSError("disk full")

    monkeypatch.setattr(rio.pq, "ParquetWriter", HalfWriter)
    with pytest.raises(OSError):
        write_parquet(pa.table({"a": [1]}), str(tmp_path / "t.parquet"))
    assert list(tmp_path.iterdir()) == []


def test_dictionary_columns_are_written_plain_a_row_group_at_a_time(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import rayfold.io.storage as rio

    monkeypatch.setattr(rio, "ROW_GROUP_ROWS", 4)
    names = pa.array([f"f{i}" for i in range(10)])
    field = pa.field("rep", pa.string(), nullable=False)
    table = pa.Table.from_arrays(
        [names, pa.DictionaryArray.from_arrays(pa.array([0, 0, 2, 2, 2, 5, 5, 5, 5, 9], pa.int32()), names)],
        schema=pa.schema([pa.field("id", pa.string()), field.with_type(pa.dictionary(pa.int32(), pa.string()))],
                         metadata={"rayfold_table": "x"}))
    write_parquet(table, str(tmp_path / "t.parquet"))
    back = pq.ParquetFile(tmp_path / "t.parquet")
    assert back.metadata.num_row_groups == 3
    read = back.read()
    assert read.schema.field("rep") == field and read.schema.metadata == {b"rayfold_table": b"x"}
    assert read.column("rep").to_pylist() == ["f0", "f0", "f2", "f2", "f2", "f5", "f5", "f5", "f5", "f9"]
    write_parquet(table.slice(0, 0), str(tmp_path / "empty.parquet"))
    assert pq.read_table(tmp_path / "empty.parquet").schema.field("rep") == field
