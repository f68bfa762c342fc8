"""The whole clustering of a set of fragments as pure code over two protocols: a candidate search
and an aligner.

Ray (runtime/clustering.py) and Foldseek (engines/) plug in implementations; tests plug in score
tables. Steps, in order:

1. first pass: the engine's own (Foldseek) or the built-in one (by default the linear cascade of
   `rayfold.cluster.cascade`: a k-mer round, then search rounds on representatives; exact length
   pruning, TM-align, Foldseek's representative rule);
2. representative audit: representatives against each other (pairs the cascade aligned already
   are reused);
3. the linkage decides which merge evidence joins clusters (`rayfold.cluster.linkage`);
4. cohesion: a seeded sample of each cluster's members against its representative;
5. singleton audit: a seeded sample of fragments still alone, searched and confirmed, reported.

Alignments are exact (tmtools); every score computed once is reused by the later steps. The result
is a function of the fragments alone: a release is this over every current fragment, with the
alignments earlier releases computed answered by the aligner (`rayfold.cluster.memo`).
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Protocol

import numpy as np

from rayfold.cluster import rules as algo
from rayfold.cluster.cascade import KmerCandidates, ScoredSearch, cascade_first_pass, centre_priority
from rayfold.cluster.cohesion import cohesion_pairs, summarise
from rayfold.cluster.evidence import (
    Across,
    Among,
    Both,
    Columns,
    Either,
    Evidence,
    OfPairs,
    Touches,
    concat_columns,
    empty_columns,
    take_rows,
)
from rayfold.cluster.linkage import MERGED, link_clusters
from rayfold.cluster.memo import VALUES, oriented
from rayfold.cluster.pairscores import PairScores
from rayfold.cluster.rules import ClusterConfig
from rayfold.cluster.steps import Steps
from rayfold.cluster.tables import cluster_tables
from rayfold.model.fragset import Fragments
from rayfold.model.unionfind import forest_from_edges


class Aligner(Protocol):
    """TM-aligns index pairs of one FragmentSet; `calls` counts every pair it was given."""

    calls: int

    def align(self, pairs: np.ndarray, *, desc: str) -> Columns: ...


class CandidateSearch(Protocol):
    """Unordered index pairs (i < j, unique) worth aligning between `queries` and `targets`."""

    def __call__(self, queries: np.ndarray, targets: np.ndarray, *, desc: str) -> np.ndarray: ...


FirstPass = Callable[[np.ndarray], np.ndarray]  # members -> their representative (global indices)


@dataclass
class Engine:
    """Where candidates and first-pass clusters come from."""

    name: str  # builtin | foldseek
    version: str
    search: CandidateSearch  # audit, singleton audit and the built-in first pass
    first_pass: FirstPass | None = None  # the engine's own first pass; None: the built-in one
    # the built-in cascade needs both; with either missing the built-in first pass is all pairs
    kmer_candidates: KmerCandidates | None = None  # the cascade's k-mer rounds
    scored_search: ScoredSearch | None = None  # the cascade's search rounds (`search` with estimated TMs)
    close: Callable[[], None] | None = None  # frees what the engine holds (the caller calls it when done)


def unique_pairs(pairs: np.ndarray) -> np.ndarray:
    """Unordered pairs (i < j), unique and sorted: each alignment is done once."""
    pairs = np.sort(np.asarray(pairs, dtype=np.int64).reshape(-1, 2), axis=1)
    pairs = pairs[pairs[:, 0] != pairs[:, 1]]
    return np.unique(pairs, axis=0) if len(pairs) else pairs


def unique_scored_pairs(pairs: np.ndarray, scores: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """`unique_pairs` with the best score of each pair (a pair found from both sides keeps the higher)."""
    pairs = np.sort(np.asarray(pairs, dtype=np.int64).reshape(-1, 2), axis=1)
    scores = np.nan_to_num(np.asarray(scores, np.float32), nan=0.0)
    keep = pairs[:, 0] != pairs[:, 1]
    pairs, scores = pairs[keep], scores[keep]
    if not len(pairs):
        return pairs, scores
    order = np.lexsort((-scores, pairs[:, 1], pairs[:, 0]))
    pairs, scores = pairs[order], scores[order]
    first = np.r_[True, (pairs[1:] != pairs[:-1]).any(axis=1)]
    return pairs[first], scores[first]


def min_tm(aligner: Aligner, pairs: np.ndarray, *, desc: str) -> np.ndarray:
    columns = aligner.align(np.asarray(pairs, dtype=np.int64).reshape(-1, 2), desc=desc)
    return np.minimum(columns["tm_a"], columns["tm_b"])


def align_once(pairs: np.ndarray, done: list[Columns], aligner: Aligner, *, desc: str) -> Columns:
    """Columns for `pairs`: rows already in `done` (the cascade aligned most representative pairs) are
    reused, oriented as asked; only the others are aligned."""
    pairs = np.asarray(pairs, dtype=np.int64).reshape(-1, 2)
    found, out = oriented(pairs, concat_columns(done), flipped=True)
    if not found.any():
        return aligner.align(pairs, desc=desc)
    fresh = aligner.align(pairs[~found], desc=desc)
    for k in VALUES:
        out[k][~found] = fresh[k]
    return out


def known_scores(column_sets: list[Columns]) -> PairScores:
    """min-TM of every alignment already done (the guard and cohesion reuse them)."""
    return PairScores.from_columns(column_sets)


def scores_of(pairs: np.ndarray, known: PairScores, aligner: Aligner, *, desc: str) -> np.ndarray:
    """min-TM per pair: from `known` where it was aligned already, else aligned now (each pair once)."""
    pairs = np.asarray(pairs, dtype=np.int64).reshape(-1, 2)
    found, scores = known.lookup(pairs[:, 0], pairs[:, 1])
    if not found.all():
        todo = unique_pairs(pairs[~found])
        fresh = PairScores(todo[:, 0], todo[:, 1], min_tm(aligner, todo, desc=desc))
        scores[~found] = fresh.lookup(pairs[~found, 0], pairs[~found, 1])[1]
    return scores


def builtin_first_pass(fragments: Fragments, members: np.ndarray, rank: np.ndarray, engine: Engine,
                       aligner: Aligner, config: ClusterConfig, evidence: Evidence,
                       steps: Steps) -> tuple[np.ndarray, list[int]]:
    """(rep_of over `members`, representatives per round); its alignments go to `evidence`.

    cascade (default): the k-mer round and search rounds on representatives (`cluster.cascade`);
    allpairs: the sensitive search over all members at once, TM-align, set cover."""
    if config.first_pass == "cascade" and engine.kmer_candidates is not None and engine.scored_search is not None:
        priority = centre_priority(fragments.lengths, fragments.mean_plddt, fragments.ids)
        return cascade_first_pass(members, engine.kmer_candidates, engine.scored_search, aligner,
                                  fragments.lengths, priority, rank, config, evidence, steps)
    with steps("first pass"):
        pairs = engine.search(members, members, desc="prefilter")
        # pairs that could be a first-pass edge (length ratio >= coverage) or merge evidence (>= merge threshold)
        pairs = algo.reachable(pairs, fragments.lengths, min(config.coverage, config.merge_threshold))
        columns = aligner.align(pairs, desc="first pass")
        evidence.add(columns)
        reps, covered = algo.first_pass_edges(columns["i"], columns["j"], columns["tm_a"], columns["tm_b"],
                                              columns["cov_a"], columns["cov_b"], config)
        local = np.full(len(fragments), -1, np.int64)
        local[members] = np.arange(len(members))
        local_rep_of = algo.greedy_set_cover(len(members), local[reps], local[covered], rank[members])
    return members[local_rep_of], [int(len(np.unique(local_rep_of)))]


def singleton_audit(fragments: Fragments, cluster_rep: np.ndarray, engine: Engine, aligner: Aligner,
                    config: ClusterConfig, known: PairScores) -> tuple[algo.SingletonAudit, np.ndarray]:
    """The audit of a seeded sample of singletons (searched against the sample: all pairs of 1,000
    would be ~500,000 alignments), and its links. Pairs the representative audit aligned already
    (most of them: singletons are representatives) are looked up in `known`, not aligned again."""
    sampled = algo.sample_singletons(cluster_rep, config.singleton_sample, config.seed, fragments.ids)
    pairs = algo.reachable(engine.search(sampled, sampled, desc="singleton prefilter"),
                           fragments.lengths, config.singleton_threshold)
    ok = scores_of(pairs, known, aligner, desc="singleton audit") >= config.singleton_threshold
    links = pairs[ok]
    return algo.singleton_components(sampled, forest_from_edges(links[:, 0], links[:, 1])), unique_pairs(links)


def read_back(evidence: Evidence, rep_of: np.ndarray, first_reps: np.ndarray,
              config: ClusterConfig) -> tuple[PairScores, dict, list[Columns]]:
    """(scores later steps look up, the members' merge evidence, the rows between representatives)
    from the alignments kept so far, in two scans: the merge evidence (pairs across first-pass
    clusters at min-TM >= the merge threshold) and the rows among the representatives (the audit
    reuses them), every column; then the min-TM of the rows among the representatives and that
    evidence's fragments that have a representative at one end at least. Those are all the scores
    later steps look up: the guard's pairs join two representatives, a reassignment's a member and
    a representative, cohesion's a member and its representative, the singleton audit's two
    singletons (representatives). The rest (~one row per fragment) is never read back."""
    evidence.flush()
    is_rep = np.zeros(len(rep_of), bool)
    is_rep[first_reps] = True
    across = Across(rep_of, config.merge_threshold)
    # split a block at a time: the rows of both slices are never held together with their union
    parts, between_reps = [algo.merge_evidence(empty_columns(), rep_of, config.merge_threshold, source="members")], []
    for near in evidence.selected(Either((across, Among(is_rep)))):
        parts.append(algo.merge_evidence(near, rep_of, config.merge_threshold, source="members"))
        between_reps.append(take_rows(near, is_rep[near["i"]] & is_rep[near["j"]]))
    merges = algo.concat_evidence(*parts)
    del parts
    flagged = is_rep.copy()
    flagged[merges["i"]] = True
    flagged[merges["j"]] = True
    known = evidence.scores(Both((Among(flagged), Touches(is_rep))))
    return known, merges, between_reps


@dataclass
class Clustering:
    tables: dict  # clusters, members, merges, singleton_audit (Arrow tables)
    links: np.ndarray  # (k, 2) sampled singletons the audit linked
    run: dict  # one cluster_runs row


def cluster(fragments: Fragments, engine: Engine, aligner: Aligner, config: ClusterConfig = ClusterConfig(),
            evidence: Evidence | None = None) -> Clustering:
    """Cluster `fragments`. `evidence`: where the alignments later steps may read are kept (default:
    in memory)."""
    started = time.perf_counter()
    n = len(fragments)
    rank = algo.priority_order(fragments.mean_plddt, fragments.lengths, fragments.ids)
    evidence = evidence if evidence is not None else Evidence()
    steps = Steps(aligner)

    # 1. first pass
    members = np.arange(n, dtype=np.int32)  # 4 bytes a fragment (2^31 fragments), as rep_of
    rounds: list[int] = []
    if not n:
        rep_of = np.zeros(0, np.int32)
    elif engine.first_pass is not None:
        with steps("first pass"):
            rep_of = np.asarray(engine.first_pass(members), dtype=np.int32)
    else:
        rep_of, rounds = builtin_first_pass(fragments, members, rank, engine, aligner, config, evidence, steps)
        rep_of = np.asarray(rep_of, dtype=np.int32)
    del members
    first_reps = np.unique(rep_of)
    with steps("evidence"):
        members_known, members_found, between_reps = read_back(evidence, rep_of, first_reps, config)

    # 2. representative audit: representatives against each other
    with steps("audit"):
        rep_pairs = algo.reachable(engine.search(first_reps, first_reps, desc="audit prefilter"),
                                   fragments.lengths, config.merge_threshold)
        audit = align_once(rep_pairs, between_reps, aligner, desc="representative audit")
        merges = algo.concat_evidence(algo.merge_evidence(audit, rep_of, config.merge_threshold,
                                                          source="representatives"), members_found)
        del between_reps, members_found, rep_pairs  # each step lets go of what no later step reads

    # 3. the linkage decides which evidence joins clusters (the guard's alignments extend `known`)
    with steps("linkage"):
        # the read-back's scores win where the audit aligned a pair again (as when the audit's
        # absorbed them), merged into the bigger set: one copy of it, not of both and their keys
        known = members_known
        known.absorb(known_scores([audit]), wins=False)
        del audit, members_known
        linked = link_clusters(
            rep_of, merges["rep_a"], merges["rep_b"], np.minimum(merges["tm_a"], merges["tm_b"]), merges["source"],
            rank, linkage=config.linkage, guard=config.guard_threshold,
            score=lambda pairs: min_tm(aligner, pairs, desc="linkage guard"), known=known,
            pair_i=merges["i"], pair_j=merges["j"])
        cluster_rep = linked.cluster_rep
        merges["decision"] = linked.decision
        merges["guard_tm"] = linked.guard_tm

    # 4. cohesion
    with steps("cohesion"):
        pairs = cohesion_pairs(cluster_rep, fragments.ids, config.cohesion_sample, config.seed)
        if len(pairs):  # the sampled pairs the first pass aligned already (one scan of the evidence)
            known.absorb(known_scores([evidence.select(OfPairs.of(pairs))]))
        cohesion = summarise(pairs, scores_of(pairs, known, aligner, desc="cohesion"))

    # 5. singleton audit
    with steps("singleton audit"):
        audit_result, links = singleton_audit(fragments, cluster_rep, engine, aligner, config, known)
        del known, pairs

    with steps("tables"):
        tables = cluster_tables(fragments, rep_of, cluster_rep, merges, audit_result, cohesion)
    run = dict(
        engine=engine.name,
        engine_version=engine.version,
        fragments=n,
        first_pass_clusters=int(len(first_reps)),
        first_pass_rounds=" > ".join(str(c) for c in rounds),
        clusters=int(len(np.unique(cluster_rep))),
        merges=int((merges["decision"] == MERGED).sum()),
        alignments=aligner.calls,
        guard_alignments=steps.record["linkage"].alignments,
        cohesion_alignments=steps.record["cohesion"].alignments,
        linkage_seconds=steps.record["linkage"].seconds,
        singleton_audit=audit_result.summary(),
        seconds=time.perf_counter() - started,
        steps=steps.to_json(),
        config=json.dumps(asdict(config), sort_keys=True),
    )
    return Clustering(tables, links, run)
