"""Clustering on Ray: the Ray implementations of `rayfold.cluster.algorithm`'s aligner and searches.

Fragments live in object-store shards (`rayfold.runtime.shards`): the driver holds ids, lengths
and mean pLDDT. TM-align and search run in tasks over at most two shards; the k-mer round's edges
come from a Ray Data hash shuffle; Foldseek runs on one actor, on the node that offers the
`foldseek` resource, over one database of every fragment. The algorithm itself (which pairs,
which merges) is pure and lives in `rayfold.cluster.algorithm`.
"""

from __future__ import annotations

import gc
import shutil
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

from rayfold.cluster.algorithm import Columns, Engine, cluster, unique_pairs
from rayfold.cluster.evidence import Evidence, edge_bits, empty_columns, take_rows, worth_keeping
from rayfold.cluster.memo import VALUES, AlignmentMemo
from rayfold.cluster.pairscores import DistinctPairs
from rayfold.cluster.rules import ClusterConfig, is_sorted
from rayfold.io.storage import exists, join_uri, parquet_parts, write_parquet
from rayfold.model.errors import InputError
from rayfold.model.fragset import FragmentSet
from rayfold.model.ids import id_array
from rayfold.runtime.session import (
    WORKER_ENV,
    Submissions,
    iter_tasks,
    quiet_ray_data,
    ray_remote,
    ray_session,
)
from rayfold.runtime.shards import (
    BlockPlan,
    ShardedFragments,
    column_values,
    gather,
    load_planned,
    shard_in_memory,
)

FOLDSEEK_RESOURCE = "foldseek"  # custom resource of cluster.yaml's large node type
TASKS_PER_CPU = 4  # TM-align tasks per CPU at least, for the pairs of one call (while they last)
KMER_ROWS_PER_TASK = 2_000_000  # k-mer rows (~20 B each) per shuffle partition, or per round in one task
# the k-mer round's tries as the shuffle's tasks give them (`_tries_batch`)
TRIES_SCHEMA = pa.schema([("member", pa.int32()), ("centre", pa.int32()), ("shared", pa.int32()),
                          ("attempt", pa.int8())])


@dataclass(frozen=True)
class ClusterSummary:
    out: str
    engine: str
    engine_version: str
    fragments: int
    first_pass_clusters: int
    clusters: int
    merges: int
    alignments: int
    singleton_audit: str
    seconds: float


# --- tasks (module-level so Ray pickles them by reference) -------------------------------------


def _search_block(query_shard: FragmentSet, query_rows: np.ndarray, query_ids: np.ndarray,
                  target_shard: FragmentSet, target_rows: np.ndarray, target_ids: np.ndarray,
                  prefilter_config: Any) -> tuple[np.ndarray, np.ndarray]:
    """Candidate (query, target) global index pairs of one query shard against one target shard, and
    their estimated TMs."""
    from rayfold.align.prefilter import search_scored

    pairs, scores = search_scored(query_shard.subset(query_rows), target_shard.subset(target_rows), prefilter_config)
    if not len(pairs):
        return np.zeros((0, 2), np.int64), np.zeros(0, np.float32)
    pairs = np.column_stack([query_ids[pairs[:, 0]], target_ids[pairs[:, 1]]])
    keep = pairs[:, 0] != pairs[:, 1]
    return pairs[keep], scores[keep]


def _align_block(shard_a: FragmentSet, rows_a: np.ndarray, shard_b: FragmentSet, rows_b: np.ndarray) -> Columns:
    """TM-align rows_a[k] of shard a with rows_b[k] of shard b (i, j: positions in the pair list)."""
    from rayfold.align.tmalign import align_pairs

    ua, ia = np.unique(rows_a, return_inverse=True)
    ub, ib = np.unique(rows_b, return_inverse=True)
    both = gather([(shard_a, ua), (shard_b, ub)])
    return align_pairs(both, np.column_stack([ia, len(ua) + ib]))


