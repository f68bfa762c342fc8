"""The report's figures as PNG bytes (matplotlib, Agg canvas, no display and no global pyplot state).

Each function takes plain arrays or small Arrow tables and returns PNG bytes, so figures can be
written anywhere (`rayfold.io.storage.write_bytes`) or embedded in HTML. Figures are built on
`matplotlib.figure.Figure` directly instead of `pyplot`: nothing is registered globally, nothing
needs closing, and a Ray worker or a server thread can draw safely.
"""

from __future__ import annotations

import io as _io
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import pyarrow as pa
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.patches import Patch
from matplotlib.ticker import FuncFormatter, MaxNLocator, NullFormatter

__all__ = [
    "ChainMap",
    "plot_cluster_sizes",
    "plot_cohesion",
    "plot_distributions",
    "plot_fragment_maps",
    "plot_gamma",
]

DPI = 110
_PASS_COLOR = "#1b7837"
_FAIL_COLOR = "#b2182b"
_SCOPE_COLORS = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f")


def _png(fig: Figure) -> bytes:
    buf = _io.BytesIO()
    fig.savefig(buf, format="png", dpi=DPI, facecolor="white")
    return buf.getvalue()


def _plain_log_ticks(axis: object, lo: float, hi: float) -> None:
    """Log-axis tick labels as plain numbers (1, 10, 1,000), minor labels too over less than 2 decades."""
    label = FuncFormatter(lambda v, _pos: f"{v:,.0f}" if v >= 1 else f"{v:g}")
    axis.set_major_formatter(label)  # type: ignore[attr-defined]
    few_decades = hi > 0 and lo > 0 and np.log10(hi / lo) < 2
    axis.set_minor_formatter(label if few_decades else NullFormatter())  # type: ignore[attr-defined]


def _log_subsample(n: int, keep: int = 2000) -> np.ndarray:
    """Indices 0..n-1 thinned evenly on a log scale (a 10^6-point line draws the same with 2,000)."""
    if n <= keep:
        return np.arange(n)
    idx = np.unique(np.geomspace(1, n, keep).astype(np.int64) - 1)
    return np.unique(np.r_[0, idx, n - 1])


def _empty(ax: Axes, text: str) -> None:
    ax.text(0.5, 0.5, text, ha="center", va="center", transform=ax.transAxes, color="#555555")


def plot_cohesion(clusters: pa.Table, top: int = 50, guard: float | None = None) -> bytes:
    """Cohesion of the largest clusters: min and median min-TM of sampled members to the representative.

    A chained cluster (members that share no fold with its representative) shows as a low minimum;
    the member length range beside it shows length drift along a chain of repeats.
    """
    fig = Figure(figsize=(11, 5.2), layout="constrained")
    ax_tm, ax_len = fig.subplots(1, 2)
    rows = [r for r in clusters.sort_by([("size", "descending"), ("cluster_id", "ascending")]).to_pylist()
            if r["size"] > 1][:top]
    if not rows:
        _empty(ax_tm, "no multi-member clusters")
        _empty(ax_len, "no multi-member clusters")
        return _png(fig)
    rank = np.arange(1, len(rows) + 1)
    low = np.array([np.nan if r["cohesion_min_tm"] is None else r["cohesion_min_tm"] for r in rows])
    mid = np.array([np.nan if r["cohesion_median_tm"] is None else r["cohesion_median_tm"] for r in rows])
    ax_tm.vlines(rank, low, mid, color="#9ecae1", linewidth=2)
    ax_tm.plot(rank, mid, "o", color="#1f77b4", label="median of sampled members")
    ax_tm.plot(rank, low, "v", color="#d62728", label="lowest sampled member")
    if guard is not None:
        ax_tm.axhline(guard, color="#555555", linestyle="--", linewidth=1, label=f"guard {guard:g}")
    ax_tm.axhline(0.3, color="#b2182b", linestyle=":", linewidth=1, label="0.3 (unrelated below)")
    ax_tm.set_ylim(0, 1.02)
    ax_tm.set_xlabel("cluster rank by size")
    ax_tm.set_ylabel("min(TM_a, TM_b) to the representative")
    ax_tm.set_title(f"Cohesion of the {len(rows)} largest clusters")
    ax_tm.legend(loc="lower left", fontsize=8)
    lo = np.array([r["min_length"] for r in rows])
    hi = np.array([r["max_length"] for r in rows])
    ax_len.vlines(rank, lo, hi, color="#555555", linewidth=2)
    ax_len.set_xlabel("cluster rank by size")
    ax_len.set_ylabel("member length, residues (min to max)")
    for ax in (ax_tm, ax_len):
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax_len.set_title("Member length range")
    return _png(fig)


