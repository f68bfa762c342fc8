"""TM-align wrapper: agreement with the real TMalign program on 1,501 pairs, pruning bound, API.

Reference: /shared/data/tmalign_reference (see its PROVENANCE.md), scored by the TMalign program,
Version 20190822, the Fortran build of Debian's `tm-align`. tmtools 0.3.0 wraps the C++ TM-align,
Version 20210224: a different code base and version of the same method. Both score an alignment
the same way, but their heuristic alignment searches do not always end on the same alignment.
Measured on all 1,501 pairs:

* 1,363 pairs: the same result; TM-scores within 7.4e-6 (the reference prints 5 decimals),
  the same aligned length, RMSD within 0.005 and Seq_ID within 0.0005 (its 2 and 3 decimals).
* 138 pairs: a different alignment. When tmtools is given the reference's own alignment (the
  `alignment=` argument, TM-align's -I), it reproduces the reference TM-scores (within 5.1e-6),
  aligned length (exactly) and RMSD (to its 2 decimals): only the search differs, not the
  scoring. 49 of these are within 1e-3 anyway; the 89 that differ by more are named in
  KNOWN_SEARCH_DIVERGENCE (the largest difference is 0.062: P15943, 765 residues, vs Q29149, 57,
  TM normalised by the 57; tmtools finds the higher min-TM in 61 of the 89). No pair changes side of min-TM >= 0.5 or 0.7.

Runtime: every pair costs ~630 s of CPU time in all (fold_tree pairs of two 600-890 residue AFDB
models ~1.3 s each, the Mycoplasma > 1000-residue pairs 6-11 s each). The default run scores the
1,296 pairs with L1*L2 <= 300,000 (~135 CPU-s) plus every 7th (file order) of the other 205
(30 pairs: 22 fold_tree, 4 Mycoplasma > 1000, ~70 CPU-s) on two worker processes: ~210 CPU-s,
under 2 minutes on 2 idle cores. RAYFOLD_TMALIGN_FULL=1 scores all 1,501 pairs (~610 CPU-s).
"""

from __future__ import annotations

import csv
import gzip
import multiprocessing
import os
import re
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest
from tmtools import tm_align as raw_tm_align

import rayfold.align.tmalign as tmalign_module
from rayfold.align.tmalign import Alignment, align, align_pairs, align_pairs_table, clean_sequence
from rayfold.cluster.rules import reachable
from rayfold.io.structure import read_structure_file, strip_structure_extensions
from rayfold.model.fragset import FragmentSet

REFERENCE = "tmalign_reference"
TM_TOL = 1e-3  # required agreement with the reference TM-scores
SAME_TM = 1e-5  # "same alignment": the reference prints 5 decimals (largest seen 7.4e-6)
RMSD_ROUND = 0.005 + 1e-6  # the reference prints RMSD with 2 decimals
SEQID_ROUND = 0.0005 + 1e-6  # and Seq_ID with 3
SLOW_PRODUCT = 300_000  # pairs with L1*L2 above this are "slow" (sampled in the default run)
SLOW_SAMPLE_STEP = 7