def _shard_kmers(shard: FragmentSet, rows: np.ndarray, members: np.ndarray, priority: np.ndarray,
                 lengths: np.ndarray, kmer_config: Any) -> tuple[pa.Table, int]:
    """(kmer, member, priority, length) rows of the k-mers the selected members of a shard
    contribute, and how many (two returns: the driver reads the count, never the rows)."""
    from rayfold.align.kmers import select_kmers

    states = shard.states_3di or [""] * len(shard)
    kmer, owner = select_kmers([states[r] or "" for r in rows.tolist()], np.arange(len(rows)), kmer_config)
    return pa.table({"kmer": kmer, "member": members[owner], "priority": priority[owner],
                     "length": lengths[owner].astype(np.int32)}), len(kmer)


def index_pairs(pairs: np.ndarray) -> np.ndarray:
    """(k, 2) fragment index pairs as given when they are int32 (the k-mer rounds' tries: half the
    driver's bytes per pair), int64 otherwise."""
    pairs = np.asarray(pairs).reshape(-1, 2)
    return pairs if pairs.dtype == np.int32 else np.asarray(pairs, dtype=np.int64)


def value_of(wanted: np.ndarray, keys: np.ndarray, values: np.ndarray) -> np.ndarray:
    """values[k] of the row k where keys[k] == each wanted key (every wanted key is among `keys`, and
    a key has one value): sorted arrays, not a dict of Python ints over a partition's rows."""
    unique, first = np.unique(keys, return_index=True)
    return np.asarray(values, dtype=np.int64)[first[np.searchsorted(unique, wanted)]]


def _edges_batch(batch: pa.Table, min_ratio: float) -> pa.Table:
    """One k-mer partition: every member's edge to its group's centre (all rows of a k-mer are here)."""
    from rayfold.align.kmers import centre_edges

    kmer = batch.column("kmer").to_numpy()
    member = batch.column("member").to_numpy()
    priority = batch.column("priority").to_numpy()
    length = batch.column("length").to_numpy()
    m, c = centre_edges(kmer, member, priority, length, min_ratio)
    return pa.table({"member": m, "centre": c, "centre_priority": value_of(c, member, priority)})


def _tries_batch(batch: pa.Table, limit: int) -> pa.Table:
    """One member partition: distinct centres with their shared k-mer count, the best `limit` (every
    centre is within length reach already: `centre_edges` picks it so)."""
    from rayfold.align.kmers import count_shared
    from rayfold.cluster.cascade import best_tries

    member = batch.column("member").to_numpy()
    centre = batch.column("centre").to_numpy()
    m, c, shared = count_shared(member, centre)
    m, c, shared, attempt = best_tries(m, c, shared, value_of(c, centre, batch.column("centre_priority").to_numpy()),
                                       limit)
    return pa.table({"member": m.astype(np.int32), "centre": c.astype(np.int32), "shared": shared.astype(np.int32),
                     "attempt": attempt.astype(np.int8)})


def _tries_in_one_task(min_ratio: float, limit: int, *kmer_tables: pa.Table) -> pa.Table:
    """Both shuffle stages over every k-mer row at once: what the shuffle's tasks give, for a round
    small enough for one task (a partition of the shuffle holds as many rows)."""
    return _tries_batch(_edges_batch(pa.concat_tables(kmer_tables), min_ratio), limit)


def _tries_by_shuffle(min_ratio: float, limit: int, partitions: int, kmer_refs: list) -> pa.Table:
    """Both stages as Ray Data hash shuffles (by k-mer, then by member), run from a task of no CPU:
    Ray Data's streaming executor (its modules, threads and block bookkeeping, 64 MB measured) lives
    here, never in the driver, which receives the tries alone (`centres_per_fragment` rows a member)."""
    import ray

    quiet_ray_data()
    dataset = (ray.data.from_arrow_refs(kmer_refs)
               .repartition(partitions, keys=["kmer"])
               .map_batches(_edges_batch, batch_format="pyarrow", batch_size=None,  # type: ignore[arg-type]
                            fn_kwargs={"min_ratio": min_ratio})
               .repartition(partitions, keys=["member"])
               .map_batches(_tries_batch, batch_format="pyarrow", batch_size=None,  # type: ignore[arg-type]
                            fn_kwargs={"limit": limit}))
    tables = [t for t in ray.get(dataset.to_arrow_refs()) if t.num_rows]
    # Ray Data's plan holds the k-mer tables' references in cycles: collected now, their owner (the
    # driver) drops them and the tasks that made them, instead of keeping both while this worker idles
    del dataset
    gc.collect()
    if not tables:
        return TRIES_SCHEMA.empty_table()
    # by member, then attempt, as one task's rows are (`_tries_batch`): the partitions come in any
    # order, and the driver reads the columns as they are, never sorting them itself
    return pa.concat_tables(tables).sort_by([("member", "ascending"), ("attempt", "ascending")]).combine_chunks()