def plot_cluster_sizes(sizes_by_scope: Mapping[str, np.ndarray]) -> bytes:
    """Multi-member cluster size by rank (log-log) and the cumulative share of their fragments.

    One line per scope ('all' and the sources). Singleton clusters are left out, as in the method's
    "small head" figure: the cumulative share's denominator is the fragments in multi-member
    clusters. Ranks 100 and 1,000 are marked.
    """
    fig = Figure(figsize=(11, 5.2), layout="constrained")
    ax_size, ax_cum = fig.subplots(1, 2)
    drawn = 0
    lo, hi, max_rank = np.inf, 0.0, 1
    for i, (scope, sizes) in enumerate(sizes_by_scope.items()):
        s = np.sort(np.asarray(sizes, dtype=np.int64))[::-1]
        multi = s[s >= 2]
        if multi.size == 0:
            continue
        drawn += 1
        lo, hi, max_rank = min(lo, float(multi.min())), max(hi, float(multi.max())), max(max_rank, multi.size)
        rank = np.arange(1, multi.size + 1)
        color = _SCOPE_COLORS[i % len(_SCOPE_COLORS)]
        marker = "o" if multi.size <= 60 else None
        label = (
            f"{scope} ({multi.size:,} clusters, {int(multi.sum()):,} fragments; "
            f"{int((s == 1).sum()):,} singletons omitted)"
        )
        cum = 100.0 * np.cumsum(multi) / multi.sum()
        sub = _log_subsample(multi.size)
        ax_size.plot(rank[sub], multi[sub], color=color, marker=marker, ms=4, lw=1.5, label=label)
        marks = [k for k in (100, 1000) if multi.size >= k]
        share = "; ".join(f"top {k:,}: {cum[k - 1]:.1f}%" for k in marks) or "under 100 clusters: top 100 = 100%"
        ax_cum.plot(rank[sub], cum[sub], color=color, marker=marker, ms=4, lw=1.5, label=f"{scope} ({share})")
        if marks:
            ax_cum.plot(marks, [cum[k - 1] for k in marks], ls="none", marker="D", ms=5, color=color)
    for ax in (ax_size, ax_cum):
        ax.set_xscale("log")
        ax.set_xlim(0.7, max(max_rank, 1000) * 1.4)
        ax.set_xlabel("cluster rank (1 = largest, log scale)")
        ax.grid(True, which="major", alpha=0.3)
        for k in (100, 1000):
            ax.axvline(k, color="#999999", ls=":", lw=1)
    ax_size.set_yscale("log")
    if drawn:
        _plain_log_ticks(ax_size.yaxis, lo, hi)
    for ax in (ax_size, ax_cum):
        _plain_log_ticks(ax.xaxis, 1, max(max_rank, 1000))
    ax_size.set_ylabel("cluster size (fragments, log scale)")
    ax_size.set_title("Multi-member cluster size by rank")
    ax_cum.set_ylabel("cumulative share of multi-member fragments (%)")
    ax_cum.set_ylim(0, 102)
    ax_cum.set_title("Share of fragments held by the largest clusters")
    if drawn:
        for ax in (ax_size, ax_cum):
            ax.legend(fontsize=8, loc="upper center", bbox_to_anchor=(0.5, -0.17), frameon=False)
    else:
        _empty(ax_size, "no multi-member clusters")
        _empty(ax_cum, "no multi-member clusters")
    fig.suptitle("Cluster size distribution (dotted lines and diamonds: ranks 100 and 1,000)", fontsize=11)
    return _png(fig)