# Pairs (chain_1, chain_2 file names without extensions) where tmtools' C++ TM-align 20210224 and
# the reference's Fortran TM-align 20190822 end their alignment search on different alignments
# whose TM-scores differ by more than TM_TOL. Comments: tmtools - reference, (TM_1, TM_2).
# test_differences_are_in_the_alignment_search_only proves, pair by pair, that scoring the
# reference's alignment with tmtools gives the reference's numbers.
KNOWN_SEARCH_DIVERGENCE = frozenset(
    {
        # scop_globins_foldseek_example
        ("d1ecaa_", "d1or4a_"),  # +0.0018 +0.0012
        ("d1hlba_", "d1q1fa_"),  # +0.0014 +0.0015
        # fold_tree_testdata_af
        ("O73683", "Q28053"),  # +0.0021 -0.0129
        ("O73683", "Q28280"),  # +0.0106 -0.0013
        ("O73683", "Q28748"),  # +0.0048 +0.0608
        ("O73683", "Q28757"),  # +0.0062 +0.0597
        ("O93279", "Q28053"),  # +0.0028 +0.0075
        ("O93279", "Q28748"),  # +0.0010 +0.0256
        ("O93279", "Q28757"),  # +0.0041 +0.0373
        ("P08592", "P14599"),  # -0.0010 -0.0016
        ("P08592", "P15943"),  # +0.0018 +0.0018
        ("P12023", "Q28053"),  # +0.0027 +0.0009
        ("P12023", "Q28280"),  # +0.0016 +0.0261
        ("P14599", "Q28748"),  # +0.0044 +0.0408
        ("P14599", "Q28757"),  # +0.0055 +0.0441
        ("P15943", "Q06335"),  # +0.0013 +0.0014
        ("P15943", "Q28748"),  # +0.0003 +0.0497
        ("P15943", "Q28757"),  # +0.0045 +0.0533
        ("P15943", "Q29149"),  # +0.0131 +0.0625
        ("P51693", "Q03157"),  # +0.0013 +0.0013
        ("P51693", "Q28053"),  # -0.0002 +0.0114
        ("P53601", "Q06481"),  # -0.0022 -0.0022
        ("P53601", "Q28748"),  # +0.0057 +0.0367
        ("P53601", "Q28757"),  # +0.0045 +0.0331
        ("P53601", "Q29149"),  # +0.0030 -0.0058
        ("P79307", "Q28748"),  # +0.0059 +0.0358
        ("P79307", "Q28757"),  # +0.0050 +0.0566
        ("Q03157", "Q28053"),  # -0.0014 -0.0210
        ("Q03157", "Q28748"),  # +0.0017 +0.0442
        ("Q03157", "Q28757"),  # +0.0039 +0.0427
        ("Q03157", "Q95241"),  # +0.0015 +0.0015
        ("Q06335", "Q28748"),  # -0.0031 +0.0216
        ("Q06335", "Q28757"),  # -0.0000 +0.0318
        ("Q06481", "Q06BR2"),  # +0.0004 +0.0011
        ("Q06481", "Q28748"),  # -0.0005 +0.0236
        ("Q06481", "Q28757"),  # -0.0008 +0.0429
        ("Q06481", "Q29149"),  # +0.0005 -0.0022
        ("Q06BR2", "Q28053"),  # +0.0004 +0.0126
        ("Q06BR2", "Q28757"),  # +0.0054 +0.0180
        ("Q06BR2", "Q29149"),  # +0.0048 +0.0304
        ("Q10651", "Q28053"),  # +0.0017 +0.0078
        ("Q10651", "Q28280"),  # +0.0022 +0.0413
        ("Q10651", "Q28748"),  # +0.0024 +0.0269
        ("Q10651", "Q28757"),  # -0.0001 +0.0259
        ("Q28053", "Q5IS80"),  # -0.0013 -0.0000
        ("Q28280", "Q60495"),  # +0.0224 -0.0058
        ("Q28748", "Q5IS80"),  # +0.0065 -0.0002
        ("Q28748", "Q60495"),  # +0.0458 +0.0048
        ("Q28748", "Q95241"),  # +0.0313 +0.0044
        ("Q28757", "Q5IS80"),  # +0.0302 +0.0010
        # mycoplasma_af_subset40
        ("F4MNP7", "F4MPN8"),  # +0.0087 +0.0042
        ("F4MNP7", "F4MQI1"),  # -0.0026 +0.0112
        ("F4MNR2", "F4MPC8"),  # +0.0010 +0.0023
        ("F4MNR2", "F4MPF4"),  # +0.0168 +0.0190
        ("F4MNR2", "F4MPG9"),  # +0.0099 +0.0100
        ("F4MNR2", "F4MQG3"),  # -0.0350 -0.0229
        ("F4MNS8", "F4MQI1"),  # +0.0046 +0.0182
        ("F4MNS8", "F4MR59"),  # -0.0021 -0.0045
        ("F4MNU3", "F4MNV4"),  # -0.0202 -0.0299
        ("F4MNU3", "F4MP05"),  # +0.0029 +0.0002
        ("F4MNX0", "F4MP67"),  # +0.0062 +0.0021
        ("F4MNX0", "F4MP84"),  # +0.0329 -0.0209
        ("F4MNX0", "F4MPC8"),  # -0.0043 -0.0043
        ("F4MNX0", "F4MQT7"),  # -0.0152 +0.0036
        ("F4MNX9", "F4MP05"),  # +0.0033 +0.0036
        ("F4MNZ2", "F4MQT7"),  # +0.0078 +0.0054
        ("F4MP20", "F4MPK8"),  # -0.0030 -0.0030
        ("F4MP20", "F4MPN8"),  # -0.0106 -0.0118
        ("F4MP35", "F4MPS7"),  # +0.0061 +0.0087
        ("F4MP35", "F4MQG3"),  # +0.0104 +0.0098
        ("F4MP50", "F4MP67"),  # +0.0283 +0.0226
        ("F4MP67", "F4MPG9"),  # +0.0133 +0.0128
        ("F4MP84", "F4MR59"),  # -0.0141 -0.0279
        ("F4MPB1", "F4MPS7"),  # -0.0077 -0.0017
        ("F4MPB1", "F4MQT7"),  # -0.0013 -0.0014
        ("F4MPF4", "F4MPK8"),  # +0.0009 +0.0046
        ("F4MPG9", "F4MQG3"),  # +0.0341 +0.0239
        ("F4MPK8", "F4MQZ9"),  # +0.0183 +0.0097
        ("F4MPK8", "F4MR59"),  # -0.0024 -0.0017
        # mycoplasma_af_gt1000
        ("F4MP88", "F4MQV9"),  # +0.0234 +0.0238
        # pf04034_af_mmcif_subset30
        ("AF-A0A010R3W2-F1-model_v3", "AF-A0A163CSX3-F1-model_v3"),  # -0.0062 -0.0062
        ("AF-A0A072P3B3-F1-model_v3", "AF-A0A0D2HMJ9-F1-model_v3"),  # -0.0011 -0.0010
        ("AF-A0A0K0FGM5-F1-model_v3", "AF-A0A3S2MI53-F1-model_v3"),  # +0.0011 +0.0009
        ("AF-A0A0N4WIU5-F1-model_v3", "AF-A0A2P4Y0D1-F1-model_v3"),  # -0.0004 -0.0011
        ("AF-A0A1V4KSZ8-F1-model_v3", "AF-A0A2H6K7W8-F1-model_v3"),  # +0.0015 +0.0014
        ("AF-A0A1Y2C653-F1-model_v3", "AF-A0A318ZNV6-F1-model_v3"),  # +0.0022 +0.0015
        ("AF-A0A1Y2C653-F1-model_v3", "AF-A0A518BPD7-F1-model_v3"),  # -0.0016 +0.0018
        ("AF-A0A2P4Y0D1-F1-model_v3", "AF-A0A6A4L4M8-F1-model_v3"),  # +0.0011 +0.0006
        ("AF-A0A5E3WUM8-F1-model_v3", "AF-A0A5Q4C319-F1-model_v3"),  # +0.0010 +0.0006
    }
)