class FoldseekNode:
    """Every fragment in one Foldseek database on the node that runs Foldseek (a Ray actor): built
    once from the shards, one at a time, then used by the first pass and each search stage."""

    def __init__(self, shards: list, binary: str, threads: int, alignment: str) -> None:
        from rayfold.engines.foldseek import ALIGNMENT_TYPES

        self.shards, self.binary, self.threads = shards, binary, threads
        self.alignment_type = ALIGNMENT_TYPES[alignment]  # of the searches
        self.db: Any = None
        self.work: str | None = None
        self.index: dict[str, int] = {}  # fragment id -> global index
        self.ids: list[str] = []

    def _database(self) -> Any:
        import ray

        from rayfold.engines.foldseek import FoldseekDatabase, write_ca_structures

        if self.db is None:
            self.work = tempfile.mkdtemp(prefix="rayfold-foldseek-")
            structures = f"{self.work}/structures"
            for ref, rows, globals_ in self.shards:  # one shard in memory at a time
                shard = ray.get(ref).subset(rows)
                write_ca_structures(shard, Path(structures))
                self.index.update(zip(shard.ids, globals_.tolist()))
            self.ids = [""] * (max(self.index.values()) + 1)
            for fid, g in self.index.items():
                self.ids[g] = fid
            self.db = FoldseekDatabase.create(self.binary, structures, self.work, self.threads)
            shutil.rmtree(structures)  # the database holds all Foldseek reads again
        return self.db

    def first_pass(self, members: np.ndarray) -> np.ndarray:
        """(representative, member) global index pairs of `foldseek cluster` over `members`."""
        db = self._database()
        everyone = len(np.unique(members)) == len(self.index)
        pairs = db.cluster(None if everyone else [self.ids[g] for g in members.tolist()])
        return np.array([(self.index[r], self.index[m]) for r, m in pairs], np.int64).reshape(-1, 2)

    def search(self, queries: np.ndarray, targets: np.ndarray) -> np.ndarray:
        """(query, target) global index pairs that Foldseek's search (-e 10) finds."""
        db = self._database()
        hits = db.search([self.ids[g] for g in queries.tolist()], [self.ids[g] for g in targets.tolist()],
                         alignment_type=self.alignment_type, columns=("query", "target"))
        return np.array([(self.index[h.query], self.index[h.target]) for h in hits if h.query != h.target],
                        np.int64).reshape(-1, 2)

    def close(self) -> None:
        """Remove the work folder (the database lives in it)."""
        self.db = None
        if self.work is not None:
            shutil.rmtree(self.work, ignore_errors=True)


# --- the protocols' Ray implementations --------------------------------------------------------


def pair_seconds(lengths: np.ndarray, pairs: np.ndarray, skip: np.ndarray, chunk: int = 8_192) -> np.ndarray:
    """`estimated_seconds` of each pair, 0 where `skip`, computed `chunk` pairs at a time: over a
    k-mer round's pairs at once its float64 temporaries took ~40 B a pair (~5 MB at 10^5 fragments)
    besides the 8 B kept."""
    from rayfold.align.tmalign import estimated_seconds

    cost = np.zeros(len(pairs), np.float64)
    for lo in range(0, len(pairs), chunk):
        part = pairs[lo:lo + chunk]
        cost[lo:lo + chunk] = estimated_seconds(lengths[part[:, 0]], lengths[part[:, 1]])
    cost[skip] = 0.0
    return cost


