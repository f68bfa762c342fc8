"""rayfold.analytics.report (and rayfold.analytics.plots): analytics tables, PNGs and the self-contained HTML page.

Small hand-made run folders give exact expectations; one module-scoped fixture runs the real
`rayfold fragment` + `rayfold cluster` commands on examples/afdb; the page is also rendered in
headless Chromium when /usr/bin/chromium is installed.
"""

from __future__ import annotations

import base64
import os
import shutil
import struct
import subprocess
import sys
import tempfile
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from rayfold.analytics.report import build_report, chain_maps, write_analytics
from rayfold.analytics.sampling import SamplingConfig
from rayfold.io import storage as io
from rayfold.io.runfolder import RunFolder
from rayfold.model import schema

REPO_ROOT = Path(__file__).resolve().parents[2]
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
FIGURES = ("cluster_sizes", "sampling_gamma", "cluster_cohesion", "fragment_distributions", "fragment_maps")
CHROMIUM = "/usr/bin/chromium"

# Chain P1 (a plain file that no longer exists: the map falls back to fragment pLDDT) has three
# fragments, chain P2 (a tar member) two, chain P3 none. Clusters: {P1_f1, P2_f1} and {P1_f2}.
P1_URI = "/nonexistent/inputs/P1.cif.gz"
SHARD = "s3://bucket/shards/shard-7.tar"
P2_URI = f"{SHARD}#P2.cif"
FRAGMENT_SPECS = [
    # fragment_id, entry, source, residue_index, passed, fail_reason
    ("P1_f1", "P1", P1_URI, list(range(50)), True, None),
    ("P1_f2", "P1", P1_URI, list(range(60, 100)) + list(range(110, 116)), True, None),
    ("P1_f3", "P1", P1_URI, list(range(100, 106)), False, "few_contacts"),
    ("P2_f1", "P2", P2_URI, list(range(40)), True, None),
    ("P2_f2", "P2", P2_URI, list(range(45, 80)), False, "low_mean_plddt"),
]
P1_LINKERS = [50, 51, 52, 53]


def _plddt(index: list[int]) -> list[float]:
    return [float(70 + (i % 25)) for i in index]


def _fragments() -> pa.Table:
    rows = []
    for n, (fid, entry, uri, index, passed, reason) in enumerate(FRAGMENT_SPECS):
        plddt = _plddt(index)
        rows.append({
            "fragment_id": fid, "entry_id": entry, "chain_id": "A", "accession": entry, "source_uri": uri,
            "fragment_index": n, "n_residues": len(index), "n_segments": 1, "chopping": f"{index[0] + 1}-{index[-1] + 1}",
            "sequence": "A" * len(index), "states_3di": None, "residue_index": index, "plddt": plddt,
            "ca_coords": [[float(i), 0.0, 0.0] for i in index], "mean_plddt": float(np.mean(plddt)),
            "radius_of_gyration": 10.0, "rg_ratio": 1.0, "contact_density": 1.0, "passed": passed,
            "fail_reason": reason,
        })
    return pa.Table.from_pylist(rows, schema=schema.FRAGMENTS)


def _chains() -> pa.Table:
    rows = [
        ("P1", P1_URI, 120, 3, P1_LINKERS), ("P2", P2_URI, 80, 2, []), ("P3", "/nonexistent/inputs/P3.pdb", 60, 0, []),
    ]
    return pa.Table.from_pylist([
        {"entry_id": e, "chain_id": "A", "accession": e, "source_uri": u, "n_residues": n, "n_usable": n,
         "n_fragments": k, "n_dropped_short": 0, "mean_plddt": 80.0, "plddt_source": "b_factor", "linker_index": li}
        for e, u, n, k, li in rows
    ], schema=schema.CHAINS)