# --------------------------------------------------------------------------------------------
# reference data


@dataclass(frozen=True)
class RefPair:
    row: int
    set: str
    chain_1: str  # path relative to the data folder
    chain_2: str
    L1: int
    L2: int
    aligned_length: int
    rmsd: float
    seq_id: float
    tm_1: float
    tm_2: float
    tm_min: float

    @property
    def key(self) -> tuple[str, str]:
        return strip_structure_extensions(self.chain_1), strip_structure_extensions(self.chain_2)


@dataclass
class Reference:
    data: Path
    pairs: list[RefPair]
    chains: dict[str, tuple[np.ndarray, str]]  # path -> (float32 C-alpha coords, sequence)
    alignments: dict[tuple[str, str, str], tuple[str, str, str]]  # (set, c1, c2) -> seqxA, seqM, seqyA


_BLOCK_RE = re.compile(r"^### set=(\S+) chain_1=(\S+) chain_2=(\S+)$", re.M)


def _read_alignments(path: Path) -> dict[tuple[str, str, str], tuple[str, str, str]]:
    text = gzip.open(path, "rt").read()
    heads = list(_BLOCK_RE.finditer(text))
    out = {}
    for k, m in enumerate(heads):
        block = text[m.end() : heads[k + 1].start() if k + 1 < len(heads) else len(text)].split("\n")
        i = next(n for n, line in enumerate(block) if line.startswith('(":" denotes'))
        out[m.groups()] = (block[i + 1], block[i + 2], block[i + 3])
    return out


