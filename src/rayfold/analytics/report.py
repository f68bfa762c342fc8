"""Analytics of a run folder and its one-page HTML report.

`write_analytics` computes and replaces ``OUT/stats/``, ``OUT/sampling/`` and ``OUT/weights/`` and
then builds the report; `build_report` only rebuilds ``OUT/report/`` (``index.html`` and the PNGs)
from the tables already there. The page is self-contained: figures are embedded as base64 data
URIs, CSS is inline and the only script is a few inline lines (each <img> records its decoded width
in ``data-natural-width``, so a headless browser's DOM dump shows the figures decoded). Nothing is
fetched from the network, so the page opens from object storage or an air-gapped laptop alike.

Large tables are read column-projected (`rayfold.io.runfolder.RunFolder.table`): the report never loads the
per-residue coordinate lists, and the fragment maps read only the rows of the chains they draw.
"""

from __future__ import annotations

import base64
import dataclasses
import datetime as _dt
import html
import json
import logging
import string
import time
from collections.abc import Sequence
from dataclasses import dataclass
from importlib import resources
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from rayfold.analytics import plots
from rayfold.analytics.sampling import (
    DEFAULT_SAMPLING,
    SamplingConfig,
    draw_sample,
    gamma_table,
    write_sampling,
)
from rayfold.analytics.stats import (
    ALL_SCOPE,
    FRAGMENT_STAT_COLUMNS,
    cluster_sizes,
    cluster_sizes_by_scope,
    compute_stats,
    read_stats,
    write_stats,
)
from rayfold.config import FragmentConfig
from rayfold.io import storage as io
from rayfold.io.runfolder import RunFolder
from rayfold.model import schema

__all__ = ["build_report", "chain_maps", "render_html", "write_analytics"]

log = logging.getLogger(__name__)

HEAD_ROWS = 15
N_EXAMPLE_CHAINS = 3
FRAGMENT_REPORT_COLUMNS = ("fragment_id", "source_uri", "passed", "n_residues", "mean_plddt")
FRAGMENT_MAP_COLUMNS = ("fragment_id", "entry_id", "chain_id", "fragment_index", "residue_index", "plddt",
                        "passed", "fail_reason")
CHAIN_COLUMNS = ("entry_id", "chain_id", "source_uri", "n_residues", "n_fragments", "linker_index")


@dataclass(frozen=True)
class ReportFigure:
    """One report figure: file name, caption, PNG bytes."""

    name: str
    caption: str
    png: bytes


# --------------------------------------------------------------------------------------------
# HTML (pure)

# the page's skeleton and style; figures, tables and notes are filled in (string.Template, $-fields)
PAGE_TEMPLATE = "report.html"

_STAT_MEANING = {
    "fragments": "fragment rows made (passed and failed)",
    "clustered_fragments": "fragments in the clustering (passed)",
    "clusters": "clusters (in a source: clusters with a fragment of it)",
    "singletons": "clusters of one fragment",
    "multi_member_clusters": "clusters of two or more fragments",
    "fragments_in_multi_member": "fragments in those clusters",
    "largest_cluster": "fragments in the largest cluster",
    "top100_share": "share of multi-member fragments in the 100 largest clusters",
    "top1000_share": "share of multi-member fragments in the 1,000 largest clusters",
    "singleton_audit_sampled": "N: singletons sampled and searched against each other",
    "singleton_audit_linked": "X: of those, in a hidden component of two or more",
    "singleton_audit_components": "K: hidden components",
    "singleton_audit_largest": "M: largest component",
    "singleton_audit": "summary",
}


