"""rayfold.engines.foldseek: command lines, parsing of real Foldseek output, subprocess plumbing.

Real Foldseek is not installable on our machines: the integration tests run only when
`find_foldseek()` finds one; the plumbing is exercised end to end with a fake `foldseek` script.
"""

from __future__ import annotations

import gzip
import json
import re
import stat
import sys
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import pytest

from conftest import SHARED_DATA
from rayfold.engines.foldseek import (
    ALIGNMENT_DB_COLUMNS,
    CLUSTER_ARGS,
    SEARCH_COLUMNS,
    EntryNames,
    FoldseekDatabase,
    FoldseekError,
    cluster_argv,
    createdb_argv,
    createtsv_argv,
    find_foldseek,
    foldseek_entry_name,
    foldseek_version,
    normalize_cluster_pairs,
    parse_cluster_tsv,
    parse_search_tsv,
    run_cluster,
    run_search,
    search_argv,
    structure_files,
    structure_stem,
)

FOLDSEEK_DATA = SHARED_DATA / "foldseek"
REAL = FOLDSEEK_DATA / "real_foldseek_outputs"
SCOP = FOLDSEEK_DATA / "foldseek_example_scop"
FOLD_TREE = FOLDSEEK_DATA / "fold_tree_testdata"
SEED = SHARED_DATA.parent / "seeds" / "000_725105346f4c0b0b.txt"

# The columns of the real easy-search outputs (real_foldseek_outputs/PROVENANCE.md).
REAL_SEARCH_COLUMNS = (
    "query,target,fident,alnlen,qstart,qend,qlen,tstart,tend,tlen,evalue,bits,prob,alntmscore,"
    "qtmscore,ttmscore,lddt"
)
# The method's parameters as written in the method's Foldseek command.
METHOD_FLAGS = {
    "-c": "0.8", "--cov-mode": "0", "--tmscore-threshold": "0.7", "--tmscore-threshold-mode": "1",
    "--lddt-threshold": "0.6", "--max-seqs": "2000", "-e": "0.001", "--alignment-type": "2",
    "--cluster-reassign": "1",
}  # fmt: skip

needs_data = pytest.mark.skipif(not REAL.is_dir(), reason=f"shared Foldseek data not at {REAL}")


def flag_pairs(tokens: list[str]) -> dict[str, str]:
    """{flag: value} of a list of `--flag value` tokens; fails on repeats or a dangling token."""
    assert len(tokens) % 2 == 0, tokens
    out: dict[str, str] = {}
    for flag, value in zip(tokens[::2], tokens[1::2], strict=True):
        assert flag.startswith("-") and not value.startswith("--"), (flag, value)
        assert flag not in out, f"{flag} given twice"
        out[flag] = value
    return out


def stems(folder: Path) -> set[str]:
    return {structure_stem(p.name) for p in folder.iterdir() if p.name != "PROVENANCE.md"}


# ---------------------------------------------------------------------------------------------
# Command lines


def test_cluster_args_are_exactly_the_methods_parameters():
    assert flag_pairs(list(CLUSTER_ARGS)) == METHOD_FLAGS


@pytest.mark.skipif(not SEED.is_file(), reason="method text not available")
def test_cluster_args_match_the_method_command_text():
    text = SEED.read_text(errors="replace")
    block = text[text.rindex("$FOLDSEEK cluster") :]
    block = block[: block.index("Citation")] if "Citation" in block else block
    tokens = [t.strip('"') for t in block.replace("\\\n", " ").split() if t != "\\"]
    assert tokens[:5] == ["$FOLDSEEK", "cluster", "$DB_DIR/fragDB", "$DB_DIR/fragCluDB", "$TMP_DIR"]
    flags = flag_pairs(tokens[5:])
    assert flags.pop("--threads") == "$THREADS"
    assert flags.pop("-v") == "2"
    assert flags == flag_pairs(list(CLUSTER_ARGS))


def test_cluster_argv():
    argv = cluster_argv("/opt/fs/foldseek", "work/db", "work/clu", "work/tmp", threads=4)
    assert argv[:5] == ["/opt/fs/foldseek", "cluster", "work/db", "work/clu", "work/tmp"]
    assert flag_pairs(argv[5:]) == {**METHOD_FLAGS, "--threads": "4", "-v": "2"}
    with pytest.raises(ValueError):
        cluster_argv("foldseek", "db", "clu", "tmp", threads=0)


def test_createdb_and_createtsv_argv():
    assert createdb_argv("foldseek", "frags/", "db", 2) == [
        "foldseek", "createdb", "frags/", "db", "--threads", "2", "-v", "2",
    ]  # fmt: skip
    assert createtsv_argv("foldseek", "db", "clu", "clu.tsv", 3) == [
        "foldseek", "createtsv", "db", "db", "clu", "clu.tsv", "--threads", "3", "-v", "2",
    ]  # fmt: skip