@pytest.fixture(scope="module")
def reference(shared_data: Path) -> Reference:
    folder = shared_data / REFERENCE
    if not (folder / "tmalign_reference_pairs.tsv").is_file():
        pytest.skip(f"no {REFERENCE} in the shared data")
    pairs = []
    with open(folder / "tmalign_reference_pairs.tsv", newline="") as fh:
        for k, r in enumerate(csv.DictReader(fh, delimiter="\t")):
            pairs.append(
                RefPair(
                    row=k, set=r["set"], chain_1=r["chain_1"], chain_2=r["chain_2"],
                    L1=int(r["L1"]), L2=int(r["L2"]), aligned_length=int(r["aligned_length"]),
                    rmsd=float(r["rmsd"]), seq_id=float(r["seq_id"]), tm_1=float(r["tm_norm_chain1"]),
                    tm_2=float(r["tm_norm_chain2"]), tm_min=float(r["tm_min"]),
                )
            )
    assert len(pairs) == 1501
    chains = {}
    for p in pairs:
        for path in (p.chain_1, p.chain_2):
            if path not in chains:
                entry = read_structure_file(shared_data / path)
                assert len(entry.chains) == 1, path
                chains[path] = (entry.chains[0].ca_coords, entry.chains[0].sequence)
    alignments = _read_alignments(folder / "tmalign_raw_outputs.txt.gz")
    return Reference(shared_data, pairs, chains, alignments)


def _selected(pairs: list[RefPair]) -> list[RefPair]:
    """All pairs with RAYFOLD_TMALIGN_FULL=1; else the fast ones plus a fixed sample of the slow."""
    if os.environ.get("RAYFOLD_TMALIGN_FULL", "") not in ("", "0"):
        return list(pairs)
    fast = [p for p in pairs if p.L1 * p.L2 <= SLOW_PRODUCT]
    slow = [p for p in pairs if p.L1 * p.L2 > SLOW_PRODUCT]
    return sorted(fast + slow[::SLOW_SAMPLE_STEP], key=lambda p: p.row)


@pytest.fixture(scope="module")
def scored(reference: Reference) -> dict[int, Alignment]:
    """rayfold.align.tmalign.align on the selected reference pairs (two worker processes, biggest first)."""
    todo = sorted(_selected(reference.pairs), key=lambda p: -p.L1 * p.L2)
    workers = max(1, min(2, os.cpu_count() or 1))
    ctx = multiprocessing.get_context("spawn")  # no fork of a process that may hold Ray threads
    with ProcessPoolExecutor(max_workers=workers, mp_context=ctx) as pool:
        futures = {
            p.row: pool.submit(align, *reference.chains[p.chain_1], *reference.chains[p.chain_2])
            for p in todo
        }
        return {row: f.result() for row, f in sorted(futures.items())}


def _tm_diff(p: RefPair, a: Alignment) -> float:
    return max(abs(a.tm_a - p.tm_1), abs(a.tm_b - p.tm_2))


# --------------------------------------------------------------------------------------------
# agreement with the TMalign program


def test_reader_gives_the_chains_tmalign_read(reference: Reference) -> None:
    """Every input: rayfold's reader keeps exactly the residues (and letters) the reference used."""
    lengths = {}
    for p in reference.pairs:
        lengths.setdefault(p.chain_1, set()).add(p.L1)
        lengths.setdefault(p.chain_2, set()).add(p.L2)
    letters = {}
    for (_set, c1, c2), (seq_x, _, seq_y) in reference.alignments.items():
        letters.setdefault(c1, set()).add(seq_x.replace("-", ""))
        letters.setdefault(c2, set()).add(seq_y.replace("-", ""))
    assert len(reference.alignments) == len(reference.pairs)
    assert set(lengths) == set(reference.chains) == set(letters)
    for path, (coords, seq) in reference.chains.items():
        assert lengths[path] == {len(coords)}, path
        assert letters[path] == {seq}, path
        assert coords.dtype == np.float32 and coords.shape == (len(seq), 3)


def test_tm_scores_agree_with_the_tmalign_program(reference: Reference, scored: dict[int, Alignment]) -> None:
    by_key = {p.key: p for p in reference.pairs}
    assert len(by_key) == len(reference.pairs)
    assert KNOWN_SEARCH_DIVERGENCE <= set(by_key), "an exception names a pair that is not in the reference"
    unexplained, listed_but_close = [], []
    for p in reference.pairs:
        if p.row not in scored:
            continue
        d = _tm_diff(p, scored[p.row])
        if d > TM_TOL and p.key not in KNOWN_SEARCH_DIVERGENCE:
            unexplained.append((p.set, *p.key, round(d, 5)))
        if d <= TM_TOL and p.key in KNOWN_SEARCH_DIVERGENCE:
            listed_but_close.append((p.set, *p.key, round(d, 5)))
    assert not unexplained, f"TM-scores differ by > {TM_TOL}: {unexplained}"
    assert not listed_but_close, f"listed as divergent but now agree (update the list): {listed_but_close}"


