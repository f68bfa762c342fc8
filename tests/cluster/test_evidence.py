"""The evidence store (rayfold.cluster.evidence): the same slices in memory and spilled to files."""

from __future__ import annotations

import numpy as np
import pytest

from rayfold.cluster.evidence import (
    COLUMNS,
    I_REPRESENTS_J,
    J_REPRESENTS_I,
    Across,
    Among,
    Both,
    Either,
    Evidence,
    OfPairs,
    Touches,
    edge_bits,
    edges_of,
    worth_keeping,
)
from rayfold.cluster.pairscores import PairScores
from rayfold.cluster.rules import ClusterConfig, first_pass_edges


def random_columns(rng: np.random.Generator, rows: int, n: int) -> dict[str, np.ndarray]:
    i = rng.integers(0, n, rows)
    j = (i + rng.integers(1, n, rows)) % n
    columns = {"i": i.astype(np.int64), "j": j.astype(np.int64), "aligned_length": rng.integers(20, 90, rows).astype(np.int32)}
    for k in COLUMNS:
        columns.setdefault(k, np.round(rng.random(rows), 3))
    return columns


def fill(store: Evidence, seed: int = 0, blocks: int = 30, n: int = 200) -> list[dict[str, np.ndarray]]:
    rng = np.random.default_rng(seed)
    added = [random_columns(rng, int(rng.integers(0, 120)), n) for _ in range(blocks)]
    for columns in added:
        store.add(columns)
    return added


@pytest.mark.parametrize("rule_name", ["among", "across", "pairs", "either"])
def test_spilled_and_in_memory_stores_give_the_same_rows_in_the_order_they_were_added(tmp_path, rule_name) -> None:
    memory, spilled = Evidence(), Evidence(str(tmp_path), block_rows=500)
    added = fill(memory)
    fill(spilled)
    assert spilled.files and len(spilled) == len(memory) == sum(len(c["i"]) for c in added)
    rng = np.random.default_rng(1)
    flagged = rng.random(200) < 0.3
    rep_of = rng.integers(0, 20, 200)
    pairs = np.column_stack([added[3]["j"][:5], added[3]["i"][:5]])  # asked the other way round
    rule = {"among": Among(flagged), "across": Across(rep_of, 0.6), "pairs": OfPairs.of(pairs),
            "either": Either((Among(flagged), Across(rep_of, 0.6)))}[rule_name]
    everything = {k: np.concatenate([c[k] for c in added]) for k in COLUMNS}
    expected = {k: v[rule(everything)] for k, v in everything.items()}
    for store in (memory, spilled):
        for since in (0, 777):
            got = store.select(rule, since=since)
            keep = rule(everything)
            keep[:since] = False
            for k in COLUMNS:
                assert got[k].dtype == everything[k].dtype
                np.testing.assert_array_equal(got[k], everything[k][keep])
    assert len(expected["i"]) > 0
    np.testing.assert_array_equal(spilled.rows()["tm_a"], everything["tm_a"])


@pytest.mark.parametrize("seed", range(4))
def test_scores_folded_block_by_block_equal_the_scores_of_the_selected_rows(tmp_path, seed) -> None:
    """`scores(rule)` is `PairScores.from_columns([select(rule)])`: the same pairs, the later row of a
    repeated pair winning (pairs repeat across blocks here, in both orientations)."""
    rng = np.random.default_rng(seed)
    flagged, reps = rng.random(200) < 0.4, rng.random(200) < 0.2
    rule = Both((Among(flagged), Touches(reps)))
    memory, spilled = Evidence(), Evidence(str(tmp_path), block_rows=300)
    for store in (memory, spilled):
        fill(store, seed=seed, n=30)
        expected = PairScores.from_columns([store.select(rule)])
        got = store.scores(rule)
        assert len(got) == len(expected) > 0
        np.testing.assert_array_equal(got._key, expected._key)
        np.testing.assert_array_equal(got._tm, expected._tm)
    rows = memory.rows()
    keep = flagged[rows["i"]] & flagged[rows["j"]] & (reps[rows["i"]] | reps[rows["j"]])
    assert rule(rows).tolist() == keep.tolist()
    assert len(Evidence().scores(rule)) == 0


def test_flush_spills_the_pending_rows_and_selects_stay_the_same(tmp_path) -> None:
    store = Evidence(str(tmp_path), block_rows=10_000)
    fill(store)
    before = store.rows()
    assert store.blocks and not store.files
    store.flush()
    assert not store.blocks and store.rows_pending == 0 and len(store.files) == 1
    for k in COLUMNS:
        np.testing.assert_array_equal(store.rows()[k], before[k])
    store.flush()  # nothing pending: no empty file
    assert len(store.files) == 1
    in_memory = Evidence()
    fill(in_memory)
    in_memory.flush()  # no spill folder: the rows stay in memory
    assert in_memory.blocks


def test_a_spilled_store_keeps_fewer_rows_in_memory_than_a_block(tmp_path) -> None:
    store = Evidence(str(tmp_path), block_rows=500)
    fill(store, blocks=60)
    assert len(store) > 2000
    assert sum(len(b["i"]) for b in store.blocks) < 500
    assert len(store.files) >= len(store) // 620  # blocks of at least 500 rows (a block of adds may pass it)


def test_edge_bits_are_the_first_pass_rule_both_ways_and_worth_keeping_drops_failed_tries() -> None:
    config = ClusterConfig()
    columns = random_columns(np.random.default_rng(5), 2000, 50)
    columns["cov_a"] = np.where(np.arange(2000) % 7 == 0, 0.5, 0.9)
    bits = edge_bits(columns, config)
    reps, members = first_pass_edges(columns["i"], columns["j"], columns["tm_a"], columns["tm_b"],
                                     columns["cov_a"], columns["cov_b"], config)
    got_reps, got_members = edges_of(columns["i"], columns["j"], bits)
    np.testing.assert_array_equal(got_reps, reps)
    np.testing.assert_array_equal(got_members, members)
    assert ((bits & I_REPRESENTS_J) > 0).any() and ((bits & J_REPRESENTS_I) > 0).any()
    keep = worth_keeping(columns, config)
    assert keep[bits > 0].all()  # every edge is kept
    low = np.minimum(columns["tm_a"], columns["tm_b"]) < config.guard_threshold
    assert not keep[low & (bits == 0)].any()  # a failed try below the guard is not