def test_search_argv():
    argv = search_argv("foldseek", "reps", "reps", "out.m8", "tmp", 2)
    assert argv[:6] == ["foldseek", "easy-search", "reps", "reps", "out.m8", "tmp"]
    flags = flag_pairs(argv[6:])
    assert flags == {
        "--threads": "2", "-v": "2", "--alignment-type": "1", "-e": "10", "--format-mode": "0",
        "--format-output": ",".join(SEARCH_COLUMNS),
    }  # fmt: skip
    assert set(flags["--format-output"].split(",")) >= {
        "query", "target", "evalue", "alntmscore", "qtmscore", "ttmscore", "lddt", "prob", "qcov", "tcov",
    }  # fmt: skip
    argv = search_argv("foldseek", "q", "t", "o", "tmp", alignment_type=2, exhaustive=True, evalue=0.001,
                       columns=("query", "target", "alntmscore"))  # fmt: skip
    flags = flag_pairs(argv[6:])
    assert flags["--exhaustive-search"] == "1"
    assert flags["--alignment-type"] == "2"
    assert flags["-e"] == "0.001"
    assert flags["--format-output"] == "query,target,alntmscore"
    with pytest.raises(ValueError):
        search_argv("foldseek", "q", "t", "o", "tmp", alignment_type=5)


# ---------------------------------------------------------------------------------------------
# Entry names


def test_foldseek_entry_name_follows_createdb():
    assert foldseek_entry_name("dir/x.pdb") == "x"
    assert foldseek_entry_name("x.pdb.gz") == "x"
    assert foldseek_entry_name("AF-A0A010R3W2-F1-model_v3.cif.gz") == "AF-A0A010R3W2-F1-model_v3"
    assert foldseek_entry_name("x.cif.zst") == "x"
    assert foldseek_entry_name("a.b_f1.pdb") == "a.b_f1"
    assert foldseek_entry_name("d1asha_") == "d1asha_"
    assert structure_stem("frags/P12345_f3.pdb") == "P12345_f3"
    assert structure_stem("a.b_f1.pdb.gz") == "a.b_f1"


def test_entry_names_map_chain_model_and_old_style_names_back():
    names = EntryNames(["1tim.pdb.gz", "8tim.pdb.gz", "d1asha_.pdb.gz", "P1_f1.pdb", "P1_f12.pdb",
                        "x_A.pdb", "x.pdb", "AF-Q-F1-model_v4.cif.gz"])  # fmt: skip
    cases = {
        "1tim_A": "1tim",  # current Foldseek, multi-chain file
        "1tim_B": "1tim",
        "1tim.pdb.gz_A": "1tim",  # Foldseek 2022 (file name kept, chain appended)
        "1tim.pdb.gz": "1tim",
        "d1asha_": "d1asha_",  # ids may end in '_'
        "d1asha__A": "d1asha_",
        "d1asha_ MYOGLOBIN (title)": "d1asha_",  # full header: only the first word counts
        "P1_f1": "P1_f1",
        "P1_f12": "P1_f12",
        "P1_f1_B": "P1_f1",
        "P1_f1_MODEL_2_A": "P1_f1",
        "P1_f1.pdb": "P1_f1",
        "x_A": "x_A",  # exact id wins over a chain suffix of 'x'
        "x_B": "x",
        "AF-Q-F1-model_v4": "AF-Q-F1-model_v4",
        "AF-Q-F1-model_v4_A": "AF-Q-F1-model_v4",
    }
    assert {k: names(k) for k in cases} == cases
    for bad in ("P2_f1", "tim_A", "", "P1"):
        assert names.get(bad) is None
        with pytest.raises(FoldseekError, match="matches none"):
            names(bad)
    with pytest.raises(FoldseekError, match="two structure files"):
        EntryNames(["x.pdb", "x.cif.gz"])


# ---------------------------------------------------------------------------------------------
# Parsing real Foldseek output


def check_cluster_table(pairs: list[tuple[str, str]], ids: set[str]) -> dict[str, list[str]]:
    """Every id exactly once as a member; each representative is a member of its own cluster."""
    members = Counter(m for _, m in pairs)
    assert set(members) == ids
    assert max(members.values()) == 1
    clusters: dict[str, list[str]] = {}
    for rep, mem in pairs:
        clusters.setdefault(rep, []).append(mem)
    assert all(rep in mems for rep, mems in clusters.items())
    return clusters


@needs_data
@pytest.mark.parametrize(
    "name, folder, n_members, n_clusters, sizes",
    [
        ("myco", SHARED_DATA / "afdb_mycoplasma_mycoides_pdb" / "structures", 191, 176, [4, 3, 3, 3, 3, 3, 2, 2]),
        ("pf", SHARED_DATA / "afdb_pf04034_knotted_mmcif_v3" / "structures", 96, 62, [12, 9, 7, 5, 3, 3, 2, 1]),
    ],
)  # fmt: skip
def test_parse_real_cluster_tsv(name, folder, n_members, n_clusters, sizes):
    files = sorted(p.name for p in folder.iterdir())
    assert len(files) == n_members
    raw = parse_cluster_tsv(REAL / f"{name}_cluster.tsv")  # names as Foldseek wrote them
    assert len(raw) == n_members
    pairs = parse_cluster_tsv(REAL / f"{name}_cluster.tsv", files)  # mapped to file stems
    assert pairs == raw  # single-chain files: Foldseek's names are the stems already
    clusters = check_cluster_table(pairs, {structure_stem(f) for f in files})
    assert len(clusters) == n_clusters
    assert sorted(map(len, clusters.values()), reverse=True)[: len(sizes)] == sizes
    assert normalize_cluster_pairs(pairs, stems(folder)) == sorted(pairs)