def _cell(name: str, value: Any) -> tuple[str, bool]:
    """(text, is_number) for one table cell."""
    if value is None:
        return "-", False
    if isinstance(value, bool):
        return str(value), False
    if isinstance(value, (int, np.integer)):
        return f"{int(value):,}", True
    if isinstance(value, (float, np.floating)):
        if name.endswith(("_share", "_mass")):
            return f"{100.0 * float(value):.2f}%", True
        if name == "weight":
            return f"{float(value):.4g}", True
        return f"{float(value):,.4g}" if abs(float(value)) < 1e4 else f"{float(value):,.1f}", True
    if isinstance(value, list):
        text = ", ".join(str(v) for v in value[:8]) + (", ..." if len(value) > 8 else "")
        return f"[{text}]", False
    text = str(value)
    return (text if len(text) <= 160 else text[:157] + "..."), False


def _html_table(table: pa.Table, table_id: str, *, max_rows: int | None = None) -> str:
    """An HTML table of (the head of) `table`, escaped, numbers right-aligned."""
    shown = table if max_rows is None else table.slice(0, max_rows)
    head = "".join(f"<th>{html.escape(n)}</th>" for n in shown.column_names)
    body = []
    for row in shown.to_pylist():
        cells = []
        for name in shown.column_names:
            text, num = _cell(name, row[name])
            cells.append(f'<td class="num">{html.escape(text)}</td>' if num else f"<td>{html.escape(text)}</td>")
        body.append("<tr>" + "".join(cells) + "</tr>")
    more = ""
    if max_rows is not None and table.num_rows > max_rows:
        more = f'<p class="note">first {max_rows:,} of {table.num_rows:,} rows</p>'
    elif table.num_rows == 0:
        more = '<p class="note">(no rows)</p>'
    return (f'<div class="scroll"><table id="{html.escape(table_id)}"><thead><tr>{head}</tr></thead>'
            f"<tbody>{''.join(body)}</tbody></table></div>{more}")


def _stats_html(stats: pa.Table) -> str:
    """Statistics transposed: one row per statistic, one column per scope (sources can be long URIs)."""
    rows = stats.to_pylist()
    head = "<th>statistic</th>" + "".join(f"<th>{html.escape(str(r['scope']))}</th>" for r in rows) + "<th>meaning</th>"
    body = []
    for field in schema.STATS:
        name = field.name
        if name == "scope" or name not in stats.column_names:
            continue
        cells = []
        for r in rows:
            text, num = _cell(name, r[name])
            cells.append(f'<td class="num">{html.escape(text)}</td>' if num else f"<td>{html.escape(text)}</td>")
        meaning = html.escape(_STAT_MEANING.get(name, ""))
        body.append(f"<tr><th>{html.escape(name)}</th>{''.join(cells)}<td class=\"note\">{meaning}</td></tr>")
    return (f'<div class="scroll"><table id="stats-table"><thead><tr>{head}</tr></thead>'
            f"<tbody>{''.join(body)}</tbody></table></div>")


def render_html(
    *,
    title: str,
    out: str,
    stats: pa.Table,
    figures: Sequence[ReportFigure],
    sections: Sequence[tuple[str, str, str]],
    summary: str = "",
) -> str:
    """The whole page: statistics, figures (embedded PNGs), then (heading, note, html) sections."""
    now = _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    figure_html = []
    for fig in figures:
        data = base64.b64encode(fig.png).decode("ascii")
        figure_html.append(
            f'<figure id="fig-{html.escape(fig.name)}"><img src="data:image/png;base64,{data}" '
            f'alt="{html.escape(fig.caption)}" data-name="{html.escape(fig.name)}" '
            'onload="this.setAttribute(\'data-natural-width\', this.naturalWidth)" '
            'onerror="this.setAttribute(\'data-error\', \'1\')">'
            f"<figcaption>{html.escape(fig.caption)}</figcaption></figure>"
        )
    section_html = []
    for heading, note, body in sections:
        anchor = "".join(c if c.isalnum() else "-" for c in heading.lower()).strip("-")
        section_html.append(f'<h2 id="{html.escape(anchor)}">{html.escape(heading)}</h2>')
        if note:
            section_html.append(f'<p class="note">{html.escape(note)}</p>')
        section_html.append(body)
    page = string.Template((resources.files("rayfold.analytics") / PAGE_TEMPLATE).read_text(encoding="utf-8"))
    return page.substitute(
        title=html.escape(title), out=html.escape(out), generated=now, schema_version=schema.SCHEMA_VERSION,
        summary=f"<p>{html.escape(summary)}</p>" if summary else "", stats=_stats_html(stats),
        figures="\n".join(figure_html), sections="\n".join(section_html))


