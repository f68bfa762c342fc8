"""Built-in candidate search: which fragment pairs are worth a TM-align.

Without the Foldseek binary, this proposes the pairs that TM-align then confirms (two fragments go
together when min(TM_a, TM_b) >= 0.7). It follows Foldseek's prefilter idea - k-mers of the 3Di
structural alphabet, hits counted per diagonal - and adds a cheap structural check on the C-alpha
coordinates, so that few pairs reach TM-align. No TM-align runs here.

Steps (defaults in `PrefilterConfig`):

1. **Length pruning (exact).** TM-score normalised by the longer chain is at most Lshort/Llong, so
   pairs with Lshort/Llong < 0.7 can never reach min-TM 0.7 and are never looked at (the
   representative rule, TM by the representative >= 0.7 with both coverages >= 0.8, needs a ratio
   >= 0.8, so it is covered too). Targets are indexed in length order, and each query reads only
   the slice of every posting list whose lengths are compatible.
2. **k-mer seeding (inverted index).** Every 3Di 4-mer of every target goes into a posting list (one
   sorted int64 key array: code * n + length rank). Not indexed: 4-mers with fewer than 2 distinct
   states, 4-mers in low-complexity stretches (one state fills > 80% of the 12 states around it:
   ``DDDPDDDD`` disordered tails, ideal ``VVVV`` helices). A document-frequency cap
   (`max_kmer_fraction`) exists but is off: frequent k-mers are a big family's own. A hit weighs the
   sum of its states' self-scores in Foldseek's 3Di substitution matrix (rare states weigh more).
   Hits are binned by diagonal (query position - target position, bands of 8 from diagonal 0); each
   query position counts once per band and a band adds its neighbours (24 diagonals: indels move the
   diagonal). A pair's seed score is its best band minus what its hits would give that window if
   spread evenly over all diagonals, per residue of the longer fragment; each query keeps the 100
   best targets scoring >= 1.0 (the 292 reference pairs at min-TM >= 0.7 score >= 1.2). Queries are
   processed in blocks of at most `block_hits` hits (a heavy query's length window is split), so
   memory is bounded.
3. **Structural check (coordinates).** For each seeded pair (in an all-vs-all search a pair seen
   from both sides keeps both sides' seeds) and each of its seed diagonals in turn, until one
   passes: superpose the C-alphas of the exact k-mer matches near that diagonal (Kabsch; low-
   complexity matches only when fewer than 12 residues match otherwise), refine 3 times on the
   residue pairs that end up close (re-centring the band once on their diagonal), then score the
   superposition with an ordered, gap-free dynamic programme over a band of +-max(12, 5% of the
   longer length) around the diagonal: the sum of 1/(1+(d/d0)^2) over the best monotone residue
   matching, divided by the longer length (d0 of the longer length). That is the TM-score of one
   superposition and one alignment, a lower-bound-like estimate of min(TM_a, TM_b) (correlation
   0.94 with TM-align over the 751 reference pairs it scores; the reference pairs at min-TM >= 0.7
   all estimate >= 0.39). Pairs estimating >= `min_score` (0.3) are candidates. Pairs are scored in
   padded batches of at most `batch_cells` band cells.

Measured (bench/prefilter_recall.py, one core, on a shared and busy machine):

* Recall of the 292 TM-align reference pairs at min-TM >= 0.7 (whole chains, all-vs-all within
  each of the 6 sets): 292/292 (C-alpha-only fallback: 291/292). It moves by one or two divergent
  globin pairs with small changes of the settings (the seed diagonal of d1ecaa_ is fragile).
* Candidates as a share of all pairs on all 460 chains of the shared data pooled: 2.4% (whole
  chains), 4.4% (pLDDT >= 65 trimmed; the 96 PF04034 cores alone are 75% of their pairs); 0.3%
  within the 191 Mycoplasma models. Every Foldseek pair with its own min(qTM, tTM) >= 0.7 in the
  exhaustive all-vs-all searches of real_foldseek_outputs is a candidate (21/21, 102/102, 222/222).
* Time: 2-3 ms per fragment for stage 1, 20-35 ms per fragment in all on these long chains (mean
  300-390 residues); ~15 ms per fragment on 5000 windows of 60-250 residues; peak traced memory
  ~150 MB (stage-1 blocks of 2M hits at ~75 bytes per hit).

Input: a `FragmentSet` with `states_3di` (one 3Di letter per residue, from
`rayfold.align.alphabet.encode_3di`). Without them (`states_3di is None`) the states are computed from
the C-alpha traces with `rayfold.align.alphabet.encode_3di_ca`, an approximation (~85% of states
identical; recall above), when `ca_fallback` is on; otherwise a `ValueError` says what is missing.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass

import numpy as np

from rayfold.model.fragset import FragmentSet

__all__ = ["MAT3DI", "PrefilterConfig", "candidate_pairs", "candidate_pairs_scored", "search"]

log = logging.getLogger(__name__)

_ALPHABET = "ACDEFGHIKLMNPQRSTVWY"
_A = len(_ALPHABET)

# Foldseek's 3Di substitution matrix (data/mat3di.out, half-bit units; Foldseek is GPL-3.0, as
# rayfold). Rows/columns in _ALPHABET order. Only its diagonal is used here: the weight of a k-mer
# match is the sum of its states' self-scores.
MAT3DI = np.array(
    [
        [6, -3, 1, 2, 3, -2, -2, -7, -3, -3, -10, -5, -1, 1, -4, -7, -5, -6, 0, -2],
        [-3, 6, -2, -8, -5, -4, -4, -12, -13, 1, -14, 0, 0, 1, -1, 0, -8, 1, -7, -9],
        [1, -2, 4, -3, 0, 1, 1, -3, -5, -4, -5, -2, 1, -1, -1, -4, -2, -3, -2, -2],
        [2, -8, -3, 9, -2, -7, -4, -12, -10, -7, -17, -8, -6, -3, -8, -10, -10, -13, -6, -3],
        [3, -5, 0, -2, 7, -3, -3, -5, 1, -3, -9, -5, -2, 2, -5, -8, -3, -7, 4, -4],
        [-2, -4, 1, -7, -3, 6, 3, 0, -7, -7, -1, -2, -2, -4, 3, -3, 4, -6, -4, -2],
        [-2, -4, 1, -4, -3, 3, 6, -4, -7, -6, -6, 0, -1, -3, 1, -3, -1, -5, -5, 3],
        [-7, -12, -3, -12, -5, 0, -4, 8, -5, -11, 7, -7, -6, -6, -3, -9, 6, -12, -5, -8],
        [-3, -13, -5, -10, 1, -7, -7, -5, 9, -11, -8, -12, -6, -5, -9, -14, -5, -15, 5, -8],
        [-3, 1, -4, -7, -3, -7, -6, -11, -11, 6, -16, -3, -2, 2, -4, -4, -9, 0, -8, -9],
        [-10, -14, -5, -17, -9, -1, -6, 7, -8, -16, 10, -9, -9, -10, -5, -10, 3, -16, -6, -9],
        [-5, 0, -2, -8, -5, -2, 0, -7, -12, -3, -9, 7, 0, -2, 2, 3, -4, 0, -8, -5],
        [-1, 0, 1, -6, -2, -2, -1, -6, -6, -2, -9, 0, 4, 0, 0, -2, -4, 0, -4, -5],
        [1, 1, -1, -3, 2, -4, -3, -6, -5, 2, -10, -2, 0, 5, -2, -4, -5, -1, -2, -5],
        [-4, -1, -1, -8, -5, 3, 1, -3, -9, -4, -5, 2, 0, -2, 6, 2, 0, -1, -6, -3],
        [-7, 0, -4, -10, -8, -3, -3, -9, -14, -4, -10, 3, -2, -4, 2, 6, -6, 0, -11, -9],
        [-5, -8, -2, -10, -3, 4, -1, 6, -5, -9, 3, -4, -4, -5, 0, -6, 8, -9, -5, -5],
        [-6, 1, -3, -13, -7, -6, -5, -12, -15, 0, -16, 0, 0, -1, -1, 0, -9, 3, -10, -11],
        [0, -7, -2, -6, 4, -4, -5, -5, 5, -8, -6, -8, -4, -2, -6, -11, -5, -10, 8, -6],
        [-2, -9, -2, -3, -4, -2, 3, -8, -8, -9, -9, -5, -5, -5, -3, -9, -5, -11, -6, 9],
    ],
    dtype=np.int8,
)


@dataclass(frozen=True)
class PrefilterConfig:
    """Settings of the built-in prefilter (see the module docstring for the steps)."""

    # 1. exact pruning: Lshort/Llong below this can never reach min-TM 0.7 (TM <= Lshort/Llong)
    min_length_ratio: float = 0.7
    # 2. k-mer seeding
    kmer_size: int = 4  # 3Di k-mer length (k=5 lost distant globin pairs, k=3 is too unspecific)
    min_kmer_states: int = 2  # k-mers with fewer distinct 3Di states are not indexed (low complexity)
    # low complexity: a k-mer is not used when one 3Di state fills more than this share of the
    # window of `low_complexity_window` states around it (disordered DDDPDDDD runs, ideal helices)
    low_complexity_window: int = 12
    low_complexity_max: float = 0.8
    # a k-mer in more than this share of the targets is not indexed, once the set has more than
    # `min_kmer_df_cap` targets. Off (1.0) by default: it dropped exactly the k-mers of big families
    # (3,497 of 4,731 true pairs of a family-rich set); the cascade searches representatives only,
    # in shards, so frequent k-mers no longer cost a quadratic number of hits
    max_kmer_fraction: float = 1.0
    min_kmer_df_cap: int = 1000
    background_correction: bool = True  # seed score minus what evenly spread hits would give
    diagonal_band: int = 8  # hits are binned by diagonal (from 0) in bands this wide ...
    band_window: int = 1  # ... and a band's score adds this many neighbours on each side (24 diagonals)
    # best band score (sum of the 3Di self-scores of the matched k-mers, half bits, minus chance)
    # per residue of the longer fragment; the reference pairs at min-TM >= 0.7 score >= 1.22 (5th
    # percentile 1.94); the 4736 Mycoplasma pairs with any hit: 643 score >= 1.0
    min_seed_score: float = 1.0
    seed_fraction: float = 0.3  # further seeds need at least this share of the best band's score
    max_candidates: int = 100  # per query, best seed scores first, before the structural check
    # 3. structural check
    structural_check: bool = True  # False: stage 2 skipped, every seeded pair is a candidate
    n_seeds: int = 2  # best separated diagonals tried per pair (the 2nd only when the 1st fails)
    refine_iterations: int = 3  # superposition refinements per seed
    min_anchors: int = 12  # fewer seed-matched residues: low-complexity k-mers count too
    band_fraction: float = 0.05  # half-width of the alignment band, share of the longer length ...
    min_band: int = 12  # ... but at least this many residues
    min_score: float = 0.3  # estimated TM (normalised by the longer) a candidate must reach
    # 0. inputs and resources
    ca_fallback: bool = True  # no 3Di states: approximate them from C-alpha (else ValueError)
    block_hits: int = 2_000_000  # k-mer hits per stage-1 block (~75 bytes each at peak: ~150 MB)
    batch_cells: int = 2_000_000  # band cells per stage-2 batch (~60 bytes each at peak)

    def __post_init__(self) -> None:
        if not 1 <= self.kmer_size <= 10:
            raise ValueError("kmer_size must be in 1..10")
        if not 0.0 < self.min_length_ratio <= 1.0:
            raise ValueError("min_length_ratio must be in (0, 1]")
        if self.max_candidates < 1 or self.n_seeds < 1 or self.diagonal_band < 1:
            raise ValueError("max_candidates, n_seeds and diagonal_band must be >= 1")


# ------------------------------------------------------------------------------------------------
# inputs


def _states(fragments: FragmentSet, config: PrefilterConfig, what: str) -> list[np.ndarray]:
    """3Di state numbers (uint8; 255 for letters outside the alphabet) per fragment."""
    lut = np.full(256, 255, dtype=np.uint8)
    for i, ch in enumerate(_ALPHABET):
        lut[ord(ch)] = i
        lut[ord(ch.lower())] = i
    strings = fragments.states_3di
    if strings is None:
        if not config.ca_fallback:
            raise ValueError(
                f"{what}: FragmentSet has no 3Di states (states_3di is None); encode them with "
                "rayfold.align.alphabet.encode_3di, or allow the C-alpha approximation (ca_fallback=True)"
            )
        from rayfold.align.alphabet import encode_3di_ca

        log.info("%s: no 3Di states, approximating them from C-alpha traces", what)
        strings = [encode_3di_ca(c) for c in fragments.coords]
    out = []
    for i, (s, c) in enumerate(zip(strings, fragments.coords)):
        if s is None:
            raise ValueError(f"{what}: fragment {fragments.ids[i]!r} has no 3Di string")
        if len(s) != len(c):
            raise ValueError(
                f"{what}: fragment {fragments.ids[i]!r} has {len(s)} 3Di states for {len(c)} residues"
            )
        out.append(lut[np.frombuffer(s.encode("ascii", "replace"), dtype=np.uint8)])
    return out


def _kmer_codes(
    states: np.ndarray, k: int, min_states: int, lc_window: int = 0, lc_max: float = 1.0
) -> np.ndarray:
    """int64 code of the k-mer starting at each position (-1: invalid or low complexity)."""
    n = len(states) - k + 1
    if n <= 0:
        return np.zeros(0, dtype=np.int64)
    s = states.astype(np.int64)
    code = np.zeros(n, dtype=np.int64)
    bad = np.zeros(n, dtype=bool)
    for t in range(k):
        col = s[t : t + n]
        code = code * _A + np.where(col < _A, col, 0)
        bad |= col >= _A
    if min_states > 1:
        win = np.stack([s[t : t + n] for t in range(k)], axis=1)
        win.sort(axis=1)
        distinct = 1 + (win[:, 1:] != win[:, :-1]).sum(axis=1)
        bad |= distinct < min_states
    if lc_window > 0 and lc_max < 1.0 and len(states) >= lc_window:
        # low complexity: one state fills more than lc_max of the window centred on the k-mer
        onehot = np.zeros((len(states) + 1, _A + 1), dtype=np.int32)
        np.add.at(onehot, (np.arange(1, len(states) + 1), np.minimum(s, _A)), 1)
        cum = np.cumsum(onehot, axis=0)
        start = np.clip(np.arange(n) - (lc_window - k) // 2, 0, len(states) - lc_window)
        counts = cum[start + lc_window] - cum[start]
        bad |= counts[:, :_A].max(axis=1) > lc_max * lc_window
    code[bad] = -1
    return code


_SELF_SCORE = np.diag(MAT3DI).astype(np.float32)


def _kmer_weights(codes: np.ndarray, k: int) -> np.ndarray:
    """Weight of each k-mer code: the sum of its states' 3Di self-scores (half bits)."""
    w = np.zeros(len(codes), dtype=np.float32)
    c = codes.copy()
    for _ in range(k):
        w += _SELF_SCORE[c % _A]
        c //= _A
    return w