@needs_data
def test_parse_real_cluster_tsv_with_multichain_files():
    files = sorted(p.name for p in SCOP.glob("*.pdb.gz"))
    assert len(files) == 28
    raw = parse_cluster_tsv(REAL / "scop_cluster.tsv")
    assert len(raw) == 30  # 1tim and 8tim have chains A and B: 30 entries
    assert {m for _, m in raw} >= {"1tim_A", "1tim_B", "8tim_A", "8tim_B"}
    assert len({r for r, _ in raw}) == 5
    raw_clusters: dict[str, set[str]] = {}
    for rep, mem in raw:
        raw_clusters.setdefault(rep, set()).add(mem)
    assert raw_clusters["8tim_B"] == {"8tim_B", "8tim_A", "1tim_A", "1tim_B"}  # the TIM barrels
    assert sorted(map(len, raw_clusters.values())) == [1, 1, 4, 9, 15]

    pairs = parse_cluster_tsv(REAL / "scop_cluster.tsv", files)
    assert ("8tim", "1tim") in pairs and ("8tim", "8tim") in pairs
    assert len(pairs) == 28  # the repeated (8tim, 1tim) / (8tim, 8tim) pairs dropped
    clusters = check_cluster_table(normalize_cluster_pairs(pairs, stems(SCOP)), stems(SCOP))
    assert sorted(map(len, clusters.values())) == [1, 1, 2, 9, 15]
    assert set(clusters["d1b0ba_"]) >= {"d1mbaa_", "d1ecaa_", "d2nrla_"}  # globins
    assert set(clusters["d3mkbb_"]) >= {"d2gdma_", "d1cg5a_", "d1cg5b_"}


@needs_data
@pytest.mark.parametrize(
    "name, n_hits, n_structures",
    [("myco", 10_497, 191), ("pf", 9_211, 96), ("scop", 872, 30)],
)
def test_parse_real_easy_search_output(name, n_hits, n_structures):
    hits = parse_search_tsv(REAL / f"{name}_search.m8.gz", REAL_SEARCH_COLUMNS)
    assert len(hits) == n_hits
    queries = {h.query for h in hits}
    assert len(queries) == n_structures
    assert {h.target for h in hits} == queries
    selfhits = {h.query: h for h in hits if h.query == h.target}
    assert len(selfhits) == n_structures  # exhaustive search finds every self-hit
    for h in selfhits.values():
        assert h.qstart == 1 and h.qend == h.qlen == h.alnlen == h.tlen  # 1-based, whole chain
        assert h.fident == 1.0 and h.prob == 1.0
        assert 0.99 <= h.alntmscore <= 1.1 and h.qtmscore == pytest.approx(1.0, abs=1e-3)
    for h in hits:
        assert 0 <= h.prob <= 1 and 0 <= h.lddt <= 1 and h.evalue >= 0
        assert 1 <= h.qstart <= h.qend <= h.qlen and 1 <= h.tstart <= h.tend <= h.tlen
        assert h.min_tm == min(h.qtmscore, h.ttmscore)
    # Foldseek's approximate alignment TM-score can exceed 1 (PROVENANCE: 1.004 for 1tim_B)
    assert max(h.alntmscore for h in hits) > 1.0
    if name == "scop":
        assert selfhits["1tim_B"].alntmscore == pytest.approx(1.004)
        first = hits[1]
        assert (first.query, first.target, first.alnlen, first.evalue, first.bits) == (
            "1tim_B", "8tim_B", 247, 2.170e-43, 1554.0,
        )  # fmt: skip
        assert (first.prob, first.alntmscore, first.qtmscore, first.ttmscore, first.lddt) == (
            1.0, 0.9861, 0.9821, 0.9821, 0.8768,
        )  # fmt: skip


@needs_data
@pytest.mark.parametrize("name", ["myco", "pf", "scop"])
def test_real_cluster_pairs_pass_the_methods_thresholds_in_the_search(name):
    """Cross-check of both parsers and of the threshold's meaning: every representative -> member
    pair of the cluster run is an all-vs-all hit whose TM-score normalised by the representative
    (query) length passes 0.7 (--tmscore-threshold-mode 1) and whose LDDT passes 0.6; normalised
    by the member's length it need not."""
    hits = {(h.query, h.target): h for h in parse_search_tsv(REAL / f"{name}_search.m8.gz", REAL_SEARCH_COLUMNS)}
    pairs = [(r, m) for r, m in parse_cluster_tsv(REAL / f"{name}_cluster.tsv") if r != m]
    assert pairs
    for rep, mem in pairs:
        h = hits[(rep, mem)]
        assert h.qtmscore > 0.7 and h.lddt > 0.6, (rep, mem, h)
    assert min(hits[p].ttmscore for p in pairs) < 0.7


@needs_data
def test_parse_real_alignment_db_tsv_of_fold_tree():
    """Raw `createtsv` of a `foldseek search -a` alignment DB; 2022 Foldseek kept '.pdb' in names."""
    path = FOLD_TREE / "structaln_score.tsv"
    assert "O73683.pdb\tO73683.pdb" in path.read_text()
    files = sorted(p.name for p in (FOLD_TREE / "structures").iterdir())
    hits = parse_search_tsv(path, ALIGNMENT_DB_COLUMNS, files)
    assert len(hits) == 450
    ids = {structure_stem(f) for f in files}
    assert len(ids) == 23
    assert {h.query for h in hits} == {h.target for h in hits} == ids
    lengths = {}
    with open(FOLD_TREE / "manifest.tsv") as f:
        next(f)
        for line in f:
            cols = line.split("\t")
            lengths[structure_stem(cols[0])] = int(cols[1])
    for h in hits:
        assert (h.qlen, h.tlen) == (lengths[h.query], lengths[h.target])
        assert 0 <= h.qstart <= h.qend < h.qlen  # 0-based in this form
        assert 0 <= h.fident <= 1
        assert re.fullmatch(r"(\d+[MID])+", h.extra["cigar"])
    self_hit = next(h for h in hits if h.query == h.target == "O73683")
    assert (self_hit.bits, self_hit.fident, self_hit.evalue, self_hit.qend, self_hit.qlen) == (5309, 1.0, 0.0, 779, 780)
    assert self_hit.alntmscore is None  # no TM-score column in this form