# --------------------------------------------------------------------------------------------
# fragment maps


def _chain_plddt_from_file(source_uri: str, chain_id: str, n_residues: int,
                           storage_options: dict[str, Any] | None) -> np.ndarray | None:
    """The chain's full pLDDT track from its structure file (plain files only), or None."""
    if "#" in source_uri:
        return None  # a tar member: finding it means streaming the shard; use fragment residues only
    try:
        from rayfold.io.structure import parse_structure

        entry = parse_structure(io.read_bytes(source_uri, storage_options), source_uri, source_uri=source_uri)
    except Exception as exc:  # noqa: BLE001 - the file may be gone or unreadable: fall back
        log.info("fragment map: %s not re-read (%s)", source_uri, exc)
        return None
    for chain in entry.chains:
        if chain.chain_id == chain_id and len(chain.plddt) == n_residues:
            return np.asarray(chain.plddt, dtype=np.float64)
    return None


def chain_maps(
    out: str,
    *,
    chains: pa.Table | None = None,
    n: int = N_EXAMPLE_CHAINS,
    storage_options: dict[str, Any] | None = None,
) -> list[plots.ChainMap]:
    """`plots.ChainMap`s of the `n` chains with the most fragments (ties: more linker residues, then id).

    The pLDDT track is re-read from the structure file when it is a plain file that is still there,
    else it shows the fragments' own residues.
    """
    if chains is None:
        chains = RunFolder(out, storage_options).table("chains", columns=CHAIN_COLUMNS)
    if chains is None or chains.num_rows == 0:
        return []
    rows = [r for r in chains.select(list(CHAIN_COLUMNS)).to_pylist() if r["n_fragments"] > 0]
    rows.sort(key=lambda r: (-r["n_fragments"], -len(r["linker_index"] or []), r["entry_id"], r["chain_id"]))
    chosen = rows[:n]
    if not chosen:
        return []
    entries = sorted({r["entry_id"] for r in chosen})
    frags = RunFolder(out, storage_options).table("fragments", columns=FRAGMENT_MAP_COLUMNS,
                                                  filters=[("entry_id", "in", entries)])
    frag_rows = frags.to_pylist() if frags is not None else []
    maps = []
    for r in chosen:
        mine = sorted((f for f in frag_rows if f["entry_id"] == r["entry_id"] and f["chain_id"] == r["chain_id"]),
                      key=lambda f: (f["fragment_index"], f["fragment_id"]))
        n_res = int(r["n_residues"])
        track = _chain_plddt_from_file(r["source_uri"], r["chain_id"], n_res, storage_options)
        full = track is not None
        if track is None:
            track = np.full(n_res, np.nan)
            for f in mine:
                idx = np.asarray(f["residue_index"], dtype=np.int64)
                ok = (idx >= 0) & (idx < n_res)
                track[idx[ok]] = np.asarray(f["plddt"], dtype=np.float64)[ok]
        linkers = np.asarray(r["linker_index"] or [], dtype=np.int64)
        n_passed = sum(bool(f["passed"]) for f in mine)
        title = (f"{r['entry_id']} chain {r['chain_id']}: {n_res:,} residues, {len(mine)} fragments "
                 f"({n_passed} passed), {linkers.size} linker residues")
        maps.append(plots.ChainMap(
            title=title,
            n_residues=n_res,
            plddt=track,
            fragments=[(f["fragment_id"], np.asarray(f["residue_index"], dtype=np.int64), bool(f["passed"]))
                       for f in mine],
            linker_index=linkers,
            full_track=full,
        ))
    return maps


# --------------------------------------------------------------------------------------------
# building


