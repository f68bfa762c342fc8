"""The whole clustering (rayfold.cluster.algorithm) without Ray: hand-made score tables stand in for
TM-align and for the candidate search, so every step's decision is known in advance."""

from __future__ import annotations

import json

import numpy as np

from rayfold.cluster.algorithm import Engine, cluster, unique_pairs
from rayfold.cluster.rules import ClusterConfig
from rayfold.model.fragset import FragmentSet

COLUMNS = ("i", "j", "tm_a", "tm_b", "rmsd", "aligned_length", "seq_identity", "cov_a", "cov_b")


class TableAligner:
    """Scores from {(i, j): (tm_i, tm_j, cov_i, cov_j)}; unlisted pairs score 0.1 with coverage 0.2."""

    def __init__(self, table: dict[tuple[int, int], tuple[float, float, float, float]]) -> None:
        self.table = table
        self.calls = 0
        self.asked: list[tuple[int, int]] = []

    def align(self, pairs: np.ndarray, *, desc: str) -> dict[str, np.ndarray]:
        pairs = np.asarray(pairs, dtype=np.int64).reshape(-1, 2)
        self.calls += len(pairs)
        rows = []
        for i, j in pairs.tolist():
            self.asked.append((i, j))
            if (i, j) in self.table:
                tm_i, tm_j, cov_i, cov_j = self.table[(i, j)]
            elif (j, i) in self.table:
                tm_j, tm_i, cov_j, cov_i = self.table[(j, i)]
            else:
                tm_i = tm_j = 0.1
                cov_i = cov_j = 0.2
            rows.append((i, j, tm_i, tm_j, 1.0, 50, 0.3, cov_i, cov_j))
        if not rows:
            return {k: np.zeros(0, np.int64 if k in ("i", "j", "aligned_length") else np.float64) for k in COLUMNS}
        cols = list(zip(*rows))
        return {k: np.array(v, dtype=np.int64 if k in ("i", "j", "aligned_length") else np.float64)
                for k, v in zip(COLUMNS, cols)}


def every_pair(queries: np.ndarray, targets: np.ndarray, *, desc: str) -> np.ndarray:
    """A search that proposes every pair (the algorithm's pruning and scores decide)."""
    if not len(queries) or not len(targets):
        return np.zeros((0, 2), np.int64)
    return unique_pairs(np.array([(q, t) for q in queries.tolist() for t in targets.tolist()], dtype=np.int64))


def fragments(lengths: list[int], plddt: list[float] | None = None) -> FragmentSet:
    rng = np.random.default_rng(0)
    ids = [f"p{k}_f1" for k in range(len(lengths))]
    return FragmentSet.from_arrays(ids, [rng.normal(size=(n, 3)) for n in lengths], ["A" * n for n in lengths],
                                   np.array(plddt or [90.0 - k for k in range(len(lengths))]))


ENGINE = Engine("table", "test", every_pair)
CONFIG = ClusterConfig(singleton_sample=10, cohesion_sample=4)


def members_of(result) -> dict[str, tuple[str, str]]:
    return {r["fragment_id"]: (r["first_pass_cluster_id"], r["cluster_id"]) for r in result.tables["members"].to_pylist()}


def test_first_pass_audit_linkage_cohesion_and_singletons_from_scores():
    # 0 represents 1 (TM by 0 >= 0.7, both coverages >= 0.8) and 2 represents 3; across them the
    # coverages are < 0.8 (no first-pass edge), but 0 and 2 reach min-TM 0.75: the audit merges the
    # two clusters (1-3 at 0.71 is member evidence for the same merge); 4 is too short for anyone.
    frags = fragments([100, 95, 98, 96, 60])
    table = {(0, 1): (0.8, 0.78, 0.9, 0.9), (2, 3): (0.85, 0.8, 0.95, 0.9), (0, 2): (0.75, 0.76, 0.75, 0.75),
             (1, 3): (0.72, 0.71, 0.7, 0.7), (0, 3): (0.7, 0.69, 0.7, 0.7), (1, 2): (0.66, 0.7, 0.7, 0.7)}
    result = cluster(frags, ENGINE, TableAligner(table), CONFIG)
    members = members_of(result)
    assert members["p1_f1"] == ("p0_f1", "p0_f1") and members["p3_f1"][0] == "p2_f1"
    assert members["p3_f1"][1] == "p0_f1" and members["p2_f1"][1] == "p0_f1"  # merged by the audit
    assert members["p4_f1"] == ("p4_f1", "p4_f1")
    merges = result.tables["merges"].to_pylist()
    assert {m["decision"] for m in merges} <= {"merged", "redundant"} and result.run["merges"] == 1
    clusters = {r["cluster_id"]: r for r in result.tables["clusters"].to_pylist()}
    assert clusters["p0_f1"]["size"] == 4 and clusters["p0_f1"]["n_first_pass_clusters"] == 2
    assert (clusters["p0_f1"]["min_length"], clusters["p0_f1"]["max_length"]) == (95, 100)
    assert clusters["p0_f1"]["cohesion_sampled"] == 3 and clusters["p0_f1"]["cohesion_min_tm"] == 0.69
    assert result.run["cohesion_alignments"] == 0  # every member-representative pair was aligned already
    assert result.tables["singleton_audit"].column("fragment_id").to_pylist() == ["p4_f1"]
    assert result.run["first_pass_clusters"] == 3 and result.run["clusters"] == 2
    steps = json.loads(result.run["steps"])  # where the calls went: every step, adding up to the total
    assert list(steps) == ["first pass", "evidence", "audit", "linkage", "cohesion", "singleton audit", "tables"]
    assert sum(s["alignments"] for s in steps.values()) == result.run["alignments"] > 0
    assert steps["first pass"]["alignments"] > 0 and steps["cohesion"]["alignments"] == 0