def test_parse_search_tsv_text_header_and_errors():
    text = "query\ttarget\talntmscore\nq1.pdb\tt1_A\t1.004E+00\nq1.pdb\tt2\tinf\n"
    hits = parse_search_tsv(text, "query,target,alntmscore", ["q1.pdb", "t1.pdb", "t2.cif.gz"])
    assert [(h.query, h.target) for h in hits] == [("q1", "t1"), ("q1", "t2")]
    assert hits[0].alntmscore == 1.004 and hits[1].alntmscore == float("inf")
    assert hits[0].qtmscore is None and hits[0].min_tm is None
    with pytest.raises(FoldseekError, match="2 fields for 3 columns"):
        parse_search_tsv("a\tb\n", "query,target,lddt")
    with pytest.raises(FoldseekError, match="not a number"):
        parse_search_tsv("a\tb\tx\n", "query,target,lddt")
    with pytest.raises(ValueError):
        parse_search_tsv("a\tb\n", "query,lddt")
    assert parse_search_tsv("", SEARCH_COLUMNS) == []


def test_parse_cluster_tsv_from_text_bytes_and_gzip(tmp_path):
    text = "a.pdb\ta.pdb\na.pdb\tb.pdb\n\nc.pdb\tc.pdb\n"
    expected = [("a", "a"), ("a", "b"), ("c", "c")]
    assert parse_cluster_tsv(text) == expected
    gz = tmp_path / "clu.tsv.gz"
    gz.write_bytes(gzip.compress(text.encode()))
    assert parse_cluster_tsv(gz) == expected
    assert parse_cluster_tsv(str(gz)) == expected
    assert parse_cluster_tsv(text.encode()) == expected
    with pytest.raises(FoldseekError, match="expected 2"):
        parse_cluster_tsv("a\tb\tc\n")
    with pytest.raises(FileNotFoundError):
        parse_cluster_tsv(str(tmp_path / "missing.tsv"))


def test_normalize_cluster_pairs():
    # x has chains in two clusters; y's representative x_B collapses to x, which lives under z.
    pairs = [("z", "z"), ("z", "x"), ("x", "x"), ("x", "y"), ("w", "w")]
    assert normalize_cluster_pairs(pairs, ["w", "x", "y", "z", "v"]) == [
        ("v", "v"), ("w", "w"), ("z", "x"), ("z", "y"), ("z", "z"),
    ]  # fmt: skip
    # a cycle resolves to its smallest id
    assert normalize_cluster_pairs([("b", "a"), ("a", "b")]) == [("a", "a"), ("a", "b")]


# ---------------------------------------------------------------------------------------------
# The subprocess plumbing, end to end with a fake `foldseek`

FAKE = r'''
import json, os, shutil, sys
from pathlib import Path

argv = sys.argv[1:]
with open(os.environ["FAKE_FOLDSEEK_LOG"], "a") as f:
    f.write(json.dumps({"argv": sys.argv, "cwd": os.getcwd()}) + "\n")
cmd = argv[0] if argv else ""
if cmd == os.environ.get("FAKE_FOLDSEEK_FAIL"):
    print("some progress on stdout")
    sys.stderr.write("line 1\nError: fake failure in %s\n" % cmd)
    sys.exit(3)
skip_output = cmd == os.environ.get("FAKE_FOLDSEEK_NO_OUTPUT")
if cmd == os.environ.get("FAKE_FOLDSEEK_HANG"):  # hang, with a child process, like a workflow
    import subprocess, time
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"])
    Path(os.environ["FAKE_FOLDSEEK_LOG"] + ".child").write_text(str(child.pid))
    time.sleep(120)
if cmd == "version":
    print("10.fake0")
elif cmd == "createdb":
    src, db = Path(argv[1]), Path(argv[2])
    assert src.is_absolute() and src.is_dir(), src
    names = sorted(p.name for p in src.iterdir())
    if not skip_output:
        db.write_text(json.dumps(names))
        Path(str(db) + ".index").write_text("")
        Path(str(db) + ".lookup").write_text("".join(
            "%d\t%s\t0\n" % (k, n.split(".")[0]) for k, n in enumerate(names)))
elif cmd == "createsubdb":
    keys, db, out = argv[1:4]
    names = json.loads(Path(db).read_text())
    Path(out).write_text(json.dumps([names[int(k)] for k in Path(keys).read_text().split()]))
    Path(out + ".index").write_text("")
elif cmd == "search":
    q, t, aln, tmp = argv[1:5]
    assert Path(tmp).is_dir() and Path(q + ".index").exists() and Path(t + ".index").exists()
    (Path(tmp) / "12345").mkdir()
    Path(aln).write_text(Path(q).read_text() + Path(t).read_text())
    Path(aln + ".index").write_text("")
elif cmd == "convertalis":
    q, t, aln, out = argv[1:5]
    assert Path(aln + ".index").exists()
    if not skip_output:
        shutil.copyfile(os.environ["FAKE_FOLDSEEK_M8"], out)
elif cmd == "cluster":
    db, clu, tmp = map(Path, argv[1:4])
    if not tmp.is_dir():
        sys.stderr.write("Error: tmp folder %s missing\n" % tmp)
        sys.exit(1)
    (tmp / "12345").mkdir()
    (tmp / "12345" / "pref").write_text("x")
    tsv = Path(os.environ["FAKE_FOLDSEEK_TSV"]).read_text()
    if not skip_output:
        clu.write_text(tsv)
        Path(str(clu) + ".index").write_text("")
elif cmd == "createtsv":
    db, db2, clu, out = argv[1:5]
    assert db == db2
    if not skip_output:
        shutil.copyfile(clu, out)
elif cmd == "easy-search":
    q, t, out, tmp = argv[1:5]
    assert Path(tmp).is_dir() and Path(q).is_dir() and Path(t).is_dir()
    if not skip_output:
        shutil.copyfile(os.environ["FAKE_FOLDSEEK_M8"], out)
else:
    sys.stderr.write("unknown command %r\n" % cmd)
    sys.exit(1)
'''