def test_same_alignment_gives_the_same_numbers(reference: Reference, scored: dict[int, Alignment]) -> None:
    """Where the TM-scores agree to the printed precision, everything TM-align prints agrees too."""
    same = 0
    for p in reference.pairs:
        a = scored.get(p.row)
        if a is None or _tm_diff(p, a) > SAME_TM:
            continue
        same += 1
        assert a.aligned_length == p.aligned_length, p
        assert abs(a.rmsd - p.rmsd) <= RMSD_ROUND, (p, a)
        assert abs(a.seq_identity - p.seq_id) <= SEQID_ROUND, (p, a)
        assert abs(a.tm_min - p.tm_min) <= SAME_TM
    assert same >= 0.88 * len(scored), f"only {same} of {len(scored)} pairs found the reference alignment"


def test_differences_are_in_the_alignment_search_only(reference: Reference, scored: dict[int, Alignment]) -> None:
    """Every pair that differs: tmtools scoring the reference's own alignment gives its numbers."""
    checked = 0
    for p in reference.pairs:
        a = scored.get(p.row)
        if a is None or _tm_diff(p, a) <= SAME_TM:
            continue
        seq_x, _, seq_y = reference.alignments[(p.set, p.chain_1, p.chain_2)]
        (x, sx), (y, sy) = reference.chains[p.chain_1], reference.chains[p.chain_2]
        res = raw_tm_align(x.astype(np.float64), y.astype(np.float64), sx, sy, alignment=[seq_x, seq_y])
        assert abs(res.tm_norm_chain1 - p.tm_1) <= SAME_TM and abs(res.tm_norm_chain2 - p.tm_2) <= SAME_TM, p
        assert len(res.seqM) - res.seqM.count(" ") == p.aligned_length, p
        assert abs(res.rmsd - p.rmsd) <= RMSD_ROUND, p
        checked += 1
    assert checked < 0.12 * len(scored)


def test_no_merge_decision_changes(reference: Reference, scored: dict[int, Alignment]) -> None:
    """min-TM on either side of 0.5 / 0.7 as the program says; per-set differences stay small."""
    worst: dict[str, float] = {}
    for p in reference.pairs:
        a = scored.get(p.row)
        if a is None:
            continue
        for t in (0.5, 0.7):
            assert (a.tm_min >= t) == (p.tm_min >= t), (p, a)
        worst[p.set] = max(worst.get(p.set, 0.0), _tm_diff(p, a))
    assert set(worst) == {p.set for p in reference.pairs}, "a set was left out of the default run"
    print("\nmax |TM - TM_ref| per set:", {k: round(v, 6) for k, v in worst.items()})
    assert worst["homstrad_within_family"] <= SAME_TM
    assert max(worst.values()) < 0.07


def test_scores_are_deterministic_across_processes(reference: Reference, scored: dict[int, Alignment]) -> None:
    rows = [p for p in reference.pairs if p.row in scored and p.L1 * p.L2 < 40_000][::40]
    assert len(rows) >= 10
    for p in rows:
        args = (*reference.chains[p.chain_1], *reference.chains[p.chain_2])
        assert align(*args) == scored[p.row] == align(*args)


# --------------------------------------------------------------------------------------------
# cluster.reachable: the exact length-ratio pruning every stage applies before TM-align


def _reachable(len_a: int, len_b: int, threshold: float) -> bool:
    return len(reachable(np.array([[0, 1]]), np.array([len_a, len_b]), threshold)) == 1


def test_reachable_never_prunes_a_real_pair(reference: Reference) -> None:
    pruned_at_07 = 0
    for p in reference.pairs:
        short, long_ = sorted((p.L1, p.L2))
        # the bound itself: TM normalised by the longer chain <= Lshort / Llong (5-decimal rounding)
        assert p.tm_min <= short / long_ + 5e-6, p
        if short / long_ < 0.7:
            pruned_at_07 += 1
            assert not _reachable(p.L1, p.L2, 0.7)
            assert p.tm_min < 0.7, p
        for t in np.arange(0.30, 0.951, 0.05):
            if not _reachable(p.L1, p.L2, float(t)):
                assert p.tm_min < t, (p, t)
        assert _reachable(p.L1, p.L2, p.tm_min - 5e-6)
    assert pruned_at_07 > 300  # the property is not vacuous (1/3 of the reference pairs)


def test_reachable_holds_for_tmtools_scores(reference: Reference, scored: dict[int, Alignment]) -> None:
    for p in reference.pairs:
        a = scored.get(p.row)
        if a is not None:
            assert _reachable(p.L1, p.L2, a.tm_min), (p, a)


