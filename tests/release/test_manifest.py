"""Manifest bookkeeping and the input filter, on hand-made tables."""

from __future__ import annotations

import pyarrow as pa
import pytest

from rayfold.io.storage import InputRef
from rayfold.model import schema
from rayfold.model.errors import InputError
from rayfold.release import manifest as mf
from rayfold.release.inputfilter import EntryFilter, read_id_table, read_mmseqs_clusters


def row(uri, release, unit, size=10, tag="t1", sha="a"):
    return {"input_uri": uri, "source": "src", "size": size, "mtime_or_etag": tag, "content_sha256": sha,
            "unit_id": unit, "release": release, "structures": 1, "fragments": 1, "errors": 0}


def ref(uri, size=10, tag="t1"):
    return mf.SourcedRef(InputRef(uri, size, tag, False), "src")


MANIFEST = pa.Table.from_pylist(
    [row("a", 1, "u1"), row("b", 1, "u1"), row("b", 2, "u2", tag="t2", sha="b2"), row("c", 2, "u2", sha="c")],
    schema=schema.MANIFEST)


def test_diff_inputs_finds_new_and_changed_and_resumed_work():
    listed = [ref("a"), ref("b", tag="t2"), ref("c"), ref("d"), ref("a2")]
    diff = mf.diff_inputs(listed, MANIFEST, release=3)
    assert [s.ref.uri for s in diff.todo] == ["d", "a2"] and diff.done_in_release == []
    diff = mf.diff_inputs([ref("a", tag="t9"), ref("c")], MANIFEST, release=2)  # a resumed release 2
    assert [s.ref.uri for s in diff.todo] == ["a"] and diff.done_in_release == ["c"]


def test_superseded_rows_and_changed_content():
    assert mf.superseded(MANIFEST) == {"u1": {"b"}}
    assert mf.changed_content(MANIFEST, 2) == {"b"}
    touched = pa.Table.from_pylist([row("a", 1, "u1"), row("a", 2, "u2", tag="t2")], schema=schema.MANIFEST)
    assert mf.changed_content(touched, 2) == set()  # new mtime, same bytes


def test_withdrawals_leave_the_collection_and_can_come_back():
    gone = mf.withdrawals(["b", "c"], MANIFEST, release=3)
    assert gone.column("input_uri").to_pylist() == ["a"] and gone.column("withdrawn").to_pylist() == [True]
    assert mf.withdrawals(["b", "c"], pa.concat_tables([MANIFEST, gone]), release=3).equals(gone)  # a rerun
    after = pa.concat_tables([MANIFEST, gone])
    assert sorted(mf.current(after)) == ["b", "c"] and sorted(mf.newest(after)) == ["a", "b", "c"]
    assert mf.superseded(after) == {"u1": {"a", "b"}}  # its rows leave the unit's parts
    assert [s.ref.uri for s in mf.diff_inputs([ref("a")], after, release=4).todo] == ["a"]  # listed again: new
    assert mf.withdrawals(["a", "b", "c"], MANIFEST, release=3).num_rows == 0
    assert mf.changed_content(after, 3) == set()  # a withdrawal is not new content


def test_without_inputs_drops_tar_members_too():
    t = pa.table({"source_uri": ["x.tar#m1.pdb", "y.pdb", "x.tar#m2.pdb"], "v": [1, 2, 3]})
    assert mf.without_inputs(t, {"x.tar"}).column("v").to_pylist() == [2]


def test_id_table_and_mmseqs_filter(tmp_path):
    ids = tmp_path / "ids.tsv"
    ids.write_text("id\n# comment\nAF-A0A000-F1\tx\nMGYP000123\n")
    f = read_id_table(str(ids))
    assert f.keeps("A0A000") and f.keeps("whatever", accession="A0A000") and f.keeps("MGYP000123")
    assert not f.keeps("B0B000")
    clu = tmp_path / "clu.tsv"
    clu.write_text("P1\tP1\nP1\tP2\nP3\tP3\n")
    g = read_mmseqs_clusters(str(clu))
    assert g.ids == frozenset({"P1", "P2"})
    (tmp_path / "bad.tsv").write_text("P1 P2\n")
    with pytest.raises(InputError):
        read_mmseqs_clusters(str(tmp_path / "bad.tsv"))
    with pytest.raises(InputError):
        EntryFilter.from_ids(["", " "])