def _read_guard(out: str, storage_options: dict | None) -> float | None:
    """The guard of the run's guarded linkage, from cluster_runs' configuration (None for other linkages)."""
    runs = RunFolder(out, storage_options).table("cluster_runs", columns=["config"])
    if runs is None or runs.num_rows == 0:
        return None
    config = json.loads(runs.column("config")[runs.num_rows - 1].as_py())
    return config.get("guard_threshold") if config.get("linkage") == "guarded" else None


def _recorded_fragment_config(folder: RunFolder) -> FragmentConfig:
    """The FragmentConfig the run's last release recorded (defaults for a folder `rayfold run` did not make)."""
    releases = folder.table("releases", columns=["release", "config"])
    if releases is None or releases.num_rows == 0:
        return FragmentConfig()
    last = releases.sort_by([("release", "descending")]).column("config")[0].as_py()
    recorded = json.loads(last).get("release", {}).get("fragment", {})
    known = {f.name for f in dataclasses.fields(FragmentConfig)}
    return FragmentConfig(**{k: v for k, v in recorded.items() if k in known})


def _sorted_clusters(clusters: pa.Table) -> pa.Table:
    return clusters.sort_by([("size", "descending"), ("cluster_id", "ascending")])


def _members_head(members: pa.Table, rows: int) -> pa.Table:
    """Members of the largest clusters first (the head of a table sorted by id shows only singletons)."""
    if members.num_rows == 0:
        return members
    sizes = pa.table({"cluster_id": members.column("cluster_id")}).group_by("cluster_id").aggregate(
        [("cluster_id", "count")]).rename_columns(["cluster_id", "cluster_size"])
    joined = members.join(sizes, "cluster_id")
    order = [("cluster_size", "descending"), ("cluster_id", "ascending"), ("fragment_id", "ascending")]
    return joined.sort_by(order).slice(0, rows)


def _read_gamma(out: str, storage_options: dict[str, Any] | None) -> float | None:
    w = RunFolder(out, storage_options).table("weights", columns=["gamma"])
    if w is None or w.num_rows == 0:
        return None
    return float(w.column("gamma")[0].as_py())