def test_reachable_hand_cases() -> None:
    assert _reachable(35, 50, 0.7) and _reachable(50, 35, 0.7)  # 35/50 == 0.7 is kept
    assert not _reachable(34, 50, 0.7) and not _reachable(50, 34, 0.7)
    assert _reachable(100, 100, 1.0) and _reachable(100, 100, 0.7)
    assert not _reachable(99, 100, 1.0)
    assert _reachable(3, 7, 3 / 7)  # equality survives float rounding
    assert _reachable(1, 1000, 0.0)
    pairs = np.array([[0, 1], [1, 2], [0, 2], [2, 0]])
    assert reachable(pairs, np.array([50, 35, 34]), 0.7).tolist() == [[0, 1], [1, 2]]  # rows kept in order


def test_reachable_on_an_exact_sub_chain() -> None:
    """A 35-residue piece of a 50-residue chain scores the bound 35/50 against it (to rounding)."""
    chain = _walk(50, np.random.default_rng(7))
    a = align(chain[:35], "A" * 35, chain, "A" * 50)
    assert a.tm_a == pytest.approx(1.0, abs=1e-9) and a.aligned_length == 35
    assert a.tm_b == pytest.approx(0.7, abs=1e-9) and a.tm_min == a.tm_b
    assert _reachable(35, 50, a.tm_min)


# --------------------------------------------------------------------------------------------
# align: inputs


def _walk(n: int, rng: np.random.Generator) -> np.ndarray:
    """A random C-alpha-like trace: 3.8 A steps, no two points closer than ~3.8 A along it."""
    steps = rng.normal(size=(n, 3))
    steps *= 3.8 / np.linalg.norm(steps, axis=1, keepdims=True)
    return np.cumsum(steps, axis=0)


@pytest.fixture(scope="module")
def small_pair(reference: Reference) -> tuple[np.ndarray, str, np.ndarray, str]:
    p = next(p for p in reference.pairs if p.set == "homstrad_within_family" and max(p.L1, p.L2) < 150)
    return (*reference.chains[p.chain_1], *reference.chains[p.chain_2])


def test_array_layouts_and_dtypes_do_not_change_the_result(small_pair) -> None:
    x, sx, y, sy = small_pair
    base = align(x, sx, y, sy)
    x64 = x.astype(np.float64)
    strided = np.zeros((len(y), 6))
    strided[:, ::2] = y
    for xa, ya in (
        (x64, y.astype(np.float64)),
        (np.asfortranarray(x64), strided[:, ::2]),
        (x64.tolist(), y),
    ):
        assert align(xa, sx, ya, sy) == base
    assert isinstance(base.aligned_length, int) and isinstance(base.tm_a, float)
    assert 0 < base.tm_min <= base.tm_max <= 1 and 0 <= base.seq_identity <= 1


def test_sequence_letters(small_pair) -> None:
    x, sx, y, sy = small_pair
    base = align(x, sx, y, sy)
    assert align(x, sx.lower(), y, sy) == base  # case does not matter
    # letters do not change the structure alignment; odd ones become X (still one byte each)
    odd = "".join("-*é?1 "[k % 6] for k in range(len(sx)))
    a = align(x, odd, y, sy)
    assert (a.tm_a, a.tm_b, a.rmsd, a.aligned_length) == (base.tm_a, base.tm_b, base.rmsd, base.aligned_length)
    assert a.seq_identity <= base.seq_identity
    assert clean_sequence("acdXy-*é.b") == "ACDXYXXXXB"
    assert clean_sequence("ACDEFGHIKLMNPQRSTVWY") == "ACDEFGHIKLMNPQRSTVWY"
    # identity counts equal letters at aligned pairs, as TM-align does
    same = align(x, "X" * len(sx), y, "X" * len(sy))
    assert same.seq_identity == 1.0


def test_self_alignment(small_pair) -> None:
    x, sx, _, _ = small_pair
    a = align(x, sx, x, sx)
    assert a.tm_a == pytest.approx(1.0, abs=1e-9) and a.tm_b == pytest.approx(1.0, abs=1e-9)
    assert a.rmsd < 1e-3 and a.aligned_length == len(sx) and a.seq_identity == 1.0