def _tables(*, manifest: bool = True) -> dict[str, pa.Table]:
    members = {"P1_f1": "P1_f1", "P2_f1": "P1_f1", "P1_f2": "P1_f2"}
    tables = {
        "fragments": _fragments(),
        "chains": _chains(),
        "members": pa.table({"fragment_id": list(members), "cluster_id": list(members.values()),
                             "first_pass_cluster_id": list(members.values())}, schema=schema.MEMBERS),
        "clusters": pa.table({"cluster_id": ["P1_f1", "P1_f2"], "representative_id": ["P1_f1", "P1_f2"],
                              "size": [2, 1], "n_first_pass_clusters": [1, 1], "min_length": [90, 120],
                              "max_length": [95, 120], "cohesion_sampled": [1, 0], "cohesion_min_tm": [0.81, None],
                              "cohesion_median_tm": [0.81, None]}, schema=schema.CLUSTERS),
        "singleton_audit": pa.table({"fragment_id": ["P1_f2"], "component_id": ["P1_f2"], "component_size": [1]},
                                    schema=schema.SINGLETON_AUDIT),
        "merges": schema.MERGES.empty_table(),
        "errors": pa.table({"source_uri": ["/nonexistent/inputs/bad.cif"], "stage": ["parse"],
                            "error_kind": ["no_atoms"], "message": ["mmcif: no models/atoms <b>"]},
                           schema=schema.ERRORS),
    }
    if manifest:
        tables["manifest"] = pa.Table.from_pylist([
            {"input_uri": P1_URI, "source": "/nonexistent/inputs/", "size": 1, "mtime_or_etag": "1",
             "content_sha256": "x", "unit_id": "u1", "release": 1, "structures": 1, "fragments": 3, "errors": 0},
            {"input_uri": SHARD, "source": "s3://bucket/shards/", "size": 1, "mtime_or_etag": "1",
             "content_sha256": "y", "unit_id": "u2", "release": 1, "structures": 1, "fragments": 2, "errors": 0},
        ], schema=schema.MANIFEST)
    return tables


def _write_out(out: str, *, manifest: bool = True, storage_options: dict | None = None) -> str:
    for name, table in _tables(manifest=manifest).items():
        io.write_parquet(table, io.join_uri(out, name, "part-0.parquet"), storage_options)
    return out


class _Page(HTMLParser):
    """Collects <img> attributes, element ids, script/link tags and table cells by table id."""

    def __init__(self) -> None:
        super().__init__()
        self.images: list[dict[str, str]] = []
        self.ids: set[str] = set()
        self.external: list[str] = []
        self.tables: dict[str, list[list[str]]] = {}
        self._table: str | None = None
        self._cell: list[str] | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = {k: v or "" for k, v in attrs}
        if "id" in a:
            self.ids.add(a["id"])
        if tag == "img":
            self.images.append(a)
        if tag in ("script", "link", "iframe") and (a.get("src") or a.get("href")):
            self.external.append(a.get("src") or a.get("href") or "")
        if tag == "table":
            self._table = a.get("id", "")
            self.tables[self._table] = []
        elif tag == "tr" and self._table is not None:
            self.tables[self._table].append([])
        elif tag in ("td", "th") and self._table is not None:
            self._cell = []

    def handle_endtag(self, tag: str) -> None:
        if tag in ("td", "th") and self._cell is not None and self._table is not None:
            self.tables[self._table][-1].append("".join(self._cell).strip())
            self._cell = None
        elif tag == "table":
            self._table = None

    def handle_data(self, data: str) -> None:
        if self._cell is not None:
            self._cell.append(data)


def _parse(html_text: str) -> _Page:
    page = _Page()
    page.feed(html_text)
    return page


def _png_size(data: bytes) -> tuple[int, int]:
    assert data[:8] == PNG_MAGIC
    return struct.unpack(">II", data[16:24])


def _stats_cells(page: _Page) -> dict[str, list[str]]:
    rows = page.tables["stats-table"]
    return {row[0]: row[1:] for row in rows}


# --------------------------------------------------------------------------------------------
# hand-made run folders