def plot_gamma(sampling: pa.Table, gamma: float | None = None) -> bytes:
    """Effective clusters and the top-100 / top-1,000 sampling mass against gamma (`schema.SAMPLING`).

    Both populations are drawn: every cluster ('all') and multi-member clusters only; the configured
    gamma is marked.
    """
    fig = Figure(figsize=(11, 5.2), layout="constrained")
    ax_eff, ax_mass = fig.subplots(1, 2)
    styles = {"all": ("#1f77b4", "all clusters (singletons included)"),
              "multi_member": ("#ff7f0e", "multi-member clusters only")}
    rows = sampling.to_pylist()
    for population, (color, label) in styles.items():
        sel = sorted((r for r in rows if r["population"] == population), key=lambda r: r["gamma"])
        if not sel:
            continue
        g = np.array([r["gamma"] for r in sel])
        clusters = sel[0]["clusters"]
        ax_eff.plot(g, [r["effective_clusters"] for r in sel], color=color, marker="o", ms=4,
                    label=f"{label}: {clusters:,}")
        ax_mass.plot(g, [100 * r["top1000_mass"] for r in sel], color=color, marker="o", ms=4,
                     label=f"top 1,000, {label}")
        ax_mass.plot(g, [100 * r["top100_mass"] for r in sel], color=color, ls="--", marker="s", ms=3,
                     label=f"top 100, {label}")
        if gamma is not None:
            at = [r for r in sel if abs(r["gamma"] - gamma) < 1e-9]
            if at:
                ax_eff.annotate(f"{at[0]['effective_clusters']:,.1f}", (gamma, at[0]["effective_clusters"]),
                                xytext=(8, 8), textcoords="offset points", fontsize=9, color=color,
                                fontweight="bold")
    for ax in (ax_eff, ax_mass):
        ax.set_xlabel("gamma (cluster_size_exponent: cluster mass ~ size^gamma)")
        ax.grid(True, alpha=0.3)
        if gamma is not None:
            ax.axvline(gamma, color="#555555", ls=":", lw=1)
    ax_eff.set_ylabel("effective clusters (1 / sum p_i^2)")
    ax_eff.set_title("Effective clusters (inverse Simpson)")
    ax_eff.set_ylim(bottom=0)
    ax_eff.yaxis.set_major_formatter(FuncFormatter(lambda v, _pos: f"{v:,.0f}" if v >= 10 else f"{v:g}"))
    ax_mass.set_ylabel("sampling mass (%)")
    ax_mass.set_ylim(0, 102)
    ax_mass.set_title("Sampling mass of the largest clusters")
    if rows:
        ax_eff.legend(fontsize=8, title="population: clusters", title_fontsize=8, loc="upper center",
                      bbox_to_anchor=(0.5, -0.17), ncol=1, frameon=False)
        ax_mass.legend(fontsize=8, loc="upper center", bbox_to_anchor=(0.5, -0.17), ncol=2, frameon=False)
        if all(r["top100_mass"] >= 1 - 1e-12 for r in rows):
            ax_mass.text(0.5, 0.5, "every cluster is among the 100 largest here:\nall of the mass at every gamma",
                         ha="center", va="center", transform=ax_mass.transAxes, fontsize=9, color="#555555")
    else:
        _empty(ax_eff, "no clusters")
        _empty(ax_mass, "no clusters")
    where = f" (dotted: configured gamma = {gamma:g})" if gamma is not None else ""
    fig.suptitle("Sampling under gamma re-weighting" + where, fontsize=11)
    return _png(fig)


def plot_distributions(
    n_residues: np.ndarray,
    mean_plddt: np.ndarray,
    passed: np.ndarray,
    *,
    min_mean_plddt: float | None = None,
) -> bytes:
    """Histograms of fragment length and mean pLDDT, passed and failed fragments stacked."""
    n = np.asarray(n_residues, dtype=np.float64)
    q = np.asarray(mean_plddt, dtype=np.float64)
    ok = np.asarray(passed, dtype=bool)
    fig = Figure(figsize=(11, 4.2), layout="constrained")
    ax_len, ax_pl = fig.subplots(1, 2)
    labels = [f"passed ({int(ok.sum()):,})", f"failed ({int((~ok).sum()):,})"]
    colors = [_PASS_COLOR, _FAIL_COLOR]
    if n.size:
        top = max(float(n.max()), 20.0)
        bins = np.linspace(0, top * 1.02, 31)
        ax_len.hist([n[ok], n[~ok]], bins=bins, stacked=True, color=colors, label=labels)
        ax_pl.hist([q[ok], q[~ok]], bins=np.linspace(min(float(q.min()), 60.0), 100, 29), stacked=True,
                   color=colors, label=labels)
        ax_len.legend(fontsize=8, loc="best")
    else:
        _empty(ax_len, "no fragments")
        _empty(ax_pl, "no fragments")
    if min_mean_plddt is not None:
        ax_pl.axvline(min_mean_plddt, color="#333333", ls="--", lw=1, label=f"pass threshold {min_mean_plddt:g}")
    if n.size:
        ax_pl.legend(fontsize=8, loc="best")
    ax_len.set_xlabel("fragment length (residues)")
    ax_len.set_ylabel("fragments")
    ax_len.set_title("Fragment length")
    ax_pl.set_xlabel("mean pLDDT of the fragment (0-100)")
    ax_pl.set_ylabel("fragments")
    ax_pl.set_title("Fragment mean pLDDT")
    for ax in (ax_len, ax_pl):
        ax.grid(True, axis="y", alpha=0.3)
        ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _pos: f"{v:,.0f}"))
    fig.suptitle(f"Fragments: {n.size:,} (passed and failed quality filters)", fontsize=11)
    return _png(fig)


