"""The k-mer round's pieces (rayfold.align.kmers): the reduced alphabet, the min-hash sample, the
centre edges, and the bad cases the issue names (short strings, identical fragments, huge ones)."""

from __future__ import annotations

import numpy as np
import pytest

from rayfold.align.kmers import (
    KmerConfig,
    centre_edges,
    count_shared,
    kmer_codes,
    local_candidates,
    mix64,
    reduced_alphabet,
    select_kmers,
)
from rayfold.align.prefilter import MAT3DI

LETTERS = "ACDEFGHIKLMNPQRSTVWY"


def random_states(n: int, seed: int) -> str:
    rng = np.random.default_rng(seed)
    return "".join(rng.choice(list(LETTERS), size=n))


def test_reduced_alphabet_groups_the_most_alike_letters() -> None:
    groups = reduced_alphabet(13)
    assert len(np.unique(groups)) == 13 and len(groups) == 20
    off = MAT3DI.astype(float) - np.diag(np.full(20, np.inf))
    a, b = np.unravel_index(np.argmax(off), off.shape)
    assert groups[a] == groups[b]  # the best-scoring substitution never separates a k-mer
    assert np.array_equal(groups, reduced_alphabet(13))
    assert len(np.unique(reduced_alphabet(20))) == 20


def test_mix64_is_a_seeded_bijection() -> None:
    x = np.arange(100_000, dtype=np.uint64)
    assert len(np.unique(mix64(x, 0))) == len(x)
    assert not np.array_equal(mix64(x, 0), mix64(x, 1))


def test_kmer_codes_skip_short_low_complexity_and_foreign_letters() -> None:
    config = KmerConfig(kmer_size=8)
    assert len(kmer_codes("ACDEFGH", config)) == 0  # shorter than k: no k-mer, no error
    assert len(kmer_codes("V" * 50, config)) == 0  # one state: low complexity
    assert len(kmer_codes("ACDEFGHIK" + "X" * 8, config)) == 2
    assert len(kmer_codes(random_states(100, 0), config)) > 50


def test_select_kmers_takes_the_lowest_hashes_the_same_for_the_same_string() -> None:
    config = KmerConfig(kmer_size=6, kmers_per_fragment=10)
    s = random_states(200, 1)
    kmer, owner = select_kmers([s, s, s[:120], "ACD"], np.array([5, 6, 7, 8]), config)
    assert np.bincount(owner, minlength=9)[5:].tolist() == [10, 10, 10, 0]
    assert np.array_equal(kmer[owner == 5], kmer[owner == 6])
    # a trimmed copy shares most of the sample (min-hash)
    assert len(set(kmer[owner == 7].tolist()) & set(kmer[owner == 5].tolist())) >= 5
    other = select_kmers([s], np.array([0]), KmerConfig(kmer_size=6, kmers_per_fragment=10, seed=1))[0]
    assert set(other.tolist()) != set(kmer[owner == 5].tolist())


def test_a_huge_fragment_gives_the_capped_sample() -> None:
    kmer, owner = select_kmers([random_states(2500, 2)], np.array([0]), KmerConfig())
    assert len(kmer) == KmerConfig().kmers_per_fragment


def test_centre_edges_point_every_member_to_its_group_centre() -> None:
    kmer = np.array([1, 1, 1, 2, 2, 3])
    frag = np.array([10, 11, 12, 11, 13, 14])
    priority = np.array([2, 0, 1, 0, 5, 3])  # fragment 11 is the best centre
    length = np.array([100, 110, 100, 110, 100, 90])
    member, centre = centre_edges(kmer, frag, priority, length)
    assert sorted(zip(member.tolist(), centre.tolist())) == [(10, 11), (12, 11), (13, 11)]


def test_a_member_too_short_for_the_longest_gets_the_longest_it_can_reach() -> None:
    # lengths 200, 150, 140, 100: 100 cannot be covered by 200 or 150 (ratio < 0.8), 140 can by 150 only
    frag = np.array([0, 1, 2, 3])
    member, centre = centre_edges(np.zeros(4, np.int64), frag, frag, np.array([200, 150, 140, 100]))
    assert sorted(zip(member.tolist(), centre.tolist())) == [(2, 1)]
    member, centre = centre_edges(np.zeros(5, np.int64), np.arange(5), np.arange(5),
                                  np.array([200, 150, 140, 120, 100]))
    assert sorted(zip(member.tolist(), centre.tolist())) == [(2, 1), (3, 1), (4, 3)]


def test_ten_thousand_identical_fragments_give_a_linear_edge_count() -> None:
    s = random_states(150, 3)
    n = 10_000
    members, priority = np.arange(n), np.arange(n)
    member, centre, shared = local_candidates([s] * n, np.full(n, 150), KmerConfig())(members, priority)
    assert len(member) == n - 1  # one edge each to fragment 0, not n^2/2 pairs
    assert set(centre.tolist()) == {0}
    assert (shared == KmerConfig().kmers_per_fragment).all()


def test_count_shared_counts_groups_per_edge() -> None:
    m, c, k = count_shared(np.array([3, 3, 3, 4]), np.array([1, 1, 2, 1]))
    assert list(zip(m.tolist(), c.tolist(), k.tolist())) == [(3, 1, 2), (3, 2, 1), (4, 1, 1)]


def test_empty_input_is_empty_output() -> None:
    member, centre, shared = local_candidates([], np.zeros(0), KmerConfig())(np.zeros(0, np.int64),
                                                                              np.zeros(0, np.int64))
    assert len(member) == len(centre) == len(shared) == 0


def test_bad_settings_are_refused() -> None:
    with pytest.raises(ValueError):
        KmerConfig(kmer_size=30)
    with pytest.raises(ValueError):
        KmerConfig(kmers_per_fragment=0)