def test_unusable_inputs_raise_value_error() -> None:
    rng = np.random.default_rng(3)
    h = _walk(20, rng)
    s = "A" * 20
    with pytest.raises(ValueError, match="19 letters but there are 20"):
        align(h, s[:-1], h, s)
    with pytest.raises(ValueError, match="at least 3"):
        align(h[:2], "AA", h, s)
    with pytest.raises(ValueError, match="at least 3"):
        align(h, s, h[:0], "")
    with pytest.raises(ValueError, match="shape"):
        align(h[:, :2], s, h, s)
    with pytest.raises(ValueError, match="shape"):
        align(h.ravel(), s * 3, h, s)
    bad = h.copy()
    bad[5, 1] = np.nan  # tmtools would never return on this
    with pytest.raises(ValueError, match="non-finite"):
        align(h, s, bad, s)
    bad[5, 1] = np.inf
    with pytest.raises(ValueError, match="non-finite"):
        align(bad, s, h, s)
    with pytest.raises(TypeError):
        align(h, b"A" * 20, h, s)


def test_three_residues_are_enough() -> None:
    h = _walk(30, np.random.default_rng(4))
    a = align(h[:3], "AAA", h, "A" * 30)
    assert a.aligned_length == 3 and 0 < a.tm_b <= 3 / 30 + 1e-12
    assert align(h[:4], "AAAA", h[:3], "AAA").aligned_length == 3


# --------------------------------------------------------------------------------------------
# align_pairs / align_pairs_table


@pytest.fixture(scope="module")
def fragments(reference: Reference) -> FragmentSet:
    paths = sorted(
        {p.chain_1 for p in reference.pairs if p.set == "scop_globins_foldseek_example"}
    )[:5]
    return FragmentSet.from_arrays(
        [f"frag_{strip_structure_extensions(k)}" for k in paths],
        [reference.chains[k][0] for k in paths],
        [reference.chains[k][1] for k in paths],
    )


def test_align_pairs_columns_and_values(fragments: FragmentSet) -> None:
    pairs = np.array([[0, 1], [1, 0], [2, 4], [3, 3], [0, 1]], dtype=np.int32)
    out = align_pairs(fragments, pairs)
    assert list(out) == ["i", "j", "tm_a", "tm_b", "rmsd", "aligned_length", "seq_identity", "cov_a", "cov_b"]
    assert all(isinstance(v, np.ndarray) and v.shape == (5,) for v in out.values())
    assert out["i"].dtype == np.int64 and out["aligned_length"].dtype == np.int32
    assert out["i"].tolist() == [0, 1, 2, 3, 0] and out["j"].tolist() == [1, 0, 4, 3, 1]
    for r, (i, j) in enumerate(pairs.tolist()):
        a = align(fragments.coords[i], fragments.sequences[i], fragments.coords[j], fragments.sequences[j])
        got = (out["tm_a"][r], out["tm_b"][r], out["rmsd"][r], out["aligned_length"][r], out["seq_identity"][r])
        assert got == (a.tm_a, a.tm_b, a.rmsd, a.aligned_length, a.seq_identity)
    assert out["tm_a"][3] == pytest.approx(1.0) and out["aligned_length"][3] == fragments.lengths[3]
    # tm_a is normalised by fragment i: swapping the pair swaps the normalisations (lengths differ)
    assert fragments.lengths[0] != fragments.lengths[1]


def test_align_pairs_table(fragments: FragmentSet) -> None:
    pairs = np.array([[0, 2], [4, 1]])
    t = align_pairs_table(fragments, pairs)
    assert isinstance(t, pa.Table) and t.num_rows == 2
    assert t.column_names == [
        "query_id", "target_id", "i", "j", "tm_a", "tm_b", "rmsd", "aligned_length", "seq_identity", "cov_a", "cov_b"
    ]
    assert t.schema.field("query_id").type == pa.string() and t.schema.field("tm_a").type == pa.float64()
    assert t.column("query_id").to_pylist() == [fragments.ids[0], fragments.ids[4]]
    assert t.column("target_id").to_pylist() == [fragments.ids[2], fragments.ids[1]]
    cols = align_pairs(fragments, pairs)
    assert t.column("tm_b").to_pylist() == cols["tm_b"].tolist()


def test_align_pairs_empty_and_bad_input(fragments: FragmentSet) -> None:
    empty = align_pairs(fragments, np.empty((0, 2), dtype=np.int64))
    assert all(len(v) == 0 for v in empty.values())
    t = align_pairs_table(fragments, np.empty((0, 2), dtype=np.int64))
    assert t.num_rows == 0 and t.schema.field("target_id").type == pa.string()
    with pytest.raises(IndexError):
        align_pairs(fragments, np.array([[0, 5]]))
    with pytest.raises(IndexError):
        align_pairs(fragments, np.array([[-1, 0]]))
    with pytest.raises(ValueError):
        align_pairs(fragments, np.array([0, 1, 2]))
    with pytest.raises(ValueError):
        align_pairs(fragments, np.array([[0.0, 1.0]]))