def total_seconds(lengths: np.ndarray, pairs: np.ndarray, skip: np.ndarray, chunk: int = 8_192) -> float:
    """The sum of `pair_seconds`, `chunk` pairs at a time: no array of every pair's cost."""
    return float(sum(pair_seconds(lengths, pairs[lo:lo + chunk], skip[lo:lo + chunk]).sum()
                     for lo in range(0, len(pairs), chunk)))


def _cpus() -> int:
    import ray

    return max(1, int(ray.cluster_resources().get("CPU", 1)))


class RayAligner:
    """TM-align batches as Ray tasks, each over the two shards it touches: at most `pairs_per_task`
    pairs and about `task_seconds` of estimated work a task, and never fewer than a few tasks per CPU
    for the pairs of one call, so a handful of long chains spreads over the cores instead of running
    one after another in a single task.

    With a `memo` (alignments earlier releases computed), a pair it holds in the asked orientation
    is answered from it and never aligned again; `on_aligned` receives the columns of every pair
    aligned here (what the next release's memo gets). `calls` counts the pairs really aligned."""

    def __init__(self, fragments: ShardedFragments | FragmentSet, pairs_per_task: int, progress: bool,
                 memo: AlignmentMemo | None = None, on_aligned: Callable[[Columns], None] | None = None,
                 task_seconds: float = ClusterConfig.task_seconds) -> None:
        self.fragments = fragments if isinstance(fragments, ShardedFragments) else shard_in_memory(fragments, 4096)
        self.pairs_per_task, self.task_seconds = pairs_per_task, task_seconds
        self.progress = progress
        # queued tasks are cheap and are what an autoscaler sees as demand: never fewer than 32
        self.max_in_flight = max(32, 4 * _cpus())
        self.calls = 0
        self.memo, self.on_aligned = memo, on_aligned
        self.remote = ray_remote(_align_block, runtime_env={"env_vars": WORKER_ENV})

    def _results(self, pairs: np.ndarray, desc: str,
                 max_ahead: int | None = None) -> tuple[BlockPlan, Iterator[tuple[int, Any]]]:
        """The (shard a, shard b, rows) blocks of `pairs`, and (block index, columns) as they finish.
        Pairs the memo answers cost nothing, so its blocks can be longer; the rows come in the same
        order either way. A block the memo answers whole is put in the object store as it is (so it
        takes its turn like a task), a block it answers in part aligns only the rest."""
        shards = self.fragments
        found, known = (self.memo.lookup(pairs) if self.memo is not None and len(self.memo)
                        else (np.zeros(len(pairs), bool), None))
        lengths = shards.index.lengths
        cost_limit = min(self.task_seconds, total_seconds(lengths, pairs, found) / (TASKS_PER_CPU * _cpus()))
        # costs asked a run of one shard pair at a time: 8 B a pair less on the driver
        blocks = shards.block_plan(pairs[:, 0], pairs[:, 1], self.pairs_per_task,
                                   lambda rows: pair_seconds(lengths, pairs[rows], found[rows]), cost_limit)
        self.calls += int((~found).sum())

        def submit(index: int) -> Any:
            import ray

            a, b, rows = blocks[index]
            todo = rows[~found[rows]]
            if not len(todo):
                return ray.put({k: known[k][rows] for k in VALUES})  # type: ignore[index]
            return self.remote.remote(shards.refs[a], shards.position(pairs[todo, 0]),
                                      shards.refs[b], shards.position(pairs[todo, 1]))

        def finished() -> Iterator[tuple[int, Any]]:
            for index, part in iter_tasks(Submissions(len(blocks), submit), desc=desc, progress=self.progress,
                                          max_in_flight=self.max_in_flight, max_ahead=max_ahead):
                rows = blocks[index][2]
                todo = ~found[rows]
                if todo.any() and self.on_aligned is not None:
                    i, j = (pairs[rows[todo], end].astype(np.int64) for end in (0, 1))
                    self.on_aligned({"i": i, "j": j,
                                     **{k: part[k] for k in VALUES}})
                if todo.any() and not todo.all():  # a block answered in part: the rest from the memo
                    merged = {k: known[k][rows].copy() for k in VALUES}  # type: ignore[index]
                    for k in VALUES:
                        merged[k][todo] = part[k]
                    part = merged
                yield index, part

        return blocks, finished()

    def align(self, pairs: np.ndarray, *, desc: str) -> Columns:
        """Columns of all alignments, in pair order. Each block's result is copied into its rows as it
        arrives and let go: the driver never holds every block's result besides the columns."""
        pairs = index_pairs(pairs)
        blocks, results = self._results(pairs, desc)
        columns = {k: np.zeros(len(pairs), v.dtype) for k, v in empty_columns().items()}
        for index, part in results:
            rows = blocks[index][2]
            for k in VALUES:
                columns[k][rows] = part[k]
        columns["i"], columns["j"] = pairs[:, 0].astype(np.int64), pairs[:, 1].astype(np.int64)
        return columns

    def align_kept(self, pairs: np.ndarray, config: ClusterConfig, evidence: Evidence, *, desc: str) -> np.ndarray:
        """`edge_bits` per pair (one byte each), the rows worth keeping added to `evidence` block by
        block, never the round's columns at once. Blocks go to `evidence` in block order whatever
        order their tasks finish in, so its rows are the same on every run; a finished block waits
        for the blocks before it, and submissions stay within `2 * max_in_flight` places of the
        oldest unfinished one, so a straggler holds back at most that many blocks' kept rows."""
        pairs = index_pairs(pairs)
        blocks, results = self._results(pairs, desc, max_ahead=2 * self.max_in_flight)
        bits = np.zeros(len(pairs), np.uint8)
        finished: dict[int, Columns] = {}
        next_block = 0
        for index, part in results:
            rows = blocks[index][2]
            part = {**part, "i": pairs[rows, 0], "j": pairs[rows, 1]}
            bits[rows] = edge_bits(part, config)
            finished[index] = take_rows(part, worth_keeping(part, config))
            while next_block in finished:
                evidence.add(finished.pop(next_block))
                next_block += 1
        return bits