def _build(
    out: str,
    storage_options: dict[str, Any] | None,
    *,
    stats: pa.Table | None = None,
    sampling: pa.Table | None = None,
    weights: pa.Table | None = None,
    members: pa.Table | None = None,
    fragments: pa.Table | None = None,
    manifest: pa.Table | None = None,
    config: SamplingConfig | None = None,
) -> str:
    so = storage_options
    folder = RunFolder(out, so)
    if stats is None:
        stats = read_stats(out, so)
    if members is None:
        members = folder.table("members")
    members = members if members is not None else schema.MEMBERS.empty_table()
    if fragments is None:
        fragments = folder.table("fragments", columns=FRAGMENT_REPORT_COLUMNS)
    if manifest is None:
        manifest = folder.table("manifest", columns=["input_uri", "source"])
    gamma = config.gamma if config is not None else _read_gamma(out, so)
    if sampling is None:
        sampling = folder.table("sampling")
    if sampling is None:
        grid = SamplingConfig(gamma=gamma if gamma is not None else SamplingConfig().gamma).grid
        sampling = gamma_table(cluster_sizes(members.column("cluster_id")), grid)
    clusters = folder.table("clusters")
    errors = folder.table("errors")
    audit = folder.table("singleton_audit")
    merges = folder.table("merges")

    # figures
    fragment_config = _recorded_fragment_config(folder)
    sizes = cluster_sizes_by_scope(fragments, members, manifest)
    figures = [
        ReportFigure("cluster_sizes",
               "Left: size of each multi-member cluster by rank (log-log). Right: cumulative share of the "
               "fragments in multi-member clusters held by the largest clusters; singletons are omitted.",
               plots.plot_cluster_sizes(sizes)),
        ReportFigure("sampling_gamma",
               "Effective clusters (inverse Simpson, 1 / sum p_i^2) and the sampling mass of the 100 and "
               "1,000 largest clusters against gamma, with and without singleton clusters.",
               plots.plot_gamma(sampling, gamma)),
    ]
    if clusters is not None and "cohesion_min_tm" in clusters.column_names:
        figures.append(ReportFigure(
            "cluster_cohesion",
            "How tight the largest clusters are: for each, a seeded sample of members TM-aligned to the "
            "representative (lowest and median min-TM), and the member length range. A low minimum or a "
            "wide length range is a chained cluster; the guarded linkage keeps every first-pass "
            "representative within its guard of the cluster's representative.",
            plots.plot_cohesion(clusters, guard=_read_guard(out, so)),
        ))
    if fragments is not None and fragments.num_rows:
        figures.append(ReportFigure(
            "fragment_distributions",
            "Length and mean pLDDT of every fragment, passed and failed quality filters stacked.",
            plots.plot_distributions(
                fragments.column("n_residues").to_numpy(zero_copy_only=False),
                fragments.column("mean_plddt").to_numpy(zero_copy_only=False),
                fragments.column("passed").to_numpy(zero_copy_only=False),
                min_mean_plddt=fragment_config.min_mean_plddt,
            ),
        ))
    maps = chain_maps(out, storage_options=so)
    if maps:
        figures.append(ReportFigure(
            "fragment_maps",
            f"The {len(maps)} chains with the most fragments: fragments as coloured bands over the residue "
            f"index, the pLDDT track, the {fragment_config.plddt_cutoff:g} cutoff and the linker residues cut "
            "by the spectral step (red ticks).",
            plots.plot_fragment_maps(maps, plddt_cutoff=fragment_config.plddt_cutoff),
        ))
    for fig in figures:
        io.write_bytes(fig.png, io.join_uri(out, "report", f"{fig.name}.png"), so)

    # tables
    sections: list[tuple[str, str, str]] = []
    gamma_note = f"configured gamma = {gamma:g}; " if gamma is not None else ""
    sections.append(("Sampling", gamma_note + "population 'all' includes singleton clusters, 'multi_member' "
                     "leaves them out (as the method's published figures).",
                     _html_table(sampling.sort_by([("population", "ascending"), ("gamma", "ascending")]),
                                 "sampling-table")))
    if weights is None:
        weights = folder.table("weights")
    if weights is not None and weights.num_rows:
        seed = (config or SamplingConfig()).seed
        preview = draw_sample(weights, 10, seed)
        drawn_at = float(weights.column("gamma")[0].as_py())
        sections.append(("Sample preview", (f"10 draws (with replacement) at gamma = {drawn_at:g}, seed {seed}; "
                                            "the same as `rayfold sample OUT --gamma G --n 10 --seed S`."),
                         _html_table(preview, "sample-table")))
    if clusters is not None:
        sections.append(("Clusters", f"{clusters.num_rows:,} clusters, largest first.",
                         _html_table(_sorted_clusters(clusters), "clusters-table", max_rows=HEAD_ROWS)))
    sections.append(("Members", f"{members.num_rows:,} clustered fragments; members of the largest clusters first.",
                     _html_table(_members_head(members, HEAD_ROWS), "members-table")))
    if audit is not None:
        row = stats.filter(pc.equal(stats.column("scope"), ALL_SCOPE)).to_pylist()
        note = row[0]["singleton_audit"] if row else ""
        sections.append(("Singleton audit", note,
                         _html_table(audit.sort_by([("component_size", "descending"), ("component_id", "ascending"),
                                                    ("fragment_id", "ascending")]),
                                     "singleton-audit-table", max_rows=HEAD_ROWS)))
    if merges is not None:
        sections.append(("Merges", f"{merges.num_rows:,} merge evidence rows.",
                         _html_table(merges, "merges-table", max_rows=HEAD_ROWS)))
    errors = errors if errors is not None else schema.ERRORS.empty_table()
    kinds = errors.group_by(["stage", "error_kind"]).aggregate([("source_uri", "count")]) if errors.num_rows else None
    note = f"{errors.num_rows:,} inputs could not be used"
    if kinds is not None:
        note += ": " + ", ".join(f"{r['stage']}/{r['error_kind']} {r['source_uri_count']:,}"
                                 for r in kinds.sort_by("stage").to_pylist())
    sections.append(("Errors", note + ".", _html_table(errors, "errors-table", max_rows=HEAD_ROWS)))

    row = stats.filter(pc.equal(stats.column("scope"), ALL_SCOPE)).to_pylist()
    summary = ""
    if row:
        r = row[0]
        summary = (f"{r['clustered_fragments']:,} clustered fragments in {r['clusters']:,} clusters; "
                   f"{r['multi_member_clusters']:,} multi-member clusters hold {r['fragments_in_multi_member']:,} "
                   f"fragments, {r['singletons']:,} singletons.")
    page = render_html(title="rayfold report", out=out, stats=stats, figures=figures, sections=sections,
                       summary=summary)
    uri = io.join_uri(out, "report", "index.html")
    io.write_bytes(page.encode("utf-8"), uri, so)
    return uri