@pytest.fixture(scope="module")
def hand_made(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict]:
    """A hand-made run folder after `write_analytics` (gamma 0.5, seed 3): (folder, summary)."""
    out = tmp_path_factory.mktemp("hand_made") / "run"
    summary = write_analytics(_write_out(str(out)), sampling=SamplingConfig(gamma=0.5, seed=3))
    return out, summary


def test_write_analytics_writes_tables_pngs_and_a_self_contained_page(hand_made: tuple[Path, dict]):
    run, summary = hand_made
    assert summary["scopes"] == ["all", "/nonexistent/inputs/", "s3://bucket/shards/"]
    assert (summary["clustered_fragments"], summary["clusters"], summary["multi_member_clusters"]) == (3, 2, 1)
    # sizes 2 and 1 at gamma 0.5: p = sqrt2/(sqrt2+1), 1/(sqrt2+1)
    p = np.array([np.sqrt(2), 1.0]) / (np.sqrt(2) + 1)
    assert summary["effective_clusters"] == pytest.approx(1 / float(p @ p), abs=1e-12)
    assert summary["effective_clusters_multi_member"] == pytest.approx(1.0, abs=1e-12)

    stats = {r["scope"]: r for r in pq.read_table(run / "stats").to_pylist()}
    assert (stats["all"]["fragments"], stats["all"]["clusters"], stats["all"]["singletons"]) == (5, 2, 1)
    assert stats["all"]["largest_cluster"] == 2 and stats["all"]["fragments_in_multi_member"] == 2
    local = stats["/nonexistent/inputs/"]  # P1_f1's cluster has one fragment of this source
    assert (local["fragments"], local["clustered_fragments"], local["clusters"], local["singletons"]) == (3, 2, 2, 2)
    assert local["top100_share"] is None
    assert stats["s3://bucket/shards/"]["fragments"] == 2
    assert stats["all"]["singleton_audit"] == "0 of 1 sampled singletons in 0 components, largest 1"

    sampling = pq.read_table(run / "sampling")
    assert sampling.num_rows == 22  # 11 gammas x 2 populations
    weights = pq.read_table(run / "weights")
    w = dict(zip(weights.column("fragment_id").to_pylist(), weights.column("weight").to_pylist(), strict=True))
    assert w == pytest.approx({"P1_f1": p[0] / 2, "P2_f1": p[0] / 2, "P1_f2": p[1]}, abs=1e-12)

    report = run / "report"
    assert summary["report"] == str(report / "index.html")
    html_text = (report / "index.html").read_text()
    page = _parse(html_text)
    assert page.external == []
    assert "http://" not in html_text and "https://" not in html_text
    assert {"stats-table", "sampling-table", "clusters-table", "members-table", "errors-table",
            "sample-table"} <= page.ids
    assert [img["data-name"] for img in page.images] == list(FIGURES)
    for img in page.images:
        assert img["src"].startswith("data:image/png;base64,")
        data = base64.b64decode(img["src"].split(",", 1)[1], validate=True)
        assert data == (report / f"{img['data-name']}.png").read_bytes()
        width, height = _png_size(data)
        assert width > 600 and height > 300
    cells = _stats_cells(page)
    assert cells["statistic"][:3] == ["all", "/nonexistent/inputs/", "s3://bucket/shards/"]
    assert cells["clusters"][:3] == ["2", "2", "1"]
    assert cells["top100_share"][:3] == ["100.00%", "-", "-"]
    # escaped, not interpreted
    assert "no models/atoms &lt;b&gt;" in html_text
    assert page.tables["members-table"][1][:2] == ["P1_f1", "P1_f1"]  # the largest cluster's members first

    assert "sample-table" in page.ids and "seed 3" in html_text


def test_write_analytics_again_replaces_every_table(tmp_path: Path):
    out = _write_out(str(tmp_path / "run"))
    first = write_analytics(out)
    tables = {name: pq.read_table(tmp_path / "run" / name) for name in ("stats", "sampling", "weights")}
    again = write_analytics(out)
    assert again["scopes"] == first["scopes"]
    for name, table in tables.items():  # no duplicated rows, one part file each
        assert pq.read_table(tmp_path / "run" / name).equals(table)
        assert [f.name for f in (tmp_path / "run" / name).iterdir()] == ["part-0.parquet"]