@dataclass
class FakeFoldseek:
    path: Path
    log: Path

    def __str__(self) -> str:
        return str(self.path)

    def calls(self) -> list[dict]:
        """argv and working folder of every call so far."""
        return [json.loads(line) for line in self.log.read_text().splitlines()] if self.log.exists() else []


@pytest.fixture
def fake_foldseek(tmp_path, monkeypatch):
    bindir = tmp_path / "bin"
    bindir.mkdir()
    exe = bindir / "foldseek"
    exe.write_text(f"#!{sys.executable}\n{FAKE}")
    exe.chmod(exe.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)
    log = tmp_path / "calls.jsonl"
    monkeypatch.setenv("FAKE_FOLDSEEK_LOG", str(log))
    for var in ("FAIL", "NO_OUTPUT", "HANG", "TSV", "M8"):
        monkeypatch.delenv(f"FAKE_FOLDSEEK_{var}", raising=False)

    return FakeFoldseek(exe, log)


@pytest.fixture
def fragments(tmp_path) -> Path:
    d = tmp_path / "structures"
    d.mkdir()
    for name in ("P1_f1.pdb", "P1_f2.pdb", "P2_f1.pdb", "P3_f1.pdb"):
        (d / name).write_text("ATOM\n")
    return d


def test_find_foldseek(fake_foldseek, tmp_path, monkeypatch):
    assert find_foldseek(str(fake_foldseek)) == str(fake_foldseek.path.resolve())
    monkeypatch.setenv("PATH", str(fake_foldseek.path.parent))
    assert find_foldseek() == str(fake_foldseek.path.resolve())
    assert find_foldseek("foldseek") == str(fake_foldseek.path.resolve())
    empty = tmp_path / "empty"
    empty.mkdir()
    monkeypatch.setenv("PATH", str(empty))
    assert find_foldseek() is None
    with pytest.raises(FoldseekError, match="does not exist"):
        find_foldseek(str(tmp_path / "nowhere" / "foldseek"))
    plain = tmp_path / "plain"
    plain.write_text("not a program")
    plain.chmod(0o644)
    with pytest.raises(FoldseekError, match="not executable"):
        find_foldseek(str(plain))
    assert foldseek_version(str(fake_foldseek)) == "10.fake0"


def test_run_cluster_with_fake_foldseek(fake_foldseek, fragments, tmp_path, monkeypatch):
    tsv = tmp_path / "canned.tsv"
    # P1_f2 comes back with a chain suffix and a title; P3_f1 is missing (Foldseek skipped it).
    tsv.write_text("P1_f1\tP1_f1\nP1_f1\tP1_f2_A some title\nP2_f1\tP2_f1\n")
    monkeypatch.setenv("FAKE_FOLDSEEK_TSV", str(tsv))
    work = tmp_path / "work"
    kept = tmp_path / "out" / "clu.tsv"
    pairs = run_cluster(str(fake_foldseek), fragments, work, threads=3, keep_tsv=kept)
    assert pairs == [("P1_f1", "P1_f1"), ("P1_f1", "P1_f2"), ("P2_f1", "P2_f1"), ("P3_f1", "P3_f1")]
    assert kept.read_text() == tsv.read_text()
    calls = fake_foldseek.calls()
    assert [c["argv"][1] for c in calls] == ["createdb", "cluster", "createtsv"]
    run_dir = Path(calls[0]["cwd"])
    assert run_dir.parent == work and all(Path(c["cwd"]) == run_dir for c in calls)
    assert calls[0]["argv"][1:] == ["createdb", str(fragments.resolve()), "db", "--threads", "3", "-v", "2"]
    assert calls[1]["argv"][1:5] == ["cluster", "db", "clu", "tmp"]
    assert flag_pairs(calls[1]["argv"][5:]) == {**METHOD_FLAGS, "--threads": "3", "-v": "2"}
    assert calls[2]["argv"][1:] == ["createtsv", "db", "db", "clu", "clu.tsv", "--threads", "3", "-v", "2"]
    assert list(work.iterdir()) == []  # the per-run folder (db, clu, tmp) is gone