def build_report(out: str, *, storage_options: dict[str, Any] | None = None) -> str:
    """Rebuild ``OUT/report/`` (index.html and the PNGs) from the tables in `out`; returns the page's URI.

    Missing analytics tables are computed on the fly (not written): ``OUT/stats/`` from the run's
    tables, ``OUT/sampling/`` from ``OUT/members/`` at the default grid.
    """
    return _build(out, storage_options)


def write_analytics(
    out: str,
    *,
    storage_options: dict[str, Any] | None = None,
    sampling: SamplingConfig = DEFAULT_SAMPLING,
) -> dict[str, Any]:
    """Compute and replace ``OUT/stats/``, ``OUT/sampling/``, ``OUT/weights/`` and ``OUT/report/``.

    Each table is rewritten whole as one part file, so re-runs never duplicate rows. Returns a small
    summary (counts of the 'all' scope, effective clusters at the configured gamma, the URIs written).
    """
    t0 = time.perf_counter()
    so = storage_options
    folder = RunFolder(out, so)
    columns = list(dict.fromkeys([*FRAGMENT_STAT_COLUMNS, *FRAGMENT_REPORT_COLUMNS]))
    fragments = folder.table("fragments", columns=columns)
    members = folder.table("members")  # three small columns; the page shows all
    audit = folder.table("singleton_audit", columns=["fragment_id", "component_id"])
    manifest = folder.table("manifest", columns=["input_uri", "source"])
    stats = compute_stats(fragments, members, audit, manifest)
    stats_uri = write_stats(out, stats, storage_options=so)
    sampling_table, weights = write_sampling(out, sampling, members=members, storage_options=so)
    report_uri = _build(out, so, stats=stats, sampling=sampling_table, weights=weights, members=members,
                        fragments=fragments, manifest=manifest, config=sampling)
    at_gamma = {r["population"]: r for r in sampling_table.to_pylist() if abs(r["gamma"] - sampling.gamma) < 1e-12}
    all_row = stats.to_pylist()[0]
    return {
        "out": out,
        "scopes": stats.column("scope").to_pylist(),
        "clustered_fragments": all_row["clustered_fragments"],
        "clusters": all_row["clusters"],
        "multi_member_clusters": all_row["multi_member_clusters"],
        "top1000_share": all_row["top1000_share"],
        "gamma": sampling.gamma,
        "population": sampling.population,
        "effective_clusters": at_gamma.get("all", {}).get("effective_clusters"),
        "effective_clusters_multi_member": at_gamma.get("multi_member", {}).get("effective_clusters"),
        "stats": stats_uri,
        "sampling": io.join_uri(out, "sampling", "part-0.parquet"),
        "weights": io.join_uri(out, "weights", "part-0.parquet"),
        "report": report_uri,
        "seconds": round(time.perf_counter() - t0, 3),
    }