@dataclass
class ChainMap:
    """What a fragment map draws for one chain (residue indices are 0-based into the chain)."""

    title: str
    n_residues: int
    plddt: np.ndarray  # (n_residues,), NaN where unknown
    fragments: Sequence[tuple[str, np.ndarray, bool]]  # (fragment_id, residue_index, passed)
    linker_index: np.ndarray
    full_track: bool  # pLDDT of every residue (from the structure file) or only fragment residues


def _runs(index: np.ndarray) -> list[tuple[int, int]]:
    """Contiguous runs [start, end] of sorted residue indices."""
    idx = np.unique(np.asarray(index, dtype=np.int64))
    if idx.size == 0:
        return []
    breaks = np.flatnonzero(np.diff(idx) != 1)
    starts = np.r_[idx[0], idx[breaks + 1]]
    ends = np.r_[idx[breaks], idx[-1]]
    return list(zip(starts.tolist(), ends.tolist(), strict=True))


def plot_fragment_maps(maps: Sequence[ChainMap], *, plddt_cutoff: float = 65.0) -> bytes:
    """Per chain: fragments as coloured bands over residue index, the pLDDT track, the cutoff line and
    the linker residues cut by the spectral step."""
    rows = max(len(maps), 1)
    fig = Figure(figsize=(12, 3.2 * rows), layout="constrained")
    axes = np.atleast_1d(fig.subplots(rows, 1, squeeze=False)[:, 0])
    if not maps:
        _empty(axes[0], "no chains with fragments")
    palette = ("#4e79a7", "#f28e2b", "#59a14f", "#b07aa1", "#76b7b2", "#edc948", "#ff9da7", "#9c755f")
    for ax, m in zip(axes, maps, strict=False):
        handles = []
        for j, (fid, index, ok) in enumerate(m.fragments):
            color = palette[j % len(palette)] if ok else "#bbbbbb"
            for start, end in _runs(index):
                ax.axvspan(start - 0.5, end + 0.5, ymin=0, ymax=1, color=color, alpha=0.35 if ok else 0.5,
                           hatch=None if ok else "//", lw=0)
            for start, end in _runs(index):
                if end - start + 1 >= 0.02 * m.n_residues:
                    ax.text((start + end) / 2, 103, fid.rsplit("_", 1)[-1], ha="center", va="bottom",
                            fontsize=8, color="#222222")
            handles.append(Patch(facecolor=color, alpha=0.5, hatch=None if ok else "//",
                                 label=f"{fid} ({len(np.asarray(index)):,} res{'' if ok else ', failed'})"))
        x = np.arange(m.n_residues)
        (track,) = ax.plot(x, m.plddt, color="black", lw=1.0,
                           label="pLDDT" if m.full_track else "pLDDT (fragment residues only)")
        cut = ax.axhline(plddt_cutoff, color="#d62728", ls="--", lw=1, label=f"pLDDT cutoff {plddt_cutoff:g}")
        handles = [track, cut, *handles]
        linkers = np.asarray(m.linker_index, dtype=np.int64)
        if linkers.size:
            mk = ax.scatter(linkers, np.full(linkers.size, 3.0), marker="|", s=160, color="#d62728", zorder=3,
                            label=f"linker / cut residues ({linkers.size})")
            handles.insert(2, mk)
        ax.set_xlim(-0.5, max(m.n_residues, 1) - 0.5)
        ax.set_ylim(0, 112)
        ax.set_xlabel("residue index in chain (0-based)")
        ax.set_ylabel("pLDDT (0-100)")
        ax.set_title(m.title, fontsize=10, loc="left")
        ax.legend(handles=handles, fontsize=7, loc="center left", bbox_to_anchor=(1.01, 0.5), frameon=False)
        ax.grid(True, axis="y", alpha=0.3)
    fig.suptitle("Fragment maps: bands = fragments (label: fragment number), grey hatched = failed quality",
                 fontsize=11)
    return _png(fig)