def test_run_cluster_failure_names_command_and_stderr(fake_foldseek, fragments, tmp_path, monkeypatch):
    monkeypatch.setenv("FAKE_FOLDSEEK_TSV", str(tmp_path / "unused"))
    monkeypatch.setenv("FAKE_FOLDSEEK_FAIL", "cluster")
    work = tmp_path / "work"
    with pytest.raises(FoldseekError) as e:
        run_cluster(str(fake_foldseek), fragments, work)
    msg = str(e.value)
    assert "exit code 3" in msg and " cluster db clu tmp " in msg and "--tmscore-threshold 0.7" in msg
    assert "Error: fake failure in cluster" in msg
    assert e.value.returncode == 3 and e.value.argv[1] == "cluster"
    assert [c["argv"][1] for c in fake_foldseek.calls()] == ["createdb", "cluster"]
    assert list(work.iterdir()) == []


def test_run_cluster_missing_output_and_unknown_names(fake_foldseek, fragments, tmp_path, monkeypatch):
    tsv = tmp_path / "canned.tsv"
    tsv.write_text("P1_f1\tP1_f1\n")
    monkeypatch.setenv("FAKE_FOLDSEEK_TSV", str(tsv))
    monkeypatch.setenv("FAKE_FOLDSEEK_NO_OUTPUT", "createtsv")
    with pytest.raises(FoldseekError, match="wrote no clu.tsv"):
        run_cluster(str(fake_foldseek), fragments, tmp_path / "w1")
    monkeypatch.delenv("FAKE_FOLDSEEK_NO_OUTPUT")
    tsv.write_text("P1_f1\tP1_f1\nP1_f1\tQ9_f1\n")
    with pytest.raises(FoldseekError, match="'Q9_f1' matches none"):
        run_cluster(str(fake_foldseek), fragments, tmp_path / "w2")
    assert list((tmp_path / "w2").iterdir()) == []
    with pytest.raises(FoldseekError, match="no structure files"):
        run_cluster(str(fake_foldseek), tmp_path / "w2", tmp_path / "w3")
    with pytest.raises(FoldseekError, match="cannot run"):
        run_cluster(str(tmp_path / "no-such-foldseek"), fragments, tmp_path / "w4")


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split(")")[-1].split()[0] != "Z"  # a zombie is dead
    except FileNotFoundError:
        return False


def test_run_cluster_timeout_kills_the_whole_process_group(fake_foldseek, fragments, tmp_path, monkeypatch):
    monkeypatch.setenv("FAKE_FOLDSEEK_HANG", "cluster")
    monkeypatch.setenv("FAKE_FOLDSEEK_TSV", str(tmp_path / "unused"))
    work = tmp_path / "work"
    t0 = time.monotonic()
    with pytest.raises(FoldseekError, match="timed out after 2"):
        run_cluster(str(fake_foldseek), fragments, work, timeout=2)
    assert time.monotonic() - t0 < 20
    child = Path(str(fake_foldseek.log) + ".child")
    pid = int(child.read_text())  # the hanging command's own child was killed with it
    deadline = time.monotonic() + 10
    while _alive(pid) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not _alive(pid)
    assert list(work.iterdir()) == []


def test_run_search_with_fake_foldseek(fake_foldseek, fragments, tmp_path, monkeypatch):
    m8 = tmp_path / "canned.m8"
    rows = [
        ("P1_f1", "P1_f1", "1.000E+00", "100", "1.000E+00", "1.000E+00", "1.000E+00", "1.000", "1.000", "1.000",
         "1.000", "80", "80", "80", "1.000"),
        ("P1_f1", "P2_f1_A", "7.500E-01", "75", "7.600E-01", "7.500E-01", "7.400E-01", "0.700", "0.990", "0.950",
         "0.930", "80", "82", "76", "0.210"),
    ]  # fmt: skip
    m8.write_text("".join("\t".join(r) + "\n" for r in rows))
    monkeypatch.setenv("FAKE_FOLDSEEK_M8", str(m8))
    work = tmp_path / "work"
    hits = run_search(str(fake_foldseek), fragments, fragments, work, threads=2, exhaustive=True)
    assert [(h.query, h.target) for h in hits] == [("P1_f1", "P1_f1"), ("P1_f1", "P2_f1")]
    h = hits[1]
    scores = (h.qtmscore, h.ttmscore, h.min_tm, h.lddt, h.prob, h.qcov, h.tcov)
    assert scores == (0.75, 0.74, 0.74, 0.7, 0.99, 0.95, 0.93)
    assert (h.qlen, h.tlen, h.alnlen, h.fident, h.evalue, h.bits) == (80, 82, 76, 0.21, 0.75, 75.0)
    (call,) = fake_foldseek.calls()
    assert call["argv"][1:6] == ["easy-search", str(fragments.resolve()), str(fragments.resolve()), "hits.tsv", "tmp"]
    flags = flag_pairs(call["argv"][6:])
    assert flags["--alignment-type"] == "1" and flags["--exhaustive-search"] == "1" and flags["-e"] == "10"
    assert flags["--threads"] == "2" and flags["--format-output"] == ",".join(SEARCH_COLUMNS)
    assert list(work.iterdir()) == []