@dataclass
class _Prepared:
    codes: list[np.ndarray]  # per fragment, k-mer code per start position (-1 = not used for seeding)
    raw: list[np.ndarray]  # the same without the low-complexity masks (anchors of stage 2)
    lengths: np.ndarray  # int64


def _prepare(fragments: FragmentSet, states: list[np.ndarray], config: PrefilterConfig) -> _Prepared:
    codes = [
        _kmer_codes(s, config.kmer_size, config.min_kmer_states, config.low_complexity_window,
                    config.low_complexity_max)
        for s in states
    ]
    raw = [_kmer_codes(s, config.kmer_size, 1) for s in states]
    return _Prepared(codes=codes, raw=raw, lengths=np.asarray(fragments.lengths, dtype=np.int64))


# ------------------------------------------------------------------------------------------------
# stage 1: inverted k-mer index, diagonal bands


@dataclass
class _Index:
    order: np.ndarray  # target ids in length order (rank -> id)
    rank_of: np.ndarray  # id -> rank
    sorted_lengths: np.ndarray  # lengths in rank order
    keys: np.ndarray  # int64, sorted: code * n + rank
    pos: np.ndarray  # int32, target position of each posting
    n: int
    max_len: int


def _build_index(prep: _Prepared, config: PrefilterConfig) -> _Index:
    n = len(prep.lengths)
    order = np.argsort(prep.lengths, kind="stable")
    rank_of = np.empty(n, dtype=np.int64)
    rank_of[order] = np.arange(n)
    codes, ranks, poss = [], [], []
    for r, fid in enumerate(order):
        c = prep.codes[fid]
        ok = np.flatnonzero(c >= 0)
        codes.append(c[ok])
        ranks.append(np.full(len(ok), r, dtype=np.int64))
        poss.append(ok.astype(np.int32))
    code = np.concatenate(codes) if codes else np.zeros(0, dtype=np.int64)
    rank = np.concatenate(ranks) if ranks else np.zeros(0, dtype=np.int64)
    pos = np.concatenate(poss) if poss else np.zeros(0, dtype=np.int32)
    if len(code) and n > config.min_kmer_df_cap:
        # document frequency: distinct targets per code
        uniq = np.unique(code * n + rank)
        ucode, df = np.unique(uniq // n, return_counts=True)
        cap = max(config.min_kmer_df_cap, config.max_kmer_fraction * n)
        keep = df[np.searchsorted(ucode, code)] <= cap
        code, rank, pos = code[keep], rank[keep], pos[keep]
    keys = code * n + rank
    o = np.argsort(keys, kind="stable")  # stable: positions stay in order within a target
    max_len = int(prep.lengths.max()) if n else 0
    return _Index(
        order=order,
        rank_of=rank_of,
        sorted_lengths=prep.lengths[order],
        keys=keys[o],
        pos=pos[o],
        n=n,
        max_len=max_len,
    )


def _length_window(lengths: np.ndarray, sorted_lengths: np.ndarray, ratio: float) -> tuple[np.ndarray, np.ndarray]:
    """Rank range [lo, hi) of targets with min/max length ratio >= `ratio` for each query length."""
    lq = lengths.astype(np.float64)
    # Lt >= ratio * Lq and Lt <= Lq / ratio, with a small tolerance against rounding
    lo = np.searchsorted(sorted_lengths, np.ceil(ratio * lq - 1e-9), side="left")
    hi = np.searchsorted(sorted_lengths, np.floor(lq / ratio + 1e-9), side="right")
    return lo.astype(np.int64), hi.astype(np.int64)


@dataclass
class _Seeds:
    query: np.ndarray  # int64 query ids
    target: np.ndarray  # int64 target ids
    score: np.ndarray  # float32 best band score
    diag: np.ndarray  # float32 (m, n_seeds): seed diagonals (query pos - target pos), NaN = none


def _stage1(
    qprep: _Prepared,
    index: _Index,
    config: PrefilterConfig,
    *,
    self_search: bool,
) -> _Seeds:
    """Top `max_candidates` targets per query by best diagonal-band score, with seed diagonals."""
    k = config.kmer_size
    nq = len(qprep.lengths)
    lo_r, hi_r = _length_window(qprep.lengths, index.sorted_lengths, config.min_length_ratio)
    band = config.diagonal_band
    # band number = floor(diagonal / band) + base: the same binning whatever the set, positive, and
    # band_window empty bands on each side so that neighbours never cross into another pair's keys
    base = -(-index.max_len // band) + config.band_window + 1
    off = base * band
    n_bands = base + int(qprep.lengths.max() if nq else 0) // band + config.band_window + 2
    n_t = max(index.n, 1)

    def kmers(q: int, lo: int, hi: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """Posting starts, counts, query positions and weights of query q's k-mers, ranks [lo, hi)."""
        c = qprep.codes[q]
        ok = np.flatnonzero(c >= 0)
        cq = c[ok]
        a = np.searchsorted(index.keys, cq * n_t + lo, side="left")
        cnt = np.searchsorted(index.keys, cq * n_t + hi, side="left") - a
        nz = cnt > 0
        return a[nz], cnt[nz], ok[nz].astype(np.int64), _kmer_weights(cq[nz], k)

    # work items (query, rank range), each with at most block_hits hits unless one target alone
    # has more; a heavy query's length window is split in halves until its pieces fit
    items: list[tuple[int, int, int, int]] = []
    for qi in range(nq):
        stack = [(int(lo_r[qi]), int(hi_r[qi]))]
        while stack:
            lo, hi = stack.pop()
            if hi <= lo:
                continue
            n_hits = int(kmers(qi, lo, hi)[1].sum())
            if n_hits > config.block_hits and hi - lo > 1:
                mid = (lo + hi) // 2
                stack += [(mid, hi), (lo, mid)]
            elif n_hits:
                items.append((qi, lo, hi, n_hits))

    out_q, out_t, out_s, out_d = [], [], [], []
    # the block's int64 sort key is (item, target rank, band, query position): keep it < 2^62
    max_items = max(1, (1 << 62) // (n_t * n_bands * (int(qprep.lengths.max()) + 1)))
    i0 = 0
    while i0 < len(items):
        i1 = i0 + 1
        total = items[i0][3]
        while i1 < len(items) and i1 - i0 < max_items and total + items[i1][3] <= config.block_hits:
            total += items[i1][3]
            i1 += 1
        block = items[i0:i1]
        res = _stage1_block(
            np.array([it[0] for it in block], dtype=np.int64),
            [kmers(q, lo, hi) for q, lo, hi, _ in block],
            index,
            config,
            off=off,
            n_bands=n_bands,
            self_search=self_search,
            qlens=qprep.lengths,
        )
        if res is not None:
            out_q.append(res[0])
            out_t.append(res[1])
            out_s.append(res[2])
            out_d.append(res[3])
        i0 = i1
    if not out_q:
        return _Seeds(
            np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0, np.float32),
            np.zeros((0, config.n_seeds), np.float32),
        )
    q, t, sc, dg = (np.concatenate(out_q), np.concatenate(out_t), np.concatenate(out_s), np.concatenate(out_d))
    # top max_candidates per query over its items
    o = np.lexsort((t, -sc, q))
    q, t, sc, dg = q[o], t[o], sc[o], dg[o]
    grp = np.flatnonzero(np.r_[True, q[1:] != q[:-1]])
    rank_in = np.arange(len(q)) - np.repeat(grp, np.diff(np.r_[grp, len(q)]))
    keep = rank_in < config.max_candidates
    return _Seeds(q[keep], t[keep], sc[keep], dg[keep])


def _expand(starts: np.ndarray, lens: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Indices start..start+len-1 for every (start, len), and the source row of each."""
    total = int(lens.sum())
    row = np.repeat(np.arange(len(lens)), lens)
    idx = np.arange(total, dtype=np.int64)
    idx -= np.repeat(np.cumsum(lens) - lens - starts, lens)
    return idx, row


def _stage1_block(
    item_query: np.ndarray,
    item_kmers: list[tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]],
    index: _Index,
    config: PrefilterConfig,
    *,
    off: int,
    n_bands: int,
    self_search: bool,
    qlens: np.ndarray,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray] | None:
    """Seeds of a block of work items: (query ids, target ids, seed scores, seed diagonals)."""
    band = config.diagonal_band
    n_t = max(index.n, 1)
    starts = np.concatenate([km[0] for km in item_kmers])
    lens = np.concatenate([km[1] for km in item_kmers])
    if lens.sum() == 0:
        return None
    qloc_k = np.concatenate([np.full(len(km[0]), i, dtype=np.int64) for i, km in enumerate(item_kmers)])
    qpos_k = np.concatenate([km[2] for km in item_kmers])
    w_k = np.concatenate([km[3] for km in item_kmers])
    idx, row = _expand(starts, lens)
    trank = index.keys[idx]
    trank %= n_t
    tpos = index.pos[idx]
    del idx
    qloc = qloc_k[row]
    qpos = qpos_k[row]
    w = w_k[row]
    del row
    if self_search:
        keep = trank != index.rank_of[item_query][qloc]
        trank, tpos, qloc, qpos, w = trank[keep], tpos[keep], qloc[keep], qpos[keep], w[keep]
        del keep
        if len(trank) == 0:
            return None
    diag = (qpos - tpos).astype(np.int32)
    del tpos
    lq = int(qpos.max()) + 1
    # sort key: (query item, target rank, band, query position), one int64 built in place
    full = qloc
    full *= n_t
    full += trank
    del trank
    full *= n_bands
    full += (diag.astype(np.int64) + off) // band
    full *= lq
    full += qpos
    del qpos
    o = np.argsort(full, kind="stable")
    full = full[o]
    w = w[o]
    diag = diag[o]
    del o
    # each query position counts once per band
    first = np.ones(len(full), dtype=bool)
    first[1:] = full[1:] != full[:-1]
    key = full[first] // lq
    del full
    w, diag = w[first], diag[first]
    del first
    # band scores
    gs = np.flatnonzero(np.r_[True, key[1:] != key[:-1]])
    ukey = key[gs]
    bw = np.add.reduceat(w, gs)
    bwd = np.add.reduceat(w * diag.astype(np.float32), gs)
    del key, w, diag, gs
    # add the neighbouring bands (band numbers stay band_window away from 0 and n_bands-1, so key +- w
    # stays within the same pair)
    s3 = bw.copy()
    sd = bwd.copy()
    for shift in [d for d in range(-config.band_window, config.band_window + 1) if d != 0]:
        j = np.searchsorted(ukey, ukey + shift)
        j = np.minimum(j, len(ukey) - 1)
        hit = ukey[j] == ukey + shift
        s3 += np.where(hit, bw[j], 0.0)
        sd += np.where(hit, bwd[j], 0.0)
        del j, hit
    del bwd
    upair = ukey // n_bands
    qlen_block = qlens[item_query]
    # evenly spread hits: what a band window would get by chance, per pair (background correction)
    pstart = np.flatnonzero(np.r_[True, upair[1:] != upair[:-1]])
    plen = np.diff(np.r_[pstart, len(upair)])
    lq_b = np.repeat(qlen_block[upair[pstart] // n_t], plen)
    lt_b = np.repeat(index.sorted_lengths[upair[pstart] % n_t], plen)
    if config.background_correction:
        chance = np.repeat(np.add.reduceat(bw, pstart), plen) * (
            (2 * config.band_window + 1) * band / (lq_b + lt_b)
        )
    else:
        chance = np.zeros(len(upair))
    del bw, pstart, plen
    # a band that cannot reach seed_fraction of the threshold is dropped here (most of them)
    need = config.seed_fraction * max(config.min_seed_score, 0.0) * np.maximum(lq_b, lt_b) + chance
    keepb = s3 >= need
    del need, lq_b, lt_b
    ukey, upair, s3, sd, chance = ukey[keepb], upair[keepb], s3[keepb], sd[keepb], chance[keepb]
    del keepb
    if len(ukey) == 0:
        return None
    ubnd = ukey % n_bands
    udiag = sd / np.maximum(s3, 1e-9)
    del ukey, sd
    # best band per pair, then up to n_seeds - 1 further bands at least 3 bands away
    o = np.lexsort((ubnd, -s3, upair))
    upair, ubnd, s3, udiag, chance = upair[o], ubnd[o], s3[o], udiag[o], chance[o]
    del o
    ps = np.flatnonzero(np.r_[True, upair[1:] != upair[:-1]])
    pairs = upair[ps]
    lq_p = qlen_block[pairs // n_t]
    lt_p = index.sorted_lengths[pairs % n_t]
    llong = np.maximum(lq_p, lt_p)
    best = s3[ps] - chance[ps]
    best = best / llong
    ok = best >= config.min_seed_score
    if not ok.any():
        return None
    # top max_candidates per query
    qid_local = pairs // n_t
    sel = np.flatnonzero(ok)
    o2 = np.lexsort((pairs[sel] % n_t, -best[sel], qid_local[sel]))
    sel = sel[o2]
    ql = qid_local[sel]
    grp = np.flatnonzero(np.r_[True, ql[1:] != ql[:-1]])
    rank_in = np.arange(len(sel)) - np.repeat(grp, np.diff(np.r_[grp, len(sel)]))
    sel = sel[rank_in < config.max_candidates]
    # seeds: the best band, then the next best bands at least 3 bands away from those chosen
    n_seeds = config.n_seeds
    diags = np.full((len(sel), n_seeds), np.nan, dtype=np.float32)
    diags[:, 0] = udiag[ps[sel]]
    if n_seeds > 1:
        ends = np.r_[ps[1:], len(upair)]
        rows, owner = _expand(ps[sel], ends[sel] - ps[sel])
        chosen = [np.repeat(ubnd[ps[sel]], ends[sel] - ps[sel])]
        usable = s3[rows] >= config.seed_fraction * np.repeat(s3[ps[sel]], ends[sel] - ps[sel])
        gstart = np.cumsum(ends[sel] - ps[sel]) - (ends[sel] - ps[sel])
        big = np.int64(len(rows))
        for k_seed in range(1, n_seeds):
            far = usable.copy()
            for cb in chosen:
                far &= np.abs(ubnd[rows] - cb) > config.band_window
            cand = np.where(far, np.arange(len(rows)), big)
            firsts = np.minimum.reduceat(cand, gstart) if len(rows) else np.zeros(0, np.int64)
            has = firsts < big
            diags[has, k_seed] = udiag[rows[firsts[has]]]
            nxt = np.full(len(sel), -(10**9), dtype=np.int64)
            nxt[has] = ubnd[rows[firsts[has]]]
            chosen.append(nxt[owner])
    qids = item_query[pairs[sel] // n_t]
    tids = index.order[pairs[sel] % n_t]
    return qids, tids.astype(np.int64), best[sel].astype(np.float32), diags


# ------------------------------------------------------------------------------------------------
# stage 2: superposition from seed matches, refinement, ordered band score


def _d0(length: np.ndarray) -> np.ndarray:
    lf = np.maximum(length.astype(np.float64), 19.0)
    return np.maximum(1.24 * np.cbrt(lf - 15.0) - 1.8, 0.5)


def _kabsch_from_moments(
    sw: np.ndarray, sx: np.ndarray, sy: np.ndarray, sxy: np.ndarray, n_points: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Batched weighted superposition (R, t) with y ~ R x + t, from weighted sums.

    sw (B,): sum of weights; sx, sy (B, 3): weighted sums of x and y; sxy (B, 3, 3): weighted sum
    of x y^T. Batches with fewer than 3 points get the identity.
    """
    swc = np.maximum(sw, 1e-9)[:, None]
    cx = sx / swc
    cy = sy / swc
    h = sxy / swc[:, :, None] - cx[:, :, None] * cy[:, None, :]
    u, _, vt = np.linalg.svd(h)
    v = np.swapaxes(vt, 1, 2)
    d = np.sign(np.linalg.det(v @ np.swapaxes(u, 1, 2)))
    d[d == 0] = 1.0
    v[:, :, 2] *= d[:, None]
    r = v @ np.swapaxes(u, 1, 2)  # V diag(1, 1, d) U^T
    few = n_points < 3
    if few.any():
        r[few] = np.eye(3)
        cx[few] = 0.0
        cy[few] = 0.0
    t = cy - np.einsum("bij,bj->bi", r, cx)
    return r, t


def _kabsch(x: np.ndarray, y: np.ndarray, w: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Batched weighted superposition of x onto y; x, y: (B, M, 3), w: (B, M) >= 0."""
    xw = x * w[:, :, None]
    sxy = np.swapaxes(xw, 1, 2) @ y
    return _kabsch_from_moments(w.sum(axis=1), xw.sum(axis=1), (y * w[:, :, None]).sum(axis=1), sxy,
                                (w > 0).sum(axis=1))


def _stage2(
    a_ids: np.ndarray,
    b_ids: np.ndarray,
    diag: np.ndarray,
    coords: list[np.ndarray],
    prep_a: _Prepared,
    coords_b: list[np.ndarray],
    prep_b: _Prepared,
    config: PrefilterConfig,
) -> np.ndarray:
    """Best estimated TM (normalised by the longer) over the seeds of each pair.

    a is the shorter side of each pair (`diag` = position in a - position in b), `coords` and
    `prep_a` are indexed by a_ids, `coords_b`/`prep_b` by b_ids.
    """
    m = len(a_ids)
    best = np.zeros(m, dtype=np.float32)
    if m == 0:
        return best
    la = np.array([len(coords[i]) for i in a_ids], dtype=np.int64)
    lb = np.array([len(coords_b[i]) for i in b_ids], dtype=np.int64)
    llong = np.maximum(la, lb)
    half = np.maximum(config.min_band, np.ceil(config.band_fraction * llong)).astype(np.int64)
    # seeds in turn: a pair tries its next seed only while it is below min_score
    for seed in range(diag.shape[1]):
        inst = np.flatnonzero(np.isfinite(diag[:, seed]) & (best < config.min_score))
        if len(inst) == 0:
            break
        inst_diag = np.rint(diag[inst, seed]).astype(np.int64)
        width = 2 * half[inst] + 1
        order = np.lexsort((width, la[inst]))
        scores = np.zeros(len(inst), dtype=np.float32)
        s = 0
        while s < len(order):  # batches of similar shape, at most batch_cells cells each
            e = s + 1
            mx_la, mx_w = la[inst[order[s]]], width[order[s]]
            while e < len(order):
                nla = max(mx_la, la[inst[order[e]]])
                nw = max(mx_w, width[order[e]])
                if (e - s + 1) * nla * nw > config.batch_cells:
                    break
                mx_la, mx_w = nla, nw
                e += 1
            sel = order[s:e]
            p = inst[sel]
            scores[sel] = _score_batch(
                [coords[i] for i in a_ids[p]],
                [coords_b[i] for i in b_ids[p]],
                [prep_a.codes[i] for i in a_ids[p]],
                [prep_b.codes[i] for i in b_ids[p]],
                [prep_a.raw[i] for i in a_ids[p]],
                [prep_b.raw[i] for i in b_ids[p]],
                inst_diag[sel],
                half[p],
                config,
            )
            s = e
        best[inst] = np.maximum(best[inst], scores)
    return best


def _pad(arrs: list[np.ndarray], length: int, fill: float, dtype: type) -> np.ndarray:
    shape = (len(arrs), length) + arrs[0].shape[1:]
    out: np.ndarray = np.full(shape, fill, dtype=dtype)
    for i, a in enumerate(arrs):
        out[i, : len(a)] = a
    return out


def _anchors(
    ca: list[np.ndarray],
    cb: list[np.ndarray],
    flat: np.ndarray,
    near: np.ndarray,
    shape: tuple[int, ...],
    lmax_a: int,
    lmax_b: int,
    k: int,
) -> np.ndarray:
    """Residue correspondences (B, La, W) of the exact k-mer matches inside `near`."""
    kc_a = _pad(list(ca), lmax_a, -1, np.int64)
    kc_b = _pad(list(cb), lmax_b, -1, np.int64)
    kmatch = (kc_a[:, :, None] == np.take(kc_b.ravel(), flat).reshape(shape)) & (kc_a[:, :, None] >= 0)
    kmatch &= near
    anchor = kmatch.copy()
    for t in range(1, k):  # a k-mer match at (i, j) also pairs residues i+t and j+t: same column
        anchor[:, t:, :] |= kmatch[:, :-t, :]
    return anchor


def _score_batch(
    xa: list[np.ndarray],
    xb: list[np.ndarray],
    ca: list[np.ndarray],
    cb: list[np.ndarray],
    ra: list[np.ndarray],
    rb: list[np.ndarray],
    diag: np.ndarray,
    half: np.ndarray,
    config: PrefilterConfig,
) -> np.ndarray:
    """Estimated TM of each instance (a shorter than b, alignment band around `diag`).

    Band coordinates: column o of row i is residue j = i - diag + o - hw of b.
    """
    bsz = len(xa)
    la = np.array([len(x) for x in xa])
    lb = np.array([len(x) for x in xb])
    lmax_a, lmax_b = int(la.max()), int(lb.max())
    hw = int(half.max())
    width = 2 * hw + 1
    k = config.kmer_size
    llong = np.maximum(la, lb)
    d0 = _d0(llong).astype(np.float32)
    inv_d0sq = (1.0 / (d0 * d0))[:, None, None]
    X = _pad([x.astype(np.float64) for x in xa], lmax_a, 0.0, np.float64)  # (B, La, 3)
    Yp = _pad([x.astype(np.float32) for x in xb], lmax_b, 0.0, np.float32)  # (B, Lb, 3)
    ii = np.arange(lmax_a, dtype=np.int64)[None, :, None]
    oo = np.arange(width, dtype=np.int64)[None, None, :] - hw
    rowok = (ii < la[:, None, None]) & (np.abs(oo) <= half[:, None, None])  # (B, La, W)

    def band(dg: np.ndarray, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray, list[np.ndarray]]:
        """Validity, flat indices into b and coordinates of b over the band of diagonal dg."""
        j = ii - dg[:, None, None] + oo  # (R, La, W)
        valid = (j >= 0) & (j < lb[rows, None, None]) & rowok[rows]
        np.clip(j, 0, lmax_b - 1, out=j)
        flat = (rows[:, None, None] * lmax_b + j).ravel()
        return valid, flat, [np.take(Yp[:, :, c].ravel(), flat).reshape(j.shape) for c in range(3)]

    diag = diag.astype(np.int64).copy()
    everyone = np.arange(bsz)
    valid, flat, Yc = band(diag, everyone)  # Yc: 3 x (B, La, W)
    # seed correspondences: exact k-mer matches within +-1.5 diagonal bands of the seed, without
    # low-complexity k-mers (they pull the superposition onto disordered tails) unless an instance
    # has fewer than `min_anchors` residues matched that way
    near = valid & (np.abs(oo) <= config.diagonal_band * config.band_window + config.diagonal_band // 2)
    anchor = _anchors(ca, cb, flat, near, valid.shape, lmax_a, lmax_b, k)
    few = anchor.reshape(bsz, -1).sum(axis=1) < config.min_anchors
    if few.any():
        anchor[few] = _anchors(ra, rb, flat, near, valid.shape, lmax_a, lmax_b, k)[few]
    b_i, i_i, o_i = np.nonzero(anchor)
    del anchor
    xs = X[b_i, i_i]  # (P, 3)
    ys = np.stack([Yc[c][b_i, i_i, o_i] for c in range(3)], axis=1).astype(np.float64)
    sw = np.bincount(b_i, minlength=bsz).astype(np.float64)
    sx = np.stack([np.bincount(b_i, xs[:, c], minlength=bsz) for c in range(3)], axis=1)
    sy = np.stack([np.bincount(b_i, ys[:, c], minlength=bsz) for c in range(3)], axis=1)
    sxy = np.empty((bsz, 3, 3))
    for c1 in range(3):
        for c2 in range(3):
            sxy[:, c1, c2] = np.bincount(b_i, xs[:, c1] * ys[:, c2], minlength=bsz)
    r, t = _kabsch_from_moments(sw, sx, sy, sxy, sw)
    cutoff2 = (np.maximum(1.5 * d0, 3.5) ** 2)[:, None]
    inf = np.float32(np.inf)
    for it in range(config.refine_iterations + 1):
        xt = (X @ np.swapaxes(r, 1, 2) + t[:, None, :]).astype(np.float32)  # (B, La, 3)
        d2 = np.square(xt[:, :, 0, None] - Yc[0])
        d2 += np.square(xt[:, :, 1, None] - Yc[1])
        d2 += np.square(xt[:, :, 2, None] - Yc[2])
        d2[~valid] = inf
        if it == config.refine_iterations:
            break
        # nearest band residue of b for each residue of a; superpose again on the close ones
        jbest = d2.argmin(axis=2)[:, :, None]  # (B, La, 1)
        dbest = np.take_along_axis(d2, jbest, axis=2)[:, :, 0]
        wr = (dbest < cutoff2).astype(np.float64)
        ysel = np.stack([np.take_along_axis(Yc[c], jbest, axis=2)[:, :, 0] for c in range(3)], axis=2)
        r_new, t_new = _kabsch(X, ysel.astype(np.float64), wr)
        nw = wr.sum(axis=1)
        few = nw < 3
        r_new[few], t_new[few] = r[few], t[few]
        r, t = r_new, t_new
        if it == 0:
            # re-centre the band on the diagonal of the close pairs (a seed a few residues off),
            # where at least a fifth of the shorter chain is close
            shift = np.rint((wr * (jbest[:, :, 0] - hw)).sum(axis=1) / np.maximum(nw, 1.0)).astype(np.int64)
            move = np.flatnonzero((np.abs(shift) >= 2) & (nw >= np.maximum(10, 0.2 * la)))
            if len(move):
                diag[move] -= shift[move]
                v2, _, y2 = band(diag[move], move)
                valid[move] = v2
                for c in range(3):
                    Yc[c][move] = y2[c]

    # per-cell TM term, 0 outside the band (d2 = inf there)
    d2 *= inv_d0sq
    d2 += 1.0
    sc = np.reciprocal(d2, out=d2)
    # ordered matching in band coordinates: (i-1, j) is column o+1 of row i-1, (i-1, j-1) is column o
    prev = np.zeros((bsz, width + 1), dtype=np.float32)  # last column: the row's maximum
    cand = np.empty((bsz, width), dtype=np.float32)
    for i in range(lmax_a):
        np.add(prev[:, :-1], sc[:, i, :], out=cand)
        np.maximum(cand, prev[:, 1:], out=cand)
        np.maximum.accumulate(cand, axis=1, out=prev[:, :-1])
        prev[:, -1] = prev[:, -2]
    return (prev[:, -1] / llong).astype(np.float32)


# ------------------------------------------------------------------------------------------------
# public API


def _run(
    qset: FragmentSet,
    tset: FragmentSet,
    config: PrefilterConfig,
    *,
    self_search: bool,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    if self_search:
        qprep = tprep = _prepare(qset, _states(qset, config, "fragments"), config)
    else:
        if (qset.states_3di is None) != (tset.states_3di is None):
            # compare like with like: C-alpha-approximated states on both sides (or a clear error)
            missing = "queries" if qset.states_3di is None else "targets"
            if not config.ca_fallback:
                raise ValueError(
                    f"{missing}: FragmentSet has no 3Di states (states_3di is None) while the other "
                    "side has them; encode them with rayfold.align.alphabet.encode_3di, or allow the "
                    "C-alpha approximation on both sides (ca_fallback=True)"
                )
            log.info("%s have no 3Di states: approximating them from C-alpha on both sides", missing)
            qset, tset = _without_states(qset), _without_states(tset)
        qprep = _prepare(qset, _states(qset, config, "queries"), config)
        tprep = _prepare(tset, _states(tset, config, "targets"), config)
    if len(qset) == 0 or len(tset) == 0:
        z = np.zeros(0, dtype=np.int64)
        return z, z, np.zeros(0, dtype=np.float32)
    t0 = time.perf_counter()
    index = _build_index(tprep, config)
    seeds = _stage1(qprep, index, config, self_search=self_search)
    t1 = time.perf_counter()
    q, t, diag = seeds.query, seeds.target, seeds.diag
    if self_search and len(q):
        # one row per unordered pair (lower id first; the diagonal flips with it). A pair seen from
        # both sides keeps the seeds of both (the better-scoring side first): the two sides bin
        # their hits differently, and the second side's seeds rescue some pairs
        flip = q > t
        q, t = np.where(flip, t, q), np.where(flip, q, t)
        diag = np.where(flip[:, None], -diag, diag)
        o = np.lexsort((-seeds.score, t, q))
        q, t, diag = q[o], t[o], diag[o]
        first = np.r_[True, (q[1:] != q[:-1]) | (t[1:] != t[:-1])]
        pair_of = np.cumsum(first) - 1
        ns = diag.shape[1]
        both = np.full((int(first.sum()), 2 * ns), np.nan, dtype=np.float32)
        both[:, :ns] = diag[first]
        both[pair_of[~first], ns:] = diag[~first]
        q, t, diag = q[first], t[first], _drop_repeated_seeds(both)
    if not config.structural_check or len(q) == 0:
        return q, t, np.full(len(q), np.nan, dtype=np.float32)
    lq = qprep.lengths[q]
    lt = tprep.lengths[t]
    swap = lq > lt  # stage 2 wants the shorter side first
    score = np.zeros(len(q), dtype=np.float32)
    for flag in (False, True):
        s = np.flatnonzero(swap == flag)
        if len(s) == 0:
            continue
        if not flag:
            score[s] = _stage2(q[s], t[s], diag[s], qset.coords, qprep, tset.coords, tprep, config)
        else:
            score[s] = _stage2(t[s], q[s], -diag[s], tset.coords, tprep, qset.coords, qprep, config)
    keep = score >= config.min_score
    log.debug(
        "prefilter: %d queries x %d targets: %d seeded pairs (%.2fs), %d candidates (%.2fs)",
        len(qset), len(tset), len(q), t1 - t0, int(keep.sum()), time.perf_counter() - t1,
    )
    return q[keep], t[keep], score[keep]


def _drop_repeated_seeds(diag: np.ndarray, min_gap: float = 4.0) -> np.ndarray:
    """NaN for a seed diagonal within `min_gap` of an earlier seed of the same pair."""
    out = diag.copy()
    for c in range(1, diag.shape[1]):
        close = np.zeros(len(diag), dtype=bool)
        for e in range(c):
            close |= np.abs(diag[:, c] - out[:, e]) < min_gap
        out[close, c] = np.nan
    return out


def _without_states(fs: FragmentSet) -> FragmentSet:
    return FragmentSet(fs.ids, fs.flat_coords, fs.offsets, fs.sequences, fs.mean_plddt, None)


def candidate_pairs(fragments: FragmentSet, config: PrefilterConfig = PrefilterConfig()) -> np.ndarray:
    """All-vs-all candidate pairs within one set: int64 (m, 2), i < j, unique, sorted, deterministic."""
    q, t, _ = _run(fragments, fragments, config, self_search=True)
    return _as_pairs(q, t)


def candidate_pairs_scored(
    fragments: FragmentSet, config: PrefilterConfig = PrefilterConfig()
) -> tuple[np.ndarray, np.ndarray]:
    """`candidate_pairs` plus each pair's estimated TM (NaN when the structural check is off)."""
    q, t, s = _run(fragments, fragments, config, self_search=True)
    pairs = _as_pairs(q, t)
    o = np.lexsort((t, q))
    return pairs, s[o]


def search(
    queries: FragmentSet, targets: FragmentSet, config: PrefilterConfig = PrefilterConfig()
) -> np.ndarray:
    """Candidate (query index, target index) pairs, int64 (m, 2), unique, sorted, deterministic.

    For new fragments against existing representatives: every query is searched against every
    target (a fragment present in both sets is not skipped).
    """
    return search_scored(queries, targets, config)[0]


def search_scored(
    queries: FragmentSet, targets: FragmentSet, config: PrefilterConfig = PrefilterConfig()
) -> tuple[np.ndarray, np.ndarray]:
    """`search` plus each pair's estimated TM (normalised by the longer; NaN when the structural
    check is off): the cascade tries the most promising centres first."""
    q, t, s = _run(queries, targets, config, self_search=False)
    pairs = _as_pairs(q, t)
    if not len(pairs):
        return pairs, np.zeros(0, np.float32)
    o = np.lexsort((t, q))
    q, t, s = q[o], t[o], s[o]
    first = np.r_[True, (q[1:] != q[:-1]) | (t[1:] != t[:-1])]
    return pairs, np.maximum.reduceat(s, np.flatnonzero(first)) if len(s) else s


def _as_pairs(q: np.ndarray, t: np.ndarray) -> np.ndarray:
    if len(q) == 0:
        return np.zeros((0, 2), dtype=np.int64)
    pairs = np.stack([q, t], axis=1).astype(np.int64)
    o = np.lexsort((pairs[:, 1], pairs[:, 0]))
    pairs = pairs[o]
    first = np.r_[True, (pairs[1:, 0] != pairs[:-1, 0]) | (pairs[1:, 1] != pairs[:-1, 1])]
    return np.ascontiguousarray(pairs[first])
