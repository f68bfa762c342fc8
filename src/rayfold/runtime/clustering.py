"""Clustering on Ray: the Ray implementations of `rayfold.cluster.algorithm`'s aligner and searches.

The driver puts one FragmentSet (flat arrays) in the object store; prefilter and TM-align work runs
in batched tasks that return plain arrays; Foldseek runs as one task on the node that offers the
`foldseek` resource; the algorithm itself (which pairs, which merges) is pure and lives in
`rayfold.cluster.algorithm`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from rayfold.cluster.algorithm import Columns, Engine, cluster, unique_pairs
from rayfold.cluster.rules import ClusterConfig, PreviousClusters
from rayfold.io.storage import exists, join_uri, read_parquet_dataset, write_parquet
from rayfold.model.errors import InputError
from rayfold.model.fragset import FragmentSet
from rayfold.runtime.session import WORKER_ENV, ray_remote, ray_session, run_tasks

FOLDSEEK_RESOURCE = "foldseek"  # custom resource of cluster.yaml's large node type
ALIGNMENT_COLUMNS = ("i", "j", "tm_a", "tm_b", "rmsd", "aligned_length", "seq_identity", "cov_a", "cov_b")


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


def _search_chunk(fragments: FragmentSet, queries: np.ndarray, targets: np.ndarray,
                  prefilter_config: Any) -> np.ndarray:
    """Candidate (query, target) pairs as indices of `fragments` (a query is never its own target)."""
    from rayfold.align.prefilter import search

    pairs = search(fragments.subset(queries), fragments.subset(targets), prefilter_config)
    if not len(pairs):
        return np.zeros((0, 2), np.int64)
    pairs = np.column_stack([queries[pairs[:, 0]], targets[pairs[:, 1]]])
    return pairs[pairs[:, 0] != pairs[:, 1]]


def _align_chunk(fragments: FragmentSet, pairs: np.ndarray) -> Columns:
    from rayfold.align.tmalign import align_pairs

    return align_pairs(fragments, pairs)


def _foldseek_first_pass(fragments: FragmentSet, members: np.ndarray, binary: str, threads: int) -> list:
    """(representative id, member id) pairs of `foldseek cluster` over fragments[members]."""
    import tempfile
    from pathlib import Path

    from rayfold.engines.foldseek import run_cluster, write_ca_structures

    with tempfile.TemporaryDirectory(prefix="rayfold-foldseek-") as tmp:
        write_ca_structures(fragments.subset(members), Path(tmp) / "structures")
        return run_cluster(binary, str(Path(tmp) / "structures"), str(Path(tmp) / "work"), threads=threads)


def _foldseek_search_pairs(fragments: FragmentSet, queries: np.ndarray, targets: np.ndarray, binary: str,
                           threads: int) -> np.ndarray:
    """(query, target) index pairs that `foldseek easy-search` with TM-align alignment finds."""
    import tempfile
    from pathlib import Path

    from rayfold.engines.foldseek import run_search, write_ca_structures

    index = fragments.index()
    with tempfile.TemporaryDirectory(prefix="rayfold-foldseek-") as tmp:
        write_ca_structures(fragments.subset(queries), Path(tmp) / "queries")
        write_ca_structures(fragments.subset(targets), Path(tmp) / "targets")
        hits = run_search(binary, str(Path(tmp) / "queries"), str(Path(tmp) / "targets"),
                          str(Path(tmp) / "work"), threads=threads, alignment_type=1)
    pairs = np.array([(index[h.query], index[h.target]) for h in hits if h.query != h.target], dtype=np.int64)
    return pairs.reshape(-1, 2)


# --- the protocols' Ray implementations --------------------------------------------------------


class RayAligner:
    """TM-align batches of `pairs_per_task` pairs as Ray tasks over one FragmentSet in the object store."""

    def __init__(self, fragments_ref: Any, pairs_per_task: int, progress: bool) -> None:
        import ray

        self.fragments_ref = fragments_ref
        self.pairs_per_task = pairs_per_task
        self.progress = progress
        # queued tasks are cheap and are what an autoscaler sees as demand: never fewer than 32
        self.max_in_flight = max(32, 4 * int(ray.cluster_resources().get("CPU", 1)))
        self.calls = 0
        self.remote = ray_remote(_align_chunk, runtime_env={"env_vars": WORKER_ENV})

    def align(self, pairs: np.ndarray, *, desc: str) -> Columns:
        """Columns of all alignments, concatenated in pair order."""
        pairs = np.asarray(pairs, dtype=np.int64).reshape(-1, 2)
        self.calls += len(pairs)
        submissions = [(lambda batch=pairs[s : s + self.pairs_per_task]: self.remote.remote(self.fragments_ref, batch))
                       for s in range(0, len(pairs), self.pairs_per_task)]
        columns = run_tasks(submissions, desc=desc, progress=self.progress, max_in_flight=self.max_in_flight)
        empty = {"i": np.int64, "j": np.int64, "aligned_length": np.int64}
        return {k: np.concatenate([c[k] for c in columns]) if columns else np.zeros(0, empty.get(k, np.float64))
                for k in ALIGNMENT_COLUMNS}


class RayPrefilter:
    """The built-in candidate search in tasks of `chunk` queries (default: about 4 tasks per CPU,
    64 to 2,000 queries each)."""

    def __init__(self, fragments_ref: Any, prefilter_config: Any, progress: bool, chunk: int | None = None) -> None:
        self.fragments_ref, self.prefilter_config = fragments_ref, prefilter_config
        self.progress, self.chunk = progress, chunk
        self.remote = ray_remote(_search_chunk, runtime_env={"env_vars": WORKER_ENV})

    def __call__(self, queries: np.ndarray, targets: np.ndarray, *, desc: str) -> np.ndarray:
        import ray

        queries = np.asarray(queries, dtype=np.int64)
        targets = np.asarray(targets, dtype=np.int64)
        if not len(queries) or not len(targets):
            return np.zeros((0, 2), np.int64)
        cpus = max(1, int(ray.cluster_resources().get("CPU", 1)))
        chunk = self.chunk or int(np.clip(-(-len(queries) // (4 * cpus)), 64, 2000))
        submissions = [
            (lambda s=s: self.remote.remote(self.fragments_ref, queries[s : s + chunk], targets, self.prefilter_config))
            for s in range(0, len(queries), chunk)
        ]
        parts = run_tasks(submissions, desc=desc, progress=self.progress, max_in_flight=max(8, cpus))
        return unique_pairs(np.concatenate(parts))


class RayFoldseek:
    """`foldseek cluster` and `easy-search` as single tasks on the node offering the `foldseek` resource."""

    def __init__(self, fragments: FragmentSet, fragments_ref: Any, binary: str, config: ClusterConfig) -> None:
        import ray

        self.fragments, self.fragments_ref, self.binary = fragments, fragments_ref, binary
        nodes = [n["Resources"] for n in ray.nodes() if n.get("Alive", True)]
        offering = [r for r in nodes if r.get(FOLDSEEK_RESOURCE, 0) >= 1]
        ask = config.foldseek_node == "always" or (config.foldseek_node == "auto" and bool(offering))
        # one task on one node: all CPUs of the node it will run on, never the cluster's total
        node_cpus = max((int(r.get("CPU", 0)) for r in (offering or ([] if ask else nodes))), default=0)
        self.threads = config.foldseek_threads or node_cpus
        if not self.threads:
            raise InputError("foldseek_threads_needed", "no node offering the 'foldseek' resource is up yet: "
                             "set foldseek_threads to the CPUs of that node type")
        options: dict = {"num_cpus": self.threads}
        if ask:
            options["resources"] = {FOLDSEEK_RESOURCE: 1}
        self.cluster_task = ray_remote(_foldseek_first_pass, **options)
        self.search_task = ray_remote(_foldseek_search_pairs, **options)

    def search(self, queries: np.ndarray, targets: np.ndarray, *, desc: str) -> np.ndarray:
        import ray

        if not len(queries) or not len(targets):
            return np.zeros((0, 2), np.int64)
        ref = self.search_task.remote(self.fragments_ref, queries, targets, self.binary, self.threads)
        return unique_pairs(ray.get(ref))

    def first_pass(self, members: np.ndarray) -> np.ndarray:
        import ray

        pairs = ray.get(self.cluster_task.remote(self.fragments_ref, members, self.binary, self.threads))
        index = self.fragments.index()
        rep_of = members.copy()
        position = {int(g): k for k, g in enumerate(members.tolist())}
        for rep_id, member_id in pairs:
            rep_of[position[index[member_id]]] = index[rep_id]
        return rep_of


def resolve_engine(requested: str, foldseek: str | None) -> tuple[str, str | None]:
    """('builtin' | 'foldseek', binary): auto takes Foldseek when it is found, the built-in engine otherwise."""
    from rayfold.engines.foldseek import find_foldseek

    if requested not in ("auto", "builtin", "foldseek"):
        raise InputError("bad_engine", f"unknown engine {requested!r}: auto, builtin or foldseek")
    binary = find_foldseek(foldseek) if requested != "builtin" else None
    if requested == "foldseek" and binary is None:
        raise InputError("foldseek_not_found", "--engine foldseek: no foldseek binary on PATH or at --foldseek")
    return ("foldseek", binary) if binary else ("builtin", None)


def ray_engine(fragments: FragmentSet, fragments_ref: Any, config: ClusterConfig, prefilter_config: Any,
               foldseek: str | None, progress: bool) -> Engine:
    import rayfold
    from rayfold.engines.foldseek import foldseek_version

    name, binary = resolve_engine(config.engine, foldseek)
    prefilter = RayPrefilter(fragments_ref, prefilter_config, progress)
    if name == "foldseek":
        assert binary is not None
        tool = RayFoldseek(fragments, fragments_ref, binary, config)
        return Engine("foldseek", foldseek_version(binary), tool.search, prefilter, tool.first_pass)
    return Engine("builtin", f"rayfold {rayfold.__version__}", prefilter, prefilter)


def cluster_fragments(
    fragments: FragmentSet,
    *,
    config: ClusterConfig | None = None,
    prefilter_config: Any = None,
    foldseek: str | None = None,
    progress: bool = True,
    previous: PreviousClusters | None = None,
) -> dict:
    """`rayfold.cluster.algorithm.cluster` on the Ray in scope; returns the tables, `singleton_links`
    (the audit's links as a table) and `cluster_runs` (one row as a dict)."""
    import pyarrow as pa
    import ray

    from rayfold.align.prefilter import PrefilterConfig
    from rayfold.model import schema

    config = config or ClusterConfig()
    fragments_ref = ray.put(fragments)
    engine = ray_engine(fragments, fragments_ref, config, prefilter_config or PrefilterConfig(), foldseek, progress)
    aligner = RayAligner(fragments_ref, config.pairs_per_task, progress)
    result = cluster(fragments, engine, aligner, config, previous)
    ids = np.array(fragments.ids, dtype=object)
    links = result.links
    tables = dict(result.tables)
    tables["singleton_links"] = pa.Table.from_arrays(
        [pa.array(ids[links[:, 0]].tolist(), pa.string()), pa.array(ids[links[:, 1]].tolist(), pa.string())],
        schema=schema.SINGLETON_LINKS)
    tables["cluster_runs"] = result.run
    return tables


def load_fragments(uri: str, *, storage_options: dict | None = None) -> FragmentSet:
    """FragmentSet of the passed fragments under `uri` (a fragments dataset, or a run folder holding one)."""
    folder = join_uri(uri, "fragments") if exists(join_uri(uri, "fragments"), storage_options) else uri
    table = read_parquet_dataset(folder, storage_options)
    if table is None or table.num_rows == 0:
        raise InputError("no_fragments", f"no fragments table at {uri}")
    return FragmentSet.from_table(table, passed_only=True)


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
    import pyarrow as pa

    from rayfold.io.runfolder import RunFolder
    from rayfold.model import schema

    RunFolder(out, storage_options).check_writable()
    fragments = load_fragments(fragments_uri, storage_options=storage_options)
    with ray_session(address, **(ray_init_kwargs or {})):
        tables = cluster_fragments(fragments, config=config, prefilter_config=prefilter_config,
                                   foldseek=foldseek, progress=progress)
    run_row = tables.pop("cluster_runs")
    tables.pop("singleton_links")
    tables["cluster_runs"] = pa.Table.from_pylist([run_row], schema=schema.CLUSTER_RUNS)
    for name, table in tables.items():
        # one part per table, replaced as a whole: a re-run gives the same tables, never duplicates
        write_parquet(table, join_uri(out, name, "part-0.parquet"), storage_options=storage_options)
    return ClusterSummary(out=out, **{k: run_row[k] for k in ClusterSummary.__dataclass_fields__ if k != "out"})