def test_database_is_made_once_and_stages_search_subsets(fake_foldseek, fragments, tmp_path, monkeypatch):
    """One createdb; each search subsets it by key (one subset when queries and targets are the same
    set) and runs search + convertalis with easy-search's defaults; each call cleans up after itself."""
    m8 = tmp_path / "canned.m8"
    m8.write_text("P1_f1\tP2_f1_A\nP2_f1\tP1_f1\n")
    monkeypatch.setenv("FAKE_FOLDSEEK_M8", str(m8))
    tsv = tmp_path / "canned.tsv"
    tsv.write_text("P1_f1\tP1_f1\nP1_f1\tP2_f1\n")
    monkeypatch.setenv("FAKE_FOLDSEEK_TSV", str(tsv))
    work = tmp_path / "work"
    with FoldseekDatabase.create(str(fake_foldseek), fragments, work, threads=2) as db:
        made = sorted(p.name for p in db.folder.iterdir())
        hits = db.search(["P2_f1", "P1_f1"], ["P1_f1", "P2_f1"], columns=("query", "target"))
        assert [(h.query, h.target) for h in hits] == [("P1_f1", "P2_f1"), ("P2_f1", "P1_f1")]
        assert sorted(p.name for p in db.folder.iterdir()) == made  # the call's files are gone
        m8.write_text("P1_f1\tP3_f1\t0.61\n")
        (hit,) = db.search(["P1_f1"], ["P2_f1", "P3_f1"], columns=("query", "target", "alntmscore"))
        assert (hit.target, hit.alntmscore) == ("P3_f1", 0.61)
        assert db.cluster(["P1_f1", "P2_f1", "P3_f1"]) == [("P1_f1", "P1_f1"), ("P1_f1", "P2_f1"),
                                                          ("P3_f1", "P3_f1")]
        folder = db.folder
    assert not folder.exists() and list(work.iterdir()) == []
    calls = [c["argv"][1:] for c in fake_foldseek.calls()]
    assert [c[0] for c in calls] == ["createdb", "createsubdb", "search", "convertalis",
                                     "createsubdb", "createsubdb", "search", "convertalis",
                                     "createsubdb", "cluster", "createtsv"]
    assert calls[1] == ["createsubdb", "queries.list", "db", "queries", "--id-mode", "0", "-v", "2"]
    assert calls[2][:5] == ["search", "queries", "queries", "aln", "tmp"]
    flags = flag_pairs(calls[2][5:])
    assert flags == {"--threads": "2", "-v": "2", "--alignment-type": "1", "-e": "10", "-k": "6"}
    assert calls[3] == ["convertalis", "queries", "queries", "aln", "hits.tsv", "--threads", "2", "-v", "2",
                        "--format-mode", "0", "--format-output", "query,target"]
    assert calls[6][:5] == ["search", "queries", "targets", "aln", "tmp"]
    assert flag_pairs(calls[6][5:])["-a"] == "1"  # alntmscore needs the alignment's backtrace
    assert calls[9][1:4] == ["members", "clu", "tmp"] and calls[10][1:5] == ["members", "members", "clu", "clu.tsv"]
    assert [c["argv"][1] for c in fake_foldseek.calls()].count("createdb") == 1


def test_database_search_failure_cleans_up_and_names_the_command(fake_foldseek, fragments, tmp_path, monkeypatch):
    monkeypatch.setenv("FAKE_FOLDSEEK_FAIL", "search")
    with FoldseekDatabase.create(str(fake_foldseek), fragments, tmp_path / "work") as db:
        made = sorted(p.name for p in db.folder.iterdir())
        with pytest.raises(FoldseekError, match="exit code 3.* search queries targets aln tmp"):
            db.search(["P1_f1"], ["P2_f1"])
        assert sorted(p.name for p in db.folder.iterdir()) == made
        with pytest.raises(FoldseekError, match=r"1 structures are not in the Foldseek database, e.g. \['Q9_f1'\]"):
            db.search(["Q9_f1"], ["P2_f1"])


# ---------------------------------------------------------------------------------------------
# Real Foldseek (only where one is installed)

_FOLDSEEK = find_foldseek()
needs_foldseek = pytest.mark.skipif(_FOLDSEEK is None, reason="foldseek not on PATH")
GLOBINS = ["d1mbaa_", "d1asha_", "d2gdma_", "d1b0ba_", "d1hlba_", "d3mkbb_", "d1ecaa_"]


def _globin_pdbs(dest: Path) -> Path:
    dest.mkdir()
    for name in GLOBINS:
        with gzip.open(SCOP / f"{name}.pdb.gz", "rb") as f:
            (dest / f"{name}.pdb").write_bytes(f.read())
    return dest


@needs_foldseek
@needs_data
def test_real_foldseek_cluster_and_search(tmp_path):
    assert foldseek_version(_FOLDSEEK)
    structures = _globin_pdbs(tmp_path / "structures")
    work = tmp_path / "work"
    pairs = run_cluster(_FOLDSEEK, structures, work, threads=2)
    clusters = check_cluster_table(pairs, set(GLOBINS))
    assert 1 <= len(clusters) <= len(GLOBINS)
    assert list(work.iterdir()) == []
    hits = run_search(_FOLDSEEK, structures, structures, work, threads=2, alignment_type=1)
    selfhits = {h.query: h for h in hits if h.query == h.target}
    assert set(selfhits) == set(GLOBINS)
    assert all(h.qtmscore == pytest.approx(1.0, abs=0.01) for h in selfhits.values())
    assert list(work.iterdir()) == []