class RayPrefilter:
    """The built-in sensitive search, one task per (query shard, target shard) block of at most
    `chunk` queries: no task holds more than two shards."""

    def __init__(self, fragments: ShardedFragments, prefilter_config: Any, progress: bool,
                 chunk: int | None = None) -> None:
        self.fragments, self.prefilter_config = fragments, prefilter_config
        self.progress, self.chunk = progress, chunk
        self.remote = ray_remote(_search_block, runtime_env={"env_vars": WORKER_ENV})

    def __call__(self, queries: np.ndarray, targets: np.ndarray, *, desc: str) -> np.ndarray:
        """Unordered pairs (i < j, unique, sorted), folded block by block as they finish: the driver
        holds the distinct pairs, 8 bytes each, and one block (the audit's candidates grow with the
        target shards: 100 per query and shard)."""
        distinct = DistinctPairs()
        for pairs, _ in self.blocks(queries, targets, desc=desc):
            distinct.add(pairs)
        return distinct.pairs()

    def blocks(self, queries: np.ndarray, targets: np.ndarray, *, desc: str,
               limit: int | None = None) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """(query, target) pairs and estimated TMs of each (query chunk, target shard) block as it
        finishes (a pair may come from both of its ends): the cascade keeps each end's best few as
        they arrive instead of every candidate of every block at once."""
        prefilter_config = replace(self.prefilter_config, max_candidates=limit) if limit else self.prefilter_config
        queries = np.unique(np.asarray(queries, dtype=np.int64))
        targets = np.unique(np.asarray(targets, dtype=np.int64))
        if not len(queries) or not len(targets):
            return
        shards, cpus = self.fragments, _cpus()
        chunk = self.chunk or int(np.clip(-(-len(queries) // (4 * cpus)), 64, 2000))
        target_shards = shards.by_shard(targets)
        submissions = []
        for qs, in_q in enumerate(shards.by_shard(queries)):
            for start in range(0, len(in_q), chunk):
                q = in_q[start:start + chunk]
                for ts, t in enumerate(target_shards):
                    if len(t):
                        submissions.append(lambda q=q, qs=qs, t=t, ts=ts: self.remote.remote(
                            shards.refs[qs], shards.position(q), q, shards.refs[ts], shards.position(t), t,
                            prefilter_config))
        for _, block in iter_tasks(submissions, desc=desc, progress=self.progress, max_in_flight=max(8, cpus)):
            yield block


class RayKmerCandidates:
    """The k-mer round's candidate edges: k-mers per shard (tasks), a Ray Data hash shuffle by k-mer
    (edges to each group's centre), a second by member (distinct centres, the best few), driven from
    a task (`_tries_by_shuffle`), not from the driver. A round of at most `rows_per_task` k-mer rows
    runs both stages in one task instead (the same rows: a shuffle partition holds that many; a
    shuffle's start-up costs seconds a round). The driver receives at most `centres_per_fragment`
    rows per fragment."""

    def __init__(self, fragments: ShardedFragments, config: ClusterConfig, progress: bool,
                 rows_per_task: int = KMER_ROWS_PER_TASK) -> None:
        self.fragments, self.config, self.progress = fragments, config, progress
        self.rows_per_task = rows_per_task
        self.remote = ray_remote(_shard_kmers, num_returns=2, runtime_env={"env_vars": WORKER_ENV})
        self.one_task = ray_remote(_tries_in_one_task, runtime_env={"env_vars": WORKER_ENV})
        # the shuffle's coordinator holds no CPU: its stages' tasks need every one
        self.shuffle = ray_remote(_tries_by_shuffle, num_cpus=0, runtime_env={"env_vars": WORKER_ENV})

    def __call__(self, members: np.ndarray, priority: np.ndarray,
                 seed: int | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(member, centre, shared k-mers): each member's best `centres_per_fragment` centres."""
        table = self._tries(members, priority, seed)
        return tuple(table.column(c).to_numpy().astype(np.int64) for c in ("member", "centre", "shared"))

    def ranked(self, members: np.ndarray, priority: np.ndarray,
               seed: int | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(member, centre, attempt) as `cascade.best_tries` gives them, ranked in the shuffle's tasks
        (all rows of a member are in one of them), sorted by member and attempt there too: the
        driver reads 9 bytes a try where the tasks left them (the object store's pages; no sort, no
        copy of its own: at 10^5 fragments ~2.5 tries a fragment, and the sort's index and copies
        were ~25 B each)."""
        table = self._tries(members, priority, seed)
        return tuple(column_values(table, c) for c in ("member", "centre", "attempt"))  # type: ignore[return-value]

    def _tries(self, members: np.ndarray, priority: np.ndarray, seed: int | None) -> pa.Table:
        import ray

        members = np.asarray(members)  # a round's members come sorted and unique: no int64 copy of them
        members = members if is_sorted(members, strict=True) else np.unique(members)
        shards, config = self.fragments, self.config
        kmer_config = config.kmer_config()
        kmer_config = kmer_config if seed is None else replace(kmer_config, seed=seed)
        refs, counts = [], []
        for s, m in enumerate(shards.by_shard(members)):
            if len(m):
                table, count = self.remote.remote(shards.refs[s], shards.position(m), m.astype(np.int64), priority[m],
                                                  shards.index.lengths[m], kmer_config)
                refs.append(table)
                counts.append(count)
        rows = sum(ray.get(counts))
        if not rows:
            return TRIES_SCHEMA.empty_table()
        if rows <= self.rows_per_task:
            return ray.get(self.one_task.remote(config.coverage, config.centres_per_fragment, *refs))
        partitions = max(2 * _cpus(), -(-rows // self.rows_per_task))
        # a list argument: the k-mer tables stay references until the shuffle's own tasks read them
        return ray.get(self.shuffle.remote(config.coverage, config.centres_per_fragment, partitions, refs))


class RayFoldseek:
    """Foldseek's stages on one actor (`FoldseekNode`) on the node offering the `foldseek` resource:
    one database of every fragment, one command per stage; the TM-align confirmations stay tasks
    spread over the cluster."""

    def __init__(self, fragments: ShardedFragments, binary: str, config: ClusterConfig) -> None:
        import ray

        self.fragments = fragments
        nodes = [n["Resources"] for n in ray.nodes() if n.get("Alive", True)]
        offering = [r for r in nodes if r.get(FOLDSEEK_RESOURCE, 0) >= 1]
        ask = config.foldseek_node == "always" or (config.foldseek_node == "auto" and bool(offering))
        # Foldseek's threads: all CPUs of the node it will run on, never the cluster's total
        node_cpus = max((int(r.get("CPU", 0)) for r in (offering or ([] if ask else nodes))), default=0)
        threads = config.foldseek_threads or node_cpus
        if not threads:
            raise InputError("foldseek_threads_needed", "no node offering the 'foldseek' resource is up yet: "
                             "set foldseek_threads to the CPUs of that node type")
        # no CPUs reserved: its stages run one at a time while the driver waits, and the node's CPUs
        # must stay free for the TM-align tasks between them
        options: dict = {"num_cpus": 0}
        if ask:
            options["resources"] = {FOLDSEEK_RESOURCE: 1}
        shards = []
        for s in range(fragments.n_shards):
            globals_ = fragments.in_shard(s)
            shards.append((fragments.refs[s], fragments.position(globals_), globals_))
        self.node: Any = ray.remote(**options)(FoldseekNode).remote(shards, binary, threads,
                                                                config.foldseek_audit_alignment)

    def search(self, queries: np.ndarray, targets: np.ndarray, *, desc: str) -> np.ndarray:
        import ray

        if not len(queries) or not len(targets):
            return np.zeros((0, 2), np.int64)
        return unique_pairs(ray.get(self.node.search.remote(np.unique(queries), np.unique(targets))))

    def first_pass(self, members: np.ndarray) -> np.ndarray:
        import ray

        pairs = ray.get(self.node.first_pass.remote(members))
        rep_of = np.arange(len(self.fragments))
        rep_of[pairs[:, 1]] = pairs[:, 0]
        return rep_of[members]

    def close(self) -> None:
        import ray

        try:
            ray.get(self.node.close.remote())
        finally:
            ray.kill(self.node)


def resolve_engine(requested: str, foldseek: str | None) -> tuple[str, str | None]:
    """('builtin' | 'foldseek', binary): auto takes Foldseek when it is found, the built-in engine otherwise."""
    from rayfold.engines.foldseek import find_foldseek

    if requested not in ("auto", "builtin", "foldseek"):
        raise InputError("bad_engine", f"unknown engine {requested!r}: auto, builtin or foldseek")
    binary = find_foldseek(foldseek) if requested != "builtin" else None
    if requested == "foldseek" and binary is None:
        raise InputError("foldseek_not_found", "--engine foldseek: no foldseek binary on PATH or at --foldseek")
    return ("foldseek", binary) if binary else ("builtin", None)


def ray_engine(fragments: ShardedFragments, config: ClusterConfig, prefilter_config: Any,
               foldseek: str | None, progress: bool) -> Engine:
    import rayfold
    from rayfold.engines.foldseek import foldseek_version

    name, binary = resolve_engine(config.engine, foldseek)
    if name == "foldseek":
        assert binary is not None
        tool = RayFoldseek(fragments, binary, config)
        return Engine("foldseek", foldseek_version(binary), tool.search, tool.first_pass, close=tool.close)
    prefilter = RayPrefilter(fragments, prefilter_config, progress)
    return Engine("builtin", f"rayfold {rayfold.__version__}", prefilter,
                  kmer_candidates=RayKmerCandidates(fragments, config, progress), scored_search=prefilter.blocks)


def cluster_fragments(
    fragments: FragmentSet | ShardedFragments,
    *,
    config: ClusterConfig | None = None,
    prefilter_config: Any = None,
    foldseek: str | None = None,
    progress: bool = True,
    memo: AlignmentMemo | None = None,
    on_aligned: Callable[[Columns], None] | None = None,
) -> dict:
    """`rayfold.cluster.algorithm.cluster` on the Ray in scope; returns the tables, `singleton_links`
    (the audit's links as a table) and `cluster_runs` (one row as a dict). A FragmentSet the caller
    holds is put in shards first; a ShardedFragments is used as it is. `memo`, `on_aligned`: see
    `RayAligner` (a release's stored alignments, and where the new ones go)."""
    from rayfold.align.prefilter import PrefilterConfig
    from rayfold.model import schema

    config = config or ClusterConfig()
    shards = fragments if isinstance(fragments, ShardedFragments) else shard_in_memory(fragments, config.shard_size)
    engine = ray_engine(shards, config, prefilter_config or PrefilterConfig(), foldseek, progress)
    aligner = RayAligner(shards, config.pairs_per_task, progress, memo, on_aligned, config.task_seconds)
    # the alignments kept for later steps go to files on the driver's disk as they come, not its memory
    try:
        with tempfile.TemporaryDirectory(prefix="rayfold-evidence-") as spill:
            result = cluster(shards.index, engine, aligner, config, Evidence(spill))
    finally:
        if engine.close is not None:
            engine.close()
    ids, links = id_array(shards.index.ids), result.links
    tables = dict(result.tables)
    tables["singleton_links"] = pa.Table.from_arrays(
        [ids.take(pa.array(links[:, 0].astype(np.int64))), ids.take(pa.array(links[:, 1].astype(np.int64)))],
        schema=schema.SINGLETON_LINKS)
    tables["cluster_runs"] = result.run
    return tables


def load_fragments(uri: str, *, storage_options: dict | None = None, shard_size: int = 4096) -> ShardedFragments:
    """The passed fragments under `uri` (a fragments dataset, or a run folder holding one) in shards
    read by tasks: the driver receives only ids, lengths and mean pLDDT, from the task that read
    the catalogue and planned the shards (`load_planned`). Needs Ray."""
    folder = join_uri(uri, "fragments") if exists(join_uri(uri, "fragments"), storage_options) else uri
    sharded = load_planned(parquet_parts(folder, storage_options), storage_options=storage_options,
                           shard_size=shard_size)
    if sharded is None:
        raise InputError("no_fragments", f"no fragments table at {uri}")
    return sharded


def run_cluster(
    fragments_uri: str,
    out: str,
    *,
    config: ClusterConfig | None = None,
    prefilter_config: Any = None,
    foldseek: str | None = None,
    storage_options: dict | None = None,
    address: str | None = None,
    progress: bool = True,
    ray_init_kwargs: dict | None = None,
) -> ClusterSummary:
    """Cluster the passed fragments under `fragments_uri`.

    Writes OUT/{clusters,members,merges,singleton_audit,cluster_runs}/.
    """
    from rayfold.io.runfolder import RunFolder
    from rayfold.model import schema

    config = config or ClusterConfig()
    RunFolder(out, storage_options).check_writable()
    with ray_session(address, **(ray_init_kwargs or {})):
        fragments = load_fragments(fragments_uri, storage_options=storage_options, shard_size=config.shard_size)
        tables = cluster_fragments(fragments, config=config, prefilter_config=prefilter_config,
                                   foldseek=foldseek, progress=progress)
    run_row = tables.pop("cluster_runs")
    tables.pop("singleton_links")
    tables["cluster_runs"] = pa.Table.from_pylist([run_row], schema=schema.CLUSTER_RUNS)
    for name, table in tables.items():
        # one part per table, replaced as a whole: a re-run gives the same tables, never duplicates
        write_parquet(table, join_uri(out, name, "part-0.parquet"), storage_options=storage_options)
    return ClusterSummary(out=out, **{k: run_row[k] for k in ClusterSummary.__dataclass_fields__ if k != "out"})
