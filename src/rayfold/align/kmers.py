"""Linear candidate generation (the idea of Linclust, Steinegger & Soding, Nat. Commun. 2018).

An all-against-all search grows with the square of the set and, in big families, with the square of
the family. Here each fragment contributes at most `kmers_per_fragment` k-mers of its 3Di string in
a reduced alphabet, chosen by a seeded hash (min-hash: the k-mers with the lowest hash values, so
similar strings tend to choose the same k-mers). Fragments are grouped by k-mer; within a group
every member gets ONE candidate edge, to the group's centre (the best centre: longest, then higher
mean pLDDT, then smaller id; among the fragments it can reach by length, so that a group of mixed
lengths gives each length band a centre that could cover it). A k-mer shared by 40,000 fragments
gives 39,999 edges, never 800 million pairs, and no k-mer is dropped for being frequent. Each member
then keeps the few centres it shares the most k-mers with (`ClusterConfig.centres_per_fragment`),
which bounds the TM-align work per fragment.

The reduced alphabet merges the 3Di letters that Foldseek's substitution matrix scores as most
alike (average linkage over the matrix, down to `alphabet_size` groups), so that a k-mer survives
the most common state substitutions between homologous structures.

Pure NumPy: the Ray side (`rayfold.runtime.clustering.RayKmerCandidates`) runs `select_kmers` per shard, shuffles the
rows by k-mer, and runs `centre_edges` and `count_shared` per partition.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from functools import lru_cache

import numpy as np

from rayfold.align.prefilter import MAT3DI

_LETTERS = "ACDEFGHIKLMNPQRSTVWY"  # MAT3DI order
_MASK64 = np.uint64(0xFFFFFFFFFFFFFFFF)


@dataclass(frozen=True)
class KmerConfig:
    """Settings of the k-mer stage (measured on fragments in bench/linclust_tuning.py)."""

    alphabet_size: int = 13  # reduced 3Di letters (Foldseek's linclust uses 13 as well)
    kmer_size: int = 8  # 13^8: 8e8 codes; a k-mer shared by unrelated fragments is rare
    kmers_per_fragment: int = 60  # min-hash sample per fragment (Foldseek: up to 300 per AFDB chain)
    min_distinct_states: int = 3  # k-mers of fewer distinct reduced states (ideal helices) are not used
    seed: int = 0  # the min-hash; a second round with another seed draws other k-mers

    def __post_init__(self) -> None:
        if not 2 <= self.alphabet_size <= 20:
            raise ValueError("alphabet_size must be in 2..20")
        if not 1 <= self.kmer_size or self.alphabet_size**self.kmer_size >= 2**62:
            raise ValueError("kmer_size must be >= 1 and alphabet_size**kmer_size below 2**62")
        if self.kmers_per_fragment < 1:
            raise ValueError("kmers_per_fragment must be >= 1")


@lru_cache(maxsize=8)
def reduced_alphabet(size: int = 13) -> np.ndarray:
    """group[letter index in MAT3DI order]: average-linkage merging of the most alike 3Di letters."""
    groups: list[list[int]] = [[i] for i in range(len(_LETTERS))]
    score = MAT3DI.astype(np.float64)
    while len(groups) > size:
        best, pair = -np.inf, (0, 1)
        for a in range(len(groups)):
            for b in range(a + 1, len(groups)):
                mean = score[np.ix_(groups[a], groups[b])].mean()
                if mean > best:  # ties: first pair in letter order, so the result is fixed
                    best, pair = mean, (a, b)
        a, b = pair
        groups[a] = sorted(groups[a] + groups[b])
        del groups[b]
    out = np.empty(len(_LETTERS), dtype=np.uint8)
    for g, members in enumerate(sorted(groups)):
        out[members] = g
    return out


def _lookup(size: int) -> np.ndarray:
    """byte -> reduced state (255: not a 3Di letter)."""
    lut = np.full(256, 255, dtype=np.uint8)
    reduced = reduced_alphabet(size)
    for i, ch in enumerate(_LETTERS):
        lut[ord(ch)] = reduced[i]
        lut[ord(ch.lower())] = reduced[i]
    return lut


def mix64(x: np.ndarray, seed: int) -> np.ndarray:
    """A seeded bijection of uint64 (SplitMix64's finaliser): a k-mer's hash is unique to it."""
    with np.errstate(over="ignore"):
        z = x.astype(np.uint64) + np.uint64((0x9E3779B97F4A7C15 * (seed + 1)) & 0xFFFFFFFFFFFFFFFF)
        z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        return (z ^ (z >> np.uint64(31))) & _MASK64


def kmer_codes(states: str, config: KmerConfig) -> np.ndarray:
    """Distinct usable k-mer codes of one 3Di string (int64; empty when shorter than k)."""
    k, a = config.kmer_size, config.alphabet_size
    s = _lookup(a)[np.frombuffer(states.encode("ascii", "replace"), dtype=np.uint8)].astype(np.int64)
    n = len(s) - k + 1
    if n <= 0:
        return np.zeros(0, dtype=np.int64)
    windows = np.lib.stride_tricks.sliding_window_view(s, k)
    bad = (windows >= a).any(axis=1)
    code = (np.where(windows < a, windows, 0) * (a ** np.arange(k - 1, -1, -1, dtype=np.int64))).sum(axis=1)
    if config.min_distinct_states > 1:
        ordered = np.sort(windows, axis=1)
        bad |= 1 + (ordered[:, 1:] != ordered[:, :-1]).sum(axis=1) < config.min_distinct_states
    return np.unique(code[~bad])


def select_kmers(states: list[str], fragment: np.ndarray, config: KmerConfig) -> tuple[np.ndarray, np.ndarray]:
    """(kmer, fragment) rows: for each fragment its `kmers_per_fragment` k-mers of lowest seeded hash.

    `kmer` is the hash itself (a bijection of the code, so equal hashes mean equal k-mers). A
    fragment with fewer usable k-mers gives all it has; one shorter than k gives none."""
    hashes, owners = [], []
    for s, f in zip(states, np.asarray(fragment, dtype=np.int64).tolist()):
        h = np.sort(mix64(kmer_codes(s or "", config), config.seed))[: config.kmers_per_fragment]
        hashes.append(h)
        owners.append(np.full(len(h), f, dtype=np.int64))
    if not hashes:
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    return np.concatenate(hashes).view(np.int64), np.concatenate(owners)


def centre_edges(kmer: np.ndarray, fragment: np.ndarray, priority: np.ndarray, length: np.ndarray,
                 min_ratio: float = 0.8) -> tuple[np.ndarray, np.ndarray]:
    """(member, centre): each row's edge to the best centre of its k-mer group that it can reach.

    The centre of a member of length L is the group's best fragment (longest, then by `priority`)
    no longer than L / `min_ratio`: a longer one could never cover it (coverage >= 0.8 needs a
    length ratio >= 0.8), so a group of mixed lengths gives each length band its own centre. Still
    one edge per row. Rows of one k-mer must all be in the call (the shuffle by k-mer does it)."""
    kmer, fragment = np.asarray(kmer), np.asarray(fragment, dtype=np.int64)
    if not len(kmer):
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    length = np.asarray(length, dtype=np.int64)
    _, group = np.unique(kmer, return_inverse=True)
    span = int(length.max()) + 2
    order = np.lexsort((fragment, priority, -length, group))
    key = group[order] * span + (span - 1 - length[order])  # ascending: by group, then longest first
    reach = np.floor(length[order] / min_ratio).astype(np.int64)
    target = group[order] * span + (span - 1 - np.minimum(reach, span - 1))
    centre = fragment[order][np.searchsorted(key, target, side="left")]
    member = fragment[order]
    keep = member != centre
    return member[keep], centre[keep]


def count_shared(member: np.ndarray, centre: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Distinct (member, centre) edges and how many k-mer groups gave each (rows of one member together)."""
    if not len(member):
        return np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0, np.int64)
    pairs, shared = np.unique(np.column_stack([member, centre]), axis=0, return_counts=True)
    return pairs[:, 0], pairs[:, 1], shared.astype(np.int64)


def local_candidates(states: list[str], lengths: np.ndarray, config: KmerConfig,  # noqa: ANN201
                     min_ratio: float = 0.8):
    """The k-mer candidate source over strings held in this process (tests, small sets): (members,
    centre priority) -> (member, centre, shared); the Ray engine does the same over shards with a shuffle."""

    def candidates(members: np.ndarray, priority: np.ndarray,
                   seed: int = config.seed) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        members = np.asarray(members, dtype=np.int64)
        kmer, owner = select_kmers([states[m] for m in members.tolist()], members, replace(config, seed=seed))
        member, centre = centre_edges(kmer, owner, priority[owner], lengths[owner], min_ratio)
        return count_shared(member, centre)

    return candidates