@needs_foldseek
@needs_data
def test_real_foldseek_accepts_ca_only_pdb(tmp_path):
    """A C-alpha-only copy (real residue names) is read (backbone rebuilt with PULCHRA) and
    clusters with its all-atom original."""
    gemmi = pytest.importorskip("gemmi")
    structures = _globin_pdbs(tmp_path / "structures")
    st = gemmi.read_structure(str(structures / "d1mbaa_.pdb"))
    st.remove_hydrogens()
    for model in st:
        for chain in model:
            for res in chain:
                for i in reversed(range(len(res))):
                    if res[i].name != "CA":
                        del res[i]
    st.remove_empty_chains()
    ca_only = structures / "d1mbaa__ca.pdb"
    st.write_minimal_pdb(str(ca_only))
    assert all(line[12:16].strip() == "CA" for line in ca_only.read_text().splitlines() if line.startswith("ATOM"))
    pairs = run_cluster(_FOLDSEEK, structures, tmp_path / "work", threads=2)
    rep_of = {m: r for r, m in pairs}
    assert set(rep_of) == set(GLOBINS) | {"d1mbaa__ca"}
    assert rep_of["d1mbaa__ca"] == rep_of["d1mbaa_"]


@needs_foldseek
@needs_data
@pytest.mark.parametrize("name, folder", [("pf", SHARED_DATA / "afdb_pf04034_knotted_mmcif_v3" / "structures"),
                                          ("scop", SCOP)])
def test_real_foldseek_cluster_gives_the_recorded_clustering(name, folder, tmp_path):
    """`run_cluster`'s command lines on the recorded inputs give the recorded clustering, pair for
    pair (real_foldseek_outputs: the method's parameters, Foldseek commit d5b1d3d)."""
    files = sorted(p.name for p in structure_files(folder))
    recorded = normalize_cluster_pairs(parse_cluster_tsv(REAL / f"{name}_cluster.tsv", files), stems(folder))
    assert run_cluster(_FOLDSEEK, folder, tmp_path / "work", threads=2) == recorded


@needs_foldseek
@needs_data
def test_real_foldseek_exhaustive_search_gives_the_recorded_hits(tmp_path):
    """`run_search` with the recorded options (3Di+AA, exhaustive, -e 10) finds the recorded hits."""
    hits = run_search(_FOLDSEEK, SCOP, SCOP, tmp_path / "work", threads=2, alignment_type=2, exhaustive=True)
    recorded = parse_search_tsv(REAL / "scop_search.m8.gz", REAL_SEARCH_COLUMNS, sorted(p.name for p in SCOP.iterdir()))
    assert {(h.query, h.target) for h in hits} == {(h.query, h.target) for h in recorded}
    assert len(hits) >= 400

def test_ca_only_pdb_for_foldseek_has_only_ca_atoms_and_real_names():
    import gemmi
    import numpy as np

    from rayfold.engines.foldseek import write_ca_pdb

    coords = np.arange(15, dtype=float).reshape(5, 3) * 1.5
    structure = gemmi.read_pdb_string(write_ca_pdb(coords, "MKWGX").decode())
    residues = list(structure[0][0])
    assert [r.name for r in residues] == ["MET", "LYS", "TRP", "GLY", "UNK"]
    assert all(len(r) == 1 and r[0].name == "CA" for r in residues)
    np.testing.assert_allclose([r[0].pos.tolist() for r in residues], coords, atol=1e-3)


@needs_foldseek
@needs_data
def test_real_database_subset_search_finds_what_easy_search_finds(tmp_path):
    """Searches on subsets of one database give easy-search's hits on folders of the same files
    (TM-align alignment, -e 10, as the audits run it), and the whole database's exhaustive search
    the recorded hits."""
    folder = SHARED_DATA / "afdb_pf04034_knotted_mmcif_v3" / "structures"
    files = structure_files(folder)
    queries, targets = files[::2], files[::3]
    for part, chosen in (("queries", queries), ("targets", targets)):
        (tmp_path / part).mkdir()
        for f in chosen:
            (tmp_path / part / f.name).symlink_to(f)
    columns = ("query", "target")
    by_folder = run_search(_FOLDSEEK, tmp_path / "queries", tmp_path / "targets", tmp_path / "w1", threads=2,
                           columns=columns)
    with FoldseekDatabase.create(_FOLDSEEK, folder, tmp_path / "w2", threads=2) as db:
        hits = db.search([structure_stem(f) for f in queries], [structure_stem(f) for f in targets], columns=columns)
        assert {(h.query, h.target) for h in hits} == {(h.query, h.target) for h in by_folder}
        assert len(hits) > len(queries)
        same = run_search(_FOLDSEEK, tmp_path / "queries", tmp_path / "queries", tmp_path / "w1", threads=2,
                          columns=columns)
        hits = db.search([structure_stem(f) for f in queries], [structure_stem(f) for f in queries], columns=columns)
        assert {(h.query, h.target) for h in hits} == {(h.query, h.target) for h in same}
    with FoldseekDatabase.create(_FOLDSEEK, SCOP, tmp_path / "w3", threads=2) as db:
        hits = db.search(alignment_type=2, exhaustive=True, columns=columns)
    recorded = parse_search_tsv(REAL / "scop_search.m8.gz", REAL_SEARCH_COLUMNS, sorted(p.name for p in SCOP.iterdir()))
    assert {(h.query, h.target) for h in hits} == {(h.query, h.target) for h in recorded}