def test_chain_maps_fall_back_to_the_fragments_plddt(tmp_path: Path):
    out = _write_out(str(tmp_path / "run"))
    maps = chain_maps(out)
    assert [m.title.split()[0] for m in maps] == ["P1", "P2"]  # most fragments first, P3 has none
    p1 = maps[0]
    assert not p1.full_track and p1.n_residues == 120
    assert p1.linker_index.tolist() == P1_LINKERS
    assert [f[0] for f in p1.fragments] == ["P1_f1", "P1_f2", "P1_f3"]
    assert [f[2] for f in p1.fragments] == [True, True, False]
    covered = sorted(i for spec in FRAGMENT_SPECS[:3] for i in spec[3])
    assert p1.plddt[covered].tolist() == _plddt(covered)
    assert np.isnan(p1.plddt[P1_LINKERS]).all() and np.isnan(p1.plddt[106:110]).all()
    assert "3 fragments (2 passed), 4 linker residues" in p1.title


def test_build_report_on_older_output_without_manifest_or_analytics(tmp_path: Path):
    out = _write_out(str(tmp_path / "run"), manifest=False)
    uri = build_report(out)
    assert uri == str(tmp_path / "run" / "report" / "index.html")
    page = _parse(Path(uri).read_text())
    assert _stats_cells(page)["statistic"] == ["all", "meaning"]
    assert "sampling-table" in page.ids and "sample-table" not in page.ids  # no weights written yet
    assert len(page.images) == len(FIGURES)
    for name in ("stats", "sampling", "weights"):  # rebuilding the page writes no tables
        assert not (tmp_path / "run" / name).exists()


def test_write_analytics_on_s3(s3_server):
    bucket = s3_server.create_bucket()
    out = _write_out(f"s3://{bucket}/runs/r1")
    summary = write_analytics(out, sampling=SamplingConfig(gamma=0.25))
    assert summary["report"] == f"s3://{bucket}/runs/r1/report/index.html"
    assert io.exists(summary["report"])
    stats = RunFolder(out).table("stats")
    assert stats.column("scope").to_pylist() == ["all", "/nonexistent/inputs/", "s3://bucket/shards/"]
    page = _parse(io.read_bytes(summary["report"]).decode())
    assert len(page.images) == len(FIGURES)
    for name in FIGURES:
        assert io.read_bytes(f"s3://{bucket}/runs/r1/report/{name}.png")[:8] == PNG_MAGIC
    # rebuilding only the page keeps the tables and shows the stored gamma (added to the grid)
    assert build_report(out) == summary["report"]
    rows = _parse(io.read_bytes(summary["report"]).decode()).tables["sampling-table"]
    assert rows[0][:2] == ["gamma", "population"]
    assert sorted({float(r[0]) for r in rows[1:]}) == sorted({*(round(0.1 * i, 1) for i in range(11)), 0.25})
    assert RunFolder(out).table("weights").column("gamma").unique().to_pylist() == [0.25]


# --------------------------------------------------------------------------------------------
# the real commands on examples/afdb


def _rayfold_argv() -> list[str]:
    script = Path(sys.executable).parent / "rayfold"
    return [str(script)] if script.exists() else [sys.executable, "-m", "rayfold.cli"]


@pytest.fixture(scope="module")
def real_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """`rayfold fragment examples/afdb` + `rayfold cluster` (no singleton audit), then analytics."""
    out = tmp_path_factory.mktemp("real") / "run"
    ray_tmp = tempfile.mkdtemp(prefix="rf-ray-", dir="/tmp")
    env = {**os.environ, "RAY_TMPDIR": ray_tmp, "RAY_AUTH_MODE": "disabled"}
    env.pop("RAY_ADDRESS", None)
    try:
        for args in (["fragment", str(REPO_ROOT / "examples" / "afdb"), "--out", str(out), "--no-progress"],
                     ["cluster", str(out), "--out", str(out), "--set", "singleton_sample=0", "--no-progress"]):
            proc = subprocess.run([*_rayfold_argv(), *args], env=env, capture_output=True, text=True,
                                  timeout=300, check=False)
            assert proc.returncode == 0, proc.stderr[-3000:]
    finally:
        shutil.rmtree(ray_tmp, ignore_errors=True)
    write_analytics(str(out))
    return out