# --------------------------------------------------------------------------------------------
# overhead


def test_wrapper_adds_under_two_percent(reference: Reference, monkeypatch: pytest.MonkeyPatch) -> None:
    """The wrapper's own work (input checks, reading the result) is < 2% of TM-align's time.

    Measured as CPU time: tmtools alone on 60 real pairs, then the wrapper on the same pairs with
    tmtools replaced by a stub that hands back the results it returned (so only the wrapper runs).
    """
    chosen = [p for p in reference.pairs if p.set == "scop_globins_foldseek_example"][:60]
    inputs = [(*reference.chains[p.chain_1], *reference.chains[p.chain_2]) for p in chosen]
    prepared = [
        (np.ascontiguousarray(x, dtype=np.float64), sx, np.ascontiguousarray(y, dtype=np.float64), sy)
        for x, sx, y, sy in inputs
    ]
    t0 = time.process_time()
    results = [raw_tm_align(x, y, sx, sy) for x, sx, y, sy in prepared]
    raw = time.process_time() - t0
    replay = iter(results * 5)
    monkeypatch.setattr(tmalign_module, "_tm_align", lambda x, y, sx, sy: next(replay))
    t0 = time.process_time()
    for _ in range(5):
        wrapped = [align(*args) for args in inputs]
    wrapper = (time.process_time() - t0) / 5
    assert [w.tm_a for w in wrapped] == [r.tm_norm_chain1 for r in results]
    assert wrapper < 0.02 * raw, f"wrapper {wrapper * 1e3:.2f} ms vs tmtools {raw * 1e3:.1f} ms"


def test_coverage_is_the_span_of_aligned_residues(shared_data: Path):
    """A fragment aligned against a copy of its first 60% covers 60% of itself and all of the copy."""
    import numpy as np

    from rayfold.align.tmalign import align
    from rayfold.io.structure import read_structure_file

    chain = read_structure_file(shared_data / "foldseek" / "foldseek_example_scop" / "d1mbaa_.pdb.gz").chains[0]
    n = chain.n_residues
    part = int(0.6 * n)
    result = align(chain.ca_coords, chain.sequence, chain.ca_coords[:part], chain.sequence[:part])
    assert result.cov_b == 1.0
    assert abs(result.cov_a - part / n) <= 2 / n
    assert np.isclose(result.tm_b, 1.0, atol=1e-6)


def test_estimated_seconds_follow_the_measured_costs() -> None:
    """Task sizes rest on this estimate: within 2x of tmtools' one-core times (FIELD-NOTES), growing
    faster than the product of the lengths, symmetric."""
    from rayfold.align.tmalign import estimated_seconds

    measured = {100: 0.010, 200: 0.045, 400: 0.210, 800: 2.0}
    lengths = np.array(list(measured))
    got = estimated_seconds(lengths, lengths)
    for want, have in zip(measured.values(), got.tolist(), strict=True):
        assert want / 2 <= have <= want * 2
    assert estimated_seconds(np.array([100]), np.array([400]))[0] == estimated_seconds(np.array([400]),
                                                                                      np.array([100]))[0]
    assert estimated_seconds(np.array([800]), np.array([800]))[0] > 16 * estimated_seconds(np.array([200]),
                                                                                           np.array([200]))[0]


def test_pair_seconds_in_chunks_equal_the_estimate_at_once():
    from rayfold.align.tmalign import estimated_seconds
    from rayfold.runtime.clustering import pair_seconds, total_seconds

    rng = np.random.default_rng(3)
    lengths = rng.integers(20, 900, size=500).astype(np.int32)
    pairs = rng.integers(0, 500, size=(2_001, 2)).astype(np.int32)
    skip = rng.random(len(pairs)) < 0.3
    expected = np.where(skip, 0.0, estimated_seconds(lengths[pairs[:, 0]], lengths[pairs[:, 1]]))
    for chunk in (1, 7, 8_192):
        np.testing.assert_array_equal(pair_seconds(lengths, pairs, skip, chunk=chunk), expected)
        assert total_seconds(lengths, pairs, skip, chunk=chunk) == pytest.approx(expected.sum(), rel=1e-12)