def test_length_pruning_keeps_impossible_pairs_away_from_tm_align():
    frags = fragments([100, 60, 95])  # 60/100 < 0.7: no pair with fragment 1 can reach min-TM 0.7
    aligner = TableAligner({(0, 2): (0.9, 0.9, 0.95, 0.95)})
    cluster(frags, ENGINE, aligner, CONFIG)
    assert all(1 not in pair for pair in aligner.asked if sorted(pair) != [1, 1])
    assert (0, 2) in aligner.asked


def test_an_engine_with_its_own_first_pass_is_used_as_given():
    frags = fragments([100, 95, 97])

    def first_pass(members: np.ndarray) -> np.ndarray:
        return np.full(len(members), int(members[0]))  # everything in the first member's cluster

    engine = Engine("own", "test", every_pair, first_pass)
    aligner = TableAligner({})
    result = cluster(frags, engine, aligner, CONFIG)
    assert {v[0] for v in members_of(result).values()} == {"p0_f1"}
    assert result.run["engine"] == "own" and result.run["first_pass_clusters"] == 1


def _read_back_every_flagged_row(evidence, rep_of, first_reps, config):
    """The read-back before the scores were narrowed: every row among the representatives and the
    merge evidence's fragments (and the evidence itself) in the known scores."""
    from rayfold.cluster import rules as algo
    from rayfold.cluster.algorithm import known_scores
    from rayfold.cluster.evidence import Across, Among, Either, take_rows

    is_rep = np.zeros(len(rep_of), bool)
    is_rep[first_reps] = True
    across = Across(rep_of, config.merge_threshold)
    flagged = is_rep.copy()
    ends = evidence.select(across)
    flagged[ends["i"]] = True
    flagged[ends["j"]] = True
    near = evidence.select(Either((across, Among(flagged))))
    return (known_scores([near]), algo.merge_evidence(near, rep_of, config.merge_threshold, source="members"),
            [take_rows(near, is_rep[near["i"]] & is_rep[near["j"]])])


def test_the_scores_read_back_are_all_that_later_steps_look_up(tmp_path, monkeypatch):
    """Random families with borderline pairs (merges, refusals, reassignments, cohesion): reading back
    only the rows with a representative at one end gives the tables of reading back every flagged
    row, and no alignment more."""
    import rayfold.cluster.algorithm as algorithm
    from rayfold.cluster.evidence import Evidence

    for seed in range(12):
        rng = np.random.default_rng(seed)
        n = 48
        family = rng.integers(0, 5, n)
        table = {}
        for i in range(n):
            for j in range(i + 1, n):
                same = family[i] == family[j]
                base = rng.uniform(0.55, 0.95) if same else rng.uniform(0.3, 0.78)
                table[(i, j)] = (base + rng.uniform(-0.05, 0.05), base + rng.uniform(-0.05, 0.05),
                                 rng.uniform(0.7, 1.0), rng.uniform(0.7, 1.0))
        frags = fragments([int(x) for x in rng.integers(80, 110, n)])
        config = ClusterConfig(singleton_sample=10, cohesion_sample=4, seed=seed)
        results = []
        for read_back in (algorithm.read_back, _read_back_every_flagged_row):
            monkeypatch.setattr(algorithm, "read_back", read_back)
            aligner = TableAligner(table)
            spill = tmp_path / f"{seed}-{len(results)}"
            spill.mkdir()
            results.append((cluster(frags, ENGINE, aligner, config, Evidence(str(spill), block_rows=64)), aligner))
        (new, new_aligner), (old, old_aligner) = results
        for name in ("clusters", "members", "merges", "singleton_audit"):
            assert new.tables[name].equals(old.tables[name]), (seed, name)
        assert new_aligner.calls == old_aligner.calls