def test_real_run_statistics_agree_with_the_cluster_tables(real_run: Path):
    stats = pq.read_table(real_run / "stats").to_pylist()
    assert [r["scope"] for r in stats] == ["all"]  # the older commands write no manifest
    row = stats[0]
    fragments = pq.read_table(real_run / "fragments", columns=["fragment_id", "passed"])
    sizes = np.array(pq.read_table(real_run / "clusters").column("size").to_pylist())
    multi = np.sort(sizes[sizes >= 2])[::-1]
    assert row["fragments"] == fragments.num_rows
    assert row["clustered_fragments"] == sum(fragments.column("passed").to_pylist()) == sizes.sum()
    assert (row["clusters"], row["singletons"], row["largest_cluster"]) == (len(sizes), (sizes == 1).sum(), sizes.max())
    assert (row["multi_member_clusters"], row["fragments_in_multi_member"]) == (len(multi), multi.sum())
    weights = pq.read_table(real_run / "weights")
    assert weights.num_rows == row["clustered_fragments"]
    assert sum(weights.column("weight").to_pylist()) == pytest.approx(1.0, abs=1e-9)
    maps = chain_maps(str(real_run))
    assert len(maps) == 3 and all(m.full_track for m in maps)  # pLDDT re-read from the example files
    n_frags = [len(m.fragments) for m in maps]
    chains = pq.read_table(real_run / "chains", columns=["n_fragments"]).column("n_fragments").to_pylist()
    assert n_frags == sorted(chains, reverse=True)[:3]
    for name in FIGURES:
        assert _png_size((real_run / "report" / f"{name}.png").read_bytes())[0] > 600


# --------------------------------------------------------------------------------------------
# a real browser


def _chromium(args: list[str], profile: Path) -> subprocess.CompletedProcess:
    flags = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
             "--disable-background-networking", "--disable-component-update", "--disable-sync",
             f"--user-data-dir={profile}"]
    return subprocess.run([CHROMIUM, *flags, *args], capture_output=True, text=True, timeout=120, check=False)


@pytest.mark.skipif(not os.path.exists(CHROMIUM), reason="needs Debian's chromium (/usr/bin/chromium)")
@pytest.mark.parametrize("which", ["hand_made", "real"])
def test_page_renders_in_headless_chromium(which: str, tmp_path: Path, request: pytest.FixtureRequest):
    run = request.getfixturevalue("real_run" if which == "real" else "hand_made")
    index = (run if which == "real" else run[0]) / "report" / "index.html"
    url = index.as_uri()
    dom = _chromium(["--dump-dom", url], tmp_path / "profile-dom")
    assert dom.returncode == 0, dom.stderr[-2000:]
    page = _parse(dom.stdout)
    assert "stats-table" in page.ids and _stats_cells(page)["statistic"][0] == "all"
    assert len(page.images) == len(FIGURES)
    for img in page.images:
        assert "data-error" not in img, img["data-name"]
        assert img["src"].startswith("data:image/png;base64,")
        width, _ = _png_size(base64.b64decode(img["src"].split(",", 1)[1]))
        assert int(img.get("data-natural-width", "0")) == width, img["data-name"]  # decoded by the browser
    shot = tmp_path / "page.png"
    done = _chromium([f"--screenshot={shot}", "--window-size=1200,2000", url], tmp_path / "profile-shot")
    assert done.returncode == 0, done.stderr[-2000:]
    assert _png_size(shot.read_bytes()) == (1200, 2000)
