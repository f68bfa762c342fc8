"""The built-in engine's distributed pieces on a real local Ray: shards read by tasks from part files,
blocked TM-align, and the k-mer round's Ray Data shuffle against the same computation in-process."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest

from conftest import EXAMPLES_AFDB
from rayfold.align.kmers import local_candidates
from rayfold.align.tmalign import align_pairs
from rayfold.cluster.cascade import best_tries, centre_priority
from rayfold.cluster.rules import ClusterConfig
from rayfold.config import FragmentConfig
from rayfold.fragment.stage import FragmentStage
from rayfold.io.storage import list_inputs, parquet_parts, write_parquet
from rayfold.model.fragset import FragmentSet
from rayfold.runtime.clustering import KMER_ROWS_PER_TASK, RayAligner, RayKmerCandidates, load_fragments
from rayfold.runtime.shards import shard_in_memory

pytestmark = pytest.mark.ray


@pytest.fixture(scope="module")
def fragments_table() -> pa.Table:
    paths = sorted(str(p) for p in EXAMPLES_AFDB.iterdir() if p.name.endswith(".gz"))
    table = FragmentStage(FragmentConfig()).process(list_inputs(paths)).fragments
    assert table.num_rows > 20
    return table


def write_parts(table: pa.Table, folder: Path, rows_per_part: int, seed: int) -> None:
    """The same rows in parts of another size and order (as other unit sizes would write them)."""
    order = np.random.default_rng(seed).permutation(table.num_rows)
    for k, start in enumerate(range(0, table.num_rows, rows_per_part)):
        write_parquet(table.take(pa.array(order[start:start + rows_per_part])), str(folder / f"part-{k:03d}.parquet"))


def test_shards_hold_the_passed_fragments_whatever_the_part_layout(ray_local, fragments_table, tmp_path):
    import ray

    expected = FragmentSet.from_table(fragments_table, passed_only=True)
    for rows_per_part, shard_size in ((7, 5), (50, 1000)):
        folder = tmp_path / f"parts{rows_per_part}"
        write_parts(fragments_table, folder, rows_per_part, seed=rows_per_part)
        assert len(parquet_parts(str(folder))) == -(-fragments_table.num_rows // rows_per_part)
        sharded = load_fragments(str(folder), shard_size=shard_size)
        assert list(sharded.index.ids) == expected.ids
        assert sharded.index.lengths.tolist() == expected.lengths.tolist()
        assert sharded.n_shards == -(-len(expected) // shard_size)
        shards = ray.get(sharded.refs)
        for g in range(len(expected)):  # every fragment where the index says, whole
            shard, p = shards[int(sharded.shard_of(g))], int(sharded.position(g))
            assert shard.ids[p] == expected.ids[g]
            assert np.array_equal(shard.coords[p], expected.coords[g])
            assert shard.sequences[p] == expected.sequences[g]
            assert shard.states_3di[p] == expected.states_3di[g]
        assert sum(len(s) for s in shards) == len(expected)


def test_read_groups_read_each_part_once_and_keep_contiguous_parts_together() -> None:
    from rayfold.runtime.shards import read_groups

    rng = np.random.default_rng(5)
    # parts of 30 fragments over a contiguous id range each (one release, inputs in id order)
    contiguous = np.repeat(rng.permutation(40), 30)
    # parts whose ids spread over every shard (tar shards of proteomes): each in every shard
    spread = rng.integers(0, 40, 1200)
    for part in (contiguous, spread):
        groups = read_groups(part, 100)
        assert sorted(np.concatenate(groups).tolist()) == sorted(set(part.tolist()))  # each part once
    group_of = {p: k for k, members in enumerate(read_groups(contiguous, 100)) for p in members.tolist()}
    in_order = [group_of[p] for p in contiguous.tolist()]
    assert in_order == sorted(in_order)  # groups follow the global order
    # a shard of 100 fragments overlaps at most two groups
    assert max(len(set(in_order[s:s + 100])) for s in range(0, len(contiguous), 100)) <= 2
    assert read_groups(np.zeros(0, np.int64), 10) == []


def test_blocks_of_pairs_in_order_are_those_of_one_sort() -> None:
    """Pairs whose first ends are in order are sorted a shard at a time: the same rows in the same
    order as one stable sort of every pair's shard pair, and the rows are int32."""
    from rayfold.cluster.rules import is_sorted
    from rayfold.model.fragset import FragmentIndex
    from rayfold.runtime.shards import ShardedFragments

    rng = np.random.default_rng(5)
    n = 90
    sharded = ShardedFragments(FragmentIndex([f"f{k:03d}" for k in range(n)], np.full(n, 50), np.full(n, 90.0)),
                               20, [None] * 5)
    for a in (np.sort(rng.integers(0, n, 700)), rng.integers(0, n, 700), np.sort(rng.integers(40, 60, 50))):
        b = rng.integers(0, n, len(a)).astype(np.int32)
        blocks = list(sharded.blocks(a, b, 7))
        rows = np.concatenate([r for *_, r in blocks])
        key = (a // 20) * 5 + b // 20
        assert rows.tolist() == np.argsort(key, kind="stable").tolist()
        assert rows.dtype == np.int32 and all(len(r) <= 7 for *_, r in blocks)
        assert all({*(a[r] // 20).tolist()} == {sa} and {*(b[r] // 20).tolist()} == {sb} for sa, sb, r in blocks)
        assert is_sorted(a) == bool(np.all(np.diff(a) >= 0))
        plan = sharded.block_plan(a, b, 7)  # the same blocks as arrays
        assert len(plan) == len(blocks) and plan.rows.dtype == np.int32
        assert all(plan[k][:2] == blocks[k][:2] and plan[k][2].tolist() == blocks[k][2].tolist()
                   for k in range(len(blocks)))
    assert list(sharded.blocks(np.zeros(0, np.int64), np.zeros(0, np.int64), 7)) == []
    assert len(sharded.block_plan(np.zeros(0, np.int64), np.zeros(0, np.int64), 7)) == 0
    assert is_sorted(np.arange(200_000)) and not is_sorted(np.r_[np.arange(70_000), 3])
    assert is_sorted(np.r_[np.arange(70_000), 69_999]) and not is_sorted(np.r_[np.arange(70_000), 69_999], strict=True)


def test_blocks_cut_by_cost_keep_the_rows_in_order() -> None:
    """Costs only move the cuts: the rows run in the same order as blocks by count, no block spans
    two shard pairs or exceeds the row limit, and a block reaches the cost limit with its last row
    at most (a row that costs more than the limit is alone)."""
    from rayfold.model.fragset import FragmentIndex
    from rayfold.runtime.shards import ShardedFragments

    rng = np.random.default_rng(3)
    n = 60
    index = FragmentIndex([f"f{k:03d}" for k in range(n)], rng.integers(30, 900, n), np.full(n, 90.0))
    sharded = ShardedFragments(index, 25, [None, None, None])
    pairs = rng.integers(0, n, size=(500, 2))
    cost = rng.exponential(1.0, len(pairs))
    cost[::50] = 9.0  # a few pairs dearer than the limit
    plain = list(sharded.blocks(pairs[:, 0], pairs[:, 1], 16))
    asked = []

    def cost_of(rows: np.ndarray) -> np.ndarray:
        asked.append(len(rows))
        return cost[rows]

    costed = list(sharded.blocks(pairs[:, 0], pairs[:, 1], 16, cost_of, 2.0))
    assert sum(asked) == len(pairs) and max(asked) < len(pairs)  # asked a run at a time, each row once
    assert np.concatenate([r for *_, r in costed]).tolist() == np.concatenate([r for *_, r in plain]).tolist()
    assert len(costed) > len(plain)
    for a, b, rows in costed:
        assert len(rows) <= 16
        assert set(sharded.shard_of(pairs[rows, 0]).tolist()) == {a}
        assert set(sharded.shard_of(pairs[rows, 1]).tolist()) == {b}
        assert cost[rows[:-1]].sum() < 2.0
    assert all(len(rows) == 1 or cost[rows[0]] < 2.0 for *_, rows in costed if cost[rows[0]] >= 9.0)


def test_a_few_long_pairs_spread_over_several_tasks(ray_local, fragments_table):
    """The singleton audit's handful of long pairs must not run serially in one task."""
    fs = FragmentSet.from_table(fragments_table, passed_only=True)
    longest = np.argsort(fs.lengths)[-6:]
    pairs = np.array([(a, b) for a in longest for b in longest if a < b])
    aligner = RayAligner(shard_in_memory(fs, 4096), pairs_per_task=128, progress=False)
    blocks, results = aligner._results(pairs, "test")
    assert len(blocks) >= 4
    got = dict(results)
    assert sorted(got) == list(range(len(blocks)))
    assert sorted(np.concatenate([rows for *_, rows in blocks]).tolist()) == list(range(len(pairs)))


def test_blocked_alignment_equals_one_process(ray_local, fragments_table):
    fs = FragmentSet.from_table(fragments_table, passed_only=True)
    rng = np.random.default_rng(0)
    pairs = rng.integers(0, len(fs), size=(40, 2))
    pairs = pairs[pairs[:, 0] != pairs[:, 1]]
    got = RayAligner(shard_in_memory(fs, 6), pairs_per_task=4, progress=False).align(pairs, desc="test")
    want = align_pairs(fs, pairs)
    assert got["i"].tolist() == pairs[:, 0].tolist() and got["j"].tolist() == pairs[:, 1].tolist()
    for key in ("tm_a", "tm_b", "cov_a", "cov_b"):
        assert np.allclose(got[key], want[key])


def test_a_memo_answers_its_pairs_and_the_rest_is_aligned(ray_local, fragments_table):
    """Stored alignments answer only pairs in their orientation; whole blocks, parts of blocks and
    no block at all give the same columns as aligning everything, and only the rest is aligned."""
    from rayfold.cluster.evidence import COLUMNS, take_rows
    from rayfold.cluster.memo import AlignmentMemo

    fs = FragmentSet.from_table(fragments_table, passed_only=True)
    rng = np.random.default_rng(1)
    pairs = rng.integers(0, len(fs), size=(40, 2))
    pairs = pairs[pairs[:, 0] != pairs[:, 1]]
    want = align_pairs(fs, pairs)
    stored = np.zeros(len(pairs), bool)
    stored[:12] = True  # the first blocks whole (4 pairs a task), then every third pair
    stored[12::3] = True
    stored[-1] = False  # stored below the other way round only
    memo = AlignmentMemo()
    memo.store.add(take_rows({k: want[k] for k in COLUMNS}, stored))
    # a stored (j, i) row does not answer (i, j): TM-align is not symmetric
    memo.store.add({**{k: want[k][-1:] for k in COLUMNS}, "i": pairs[-1:, 1], "j": pairs[-1:, 0]})
    fresh: list = []
    aligner = RayAligner(shard_in_memory(fs, 6), pairs_per_task=4, progress=False, memo=memo, on_aligned=fresh.append)
    got = aligner.align(pairs, desc="test")
    for key in ("tm_a", "tm_b", "cov_a", "cov_b", "rmsd", "aligned_length"):
        assert np.allclose(got[key], want[key]), key
    assert aligner.calls == int((~stored).sum())
    aligned = {(int(i), int(j)) for part in fresh for i, j in zip(part["i"], part["j"])}
    assert aligned == {tuple(p) for p in pairs[~stored].tolist()}


@pytest.mark.parametrize("rows_per_task", [10, KMER_ROWS_PER_TASK], ids=["shuffle", "one-task"])
def test_the_ray_data_shuffle_gives_the_in_process_candidates(ray_local, fragments_table, rows_per_task):
    fs = FragmentSet.from_table(fragments_table, passed_only=True)
    config = ClusterConfig(kmer_size=5, kmers_per_fragment=40, centres_per_fragment=2)
    priority = centre_priority(fs.lengths, fs.mean_plddt, fs.ids)
    members = np.arange(len(fs))
    sharded = shard_in_memory(fs, 7)
    held_before = _driver_references()
    candidates = RayKmerCandidates(sharded, config, progress=False, rows_per_task=rows_per_task)
    member, centre, shared = candidates(members, priority)
    assert len(member) > 0, "the example set has no shared k-mers at all: the test would prove nothing"
    m, c, s = local_candidates(fs.states_3di, fs.lengths, config.kmer_config(), config.coverage)(members, priority)
    short, long = np.minimum(fs.lengths[m], fs.lengths[c]), np.maximum(fs.lengths[m], fs.lengths[c])
    ok = short >= min(config.coverage, config.merge_threshold) * long
    m, c, s = m[ok], c[ok], s[ok]
    expected = set()
    for x in np.unique(m).tolist():
        rows = sorted(zip(-s[m == x], priority[c[m == x]], c[m == x]))[:config.centres_per_fragment]
        expected |= {(x, int(cc), int(-ss)) for k, (ss, _, cc) in enumerate(rows) if k == 0 or -ss >= 2}
    assert set(zip(member.tolist(), centre.tolist(), shared.tolist())) == expected
    assert (priority[centre] < priority[member]).all()  # every edge points to a better centre
    # ranked in the shuffle's tasks: the tries the driver would rank itself, sorted by member and attempt
    m, c, a = candidates.ranked(members, priority)
    want = best_tries(member.astype(np.int64), centre.astype(np.int64), shared, priority[centre],
                      config.centres_per_fragment)
    assert list(zip(m.tolist(), a.tolist(), c.tolist())) == sorted(zip(want[0].tolist(), want[3].tolist(),
                                                                       want[1].tolist()))
    # the k-mer tables and the tasks that made them are let go once the tries are back (Ray Data's
    # plan in the shuffle's task held them in reference cycles: pinned in the object store all run)
    deadline = time.monotonic() + 20
    while _driver_references() - held_before and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not _driver_references() - held_before


def _driver_references() -> set:
    """Object ids the driver's core worker still tracks (its own, borrowed, or kept for lineage)."""
    import gc

    import ray

    gc.collect()
    return set(ray._private.worker.global_worker.core_worker.get_all_reference_counts())


def test_the_sharded_scored_search_checks_at_most_limit_candidates_per_query_and_target_shard(ray_local,
                                                                                               fragments_table):
    from dataclasses import replace

    from rayfold.align.prefilter import PrefilterConfig, search_scored
    from rayfold.cluster.algorithm import unique_scored_pairs
    from rayfold.runtime.clustering import RayPrefilter

    fs = FragmentSet.from_table(fragments_table, passed_only=True)
    everyone = np.arange(len(fs))
    prefilter = RayPrefilter(shard_in_memory(fs, 5), PrefilterConfig(), progress=False)

    def scored(limit: int | None = None) -> tuple[np.ndarray, np.ndarray]:
        blocks = list(prefilter.blocks(everyone, everyone, desc="test", limit=limit))
        return unique_scored_pairs(np.concatenate([p for p, _ in blocks]), np.concatenate([s for _, s in blocks]))

    full, full_tm = scored()
    assert len(full) > 2, "the example set has no candidate pairs: the test would prove nothing"
    limited, limited_tm = scored(limit=1)
    # the same search, block by block in this process: each (query, target shard) keeps its best seed
    want_pairs, want_tm = [], []
    for start in range(0, len(fs), 5):
        targets = everyone[start:start + 5]
        pairs, tm = search_scored(fs, fs.subset(targets), replace(PrefilterConfig(), max_candidates=1))
        pairs = np.column_stack([pairs[:, 0], targets[pairs[:, 1]]])
        keep = pairs[:, 0] != pairs[:, 1]
        want_pairs.append(pairs[keep])
        want_tm.append(tm[keep])
    want, want_score = unique_scored_pairs(np.concatenate(want_pairs), np.concatenate(want_tm))
    assert limited.tolist() == want.tolist() and np.allclose(limited_tm, want_score)
    assert len(limited) < len(full)


def test_iter_tasks_stays_within_max_ahead_of_a_straggler(ray_local):
    """A slow first task: later ones finish first, and submissions stop `max_ahead` places after it
    (what bounds the finished results an in-order caller holds)."""
    from rayfold.runtime.session import Submissions, iter_tasks, ray_remote

    def pause(seconds: float) -> float:  # defined here: pickled by value (workers cannot import tests)
        import time

        time.sleep(seconds)
        return seconds

    remote = ray_remote(pause)
    submitted: list[int] = []

    def submit(k: int):
        submitted.append(k)
        return remote.remote(3.0 if k == 0 else 0.0)

    order, furthest_before_first = [], None
    for index, _ in iter_tasks(Submissions(40, submit), desc="t", progress=False,
                               max_in_flight=4, max_ahead=6):
        order.append(index)
        if index == 0:
            furthest_before_first = max(submitted)
    assert sorted(order) == list(range(40)) and order[0] != 0  # the straggler did finish last of its window
    assert furthest_before_first is not None and furthest_before_first < 6


DRIVER_SCRIPT = """
import sys
import numpy as np
from rayfold.cluster.cascade import centre_priority
from rayfold.cluster.rules import ClusterConfig
from rayfold.runtime.clustering import RayKmerCandidates, load_fragments
from rayfold.runtime.session import ray_session

with ray_session(sys.argv[2]):
    sharded = load_fragments(sys.argv[1], shard_size=7)
    index = sharded.index
    priority = centre_priority(index.lengths, index.mean_plddt, index.ids)
    config = ClusterConfig(kmer_size=5, kmers_per_fragment=40, centres_per_fragment=2)
    member, _, _ = RayKmerCandidates(sharded, config, progress=False, rows_per_task=10)(
        np.arange(len(index)), priority)
    print(len(member), "ray.data" in sys.modules)
"""


def test_the_driver_never_runs_ray_data_for_the_shuffle(ray_local, fragments_table, tmp_path):
    """Ray Data's executor held 64 MB of the driver (measured at 10^4 fragments with the shuffle
    forced): the shuffle is driven from a task, so the driver never even imports it."""
    import subprocess
    import sys

    import ray

    write_parts(fragments_table, tmp_path / "fragments", 50, seed=0)
    done = subprocess.run([sys.executable, "-c", DRIVER_SCRIPT, str(tmp_path / "fragments"),
                           ray.get_runtime_context().gcs_address], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    tries, imported = done.stdout.split()[-2:]
    assert int(tries) > 0 and imported == "False"


def test_shard_of_a_fragment_is_computed_from_its_index() -> None:
    """Shard and row come from the global index alone (nothing held per fragment); `by_shard` splits
    sorted indices as a pass per shard would."""
    from rayfold.model.fragset import FragmentIndex
    from rayfold.runtime.shards import ShardedFragments

    n = 103
    index = FragmentIndex([f"f{k:03d}" for k in range(n)], np.full(n, 50), np.full(n, 90.0))
    sharded = ShardedFragments(index, 25, [None] * 5)
    g = np.arange(n)
    assert sharded.shard_of(g).tolist() == (g // 25).tolist() and sharded.position(g).tolist() == (g % 25).tolist()
    assert np.concatenate([sharded.in_shard(s) for s in range(5)]).tolist() == g.tolist()
    chosen = np.unique(np.random.default_rng(0).integers(0, n, 40))
    split = sharded.by_shard(chosen)
    assert len(split) == 5
    assert [part.tolist() for part in split] == [chosen[(chosen // 25) == s].tolist() for s in range(5)]
    assert [len(p) for p in sharded.by_shard(np.zeros(0, np.int64))] == [0] * 5
