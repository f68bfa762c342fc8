"""The Ray dataflow: the only module that knows about Ray.

Fragmenting: the driver lists inputs and groups them into work units (deterministic part names,
so a re-run skips units already written); Ray Data streams the units through an actor pool of
`FragmentStage`s; each actor writes its unit's Parquet parts straight to the output (local or
s3://) and returns a one-row summary, so the driver's memory does not grow with the data.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import time
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass

from rayfold.config import FragmentConfig, ReadConfig, RunConfig
from rayfold.fragment.stage import FragmentStage
from rayfold.io.storage import InputRef, join_uri, list_files, list_inputs, write_bytes, write_parquet

log = logging.getLogger(__name__)

# One BLAS thread per worker: several threads per process on a busy machine made splits 3-5x slower.
WORKER_ENV = {"OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}


@dataclass(frozen=True)
class WorkUnit:
    unit_id: str  # content-derived: the same inputs always give the same part names
    refs: tuple[InputRef, ...]

    @property
    def part_name(self) -> str:
        return f"part-{self.unit_id}.parquet"


@dataclass(frozen=True)
class FragmentSummary:
    out: str
    inputs: int
    units: int
    units_skipped: int
    structures: int
    fragments: int
    passed: int
    errors: int
    seconds: float


def plan_units(refs: Sequence[InputRef], unit_size: int, salt: str = "") -> list[WorkUnit]:
    """Group sorted inputs into units of `unit_size` files; a tar shard is a unit of its own.

    `salt` (the release) keeps the part names of two releases apart even for the same inputs.
    """
    units: list[WorkUnit] = []
    batch: list[InputRef] = []

    def close(group: list[InputRef]) -> None:
        key = salt + "".join(f"\n{r.uri}\t{r.size}\t{r.mtime_or_etag}" for r in group)
        digest = hashlib.sha1(key.encode("utf-8", "surrogateescape")).hexdigest()[:16]  # any file name
        units.append(WorkUnit(digest, tuple(group)))

    for ref in sorted(refs, key=lambda r: r.uri):
        if ref.is_tar:
            close([ref])
            continue
        batch.append(ref)
        if len(batch) >= unit_size:
            close(batch)
            batch = []
    if batch:
        close(batch)
    return units


class FragmentWorker:
    """Ray Data actor: one `FragmentStage` per process, set up once.

    A unit's parts are written errors, chains, fragments, then (in a release) its manifest rows:
    the last part present marks the unit complete, and the same unit always gets the same names,
    so a unit cut short is simply written again.
    """

    def __init__(self, out: str, config: FragmentConfig, read: ReadConfig, storage_options: dict | None,
                 export_structures: bool, release: int | None = None, keep_entries=None) -> None:
        self.out = out
        self.storage_options = storage_options
        self.release = release
        self.keep_entries = keep_entries
        self.stage = FragmentStage(config, read, storage_options=storage_options, export_structures=export_structures)

    def __call__(self, batch: dict) -> dict:
        keys = ("unit_id", "structures", "fragments", "passed", "errors", "seconds")
        summary: dict[str, list] = {k: [] for k in keys}
        for unit_id, refs_json in zip(batch["unit_id"], batch["refs"]):
            started = time.perf_counter()
            items = json.loads(refs_json)
            sources = {r["uri"]: r.pop("source", "") for r in items}
            result = self.stage.process([InputRef(**r) for r in items])
            if self.keep_entries is not None:
                result = _keep_entries(result, self.keep_entries)
            part = f"part-{unit_id}.parquet"
            for fragment_id, data in result.structures.items():
                write_bytes(data, join_uri(self.out, "structures", f"{fragment_id}.pdb"),
                            storage_options=self.storage_options)
            write_parquet(result.errors, join_uri(self.out, "errors", part), storage_options=self.storage_options)
            write_parquet(result.chains, join_uri(self.out, "chains", part), storage_options=self.storage_options)
            write_parquet(result.fragments, join_uri(self.out, "fragments", part), storage_options=self.storage_options)
            if self.release is not None:
                write_parquet(_manifest_rows(result, unit_id, self.release, sources),
                              join_uri(self.out, "manifest", part), storage_options=self.storage_options)
            summary["unit_id"].append(unit_id)
            summary["structures"].append(result.n_structures)
            summary["fragments"].append(result.fragments.num_rows)
            summary["passed"].append(int(sum(result.fragments.column("passed").to_pylist())))
            summary["errors"].append(result.errors.num_rows)
            summary["seconds"].append(time.perf_counter() - started)
        return summary


def _manifest_rows(result, unit_id: str, release: int, sources: dict[str, str]):
    import pyarrow as pa

    from rayfold.model import schema

    rows = [
        {"input_uri": s.ref.uri, "source": sources.get(s.ref.uri, ""), "size": s.ref.size,
         "mtime_or_etag": s.ref.mtime_or_etag, "content_sha256": s.content_sha256, "unit_id": unit_id,
         "release": release, "structures": s.structures, "fragments": s.fragments, "errors": s.errors}
        for s in result.inputs
    ]
    return pa.Table.from_pylist(rows, schema=schema.MANIFEST)


def _keep_entries(result, keep):
    """The unit's fragments and chains of entries the input filter keeps (errors stay, all of them)."""
    import pyarrow as pa

    def kept(table):
        mask = [(e in keep) or (a is not None and a in keep)
                for e, a in zip(table.column("entry_id").to_pylist(), table.column("accession").to_pylist())]
        return table.filter(pa.array(mask, type=pa.bool_()))

    result.fragments = kept(result.fragments)
    result.chains = kept(result.chains)
    kept_ids = set(result.fragments.column("fragment_id").to_pylist())
    result.structures = {k: v for k, v in result.structures.items() if k in kept_ids}
    return result


@contextlib.contextmanager
def ray_session(address: str | None = None, **init_kwargs) -> Iterator[None]:
    """Use the running Ray, connect to `address` (or $RAY_ADDRESS, set inside `ray job submit`), or
    start a private local instance (and stop it after). Never `ray.init()` bare: it silently attaches
    to whatever cluster /tmp/ray last recorded."""
    import ray

    address = address or os.environ.get("RAY_ADDRESS")
    if ray.is_initialized():
        yield
        return
    if address:
        ray.init(address=address, logging_level=logging.WARNING, **init_kwargs)
    else:
        _start_local_ray(**init_kwargs)
    try:
        yield
    finally:
        ray.shutdown()


LOCAL_START_TRIES = 2


def _start_local_ray(**init_kwargs) -> None:
    """A private local Ray; on a busy machine its agent can miss the start-up deadline: wait longer, try again."""
    import ray

    from rayfold.model.errors import InputError

    # A token left in ~/.ray by another cluster must not stop a private local instance.
    os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    os.environ.setdefault("RAY_agent_register_timeout_ms", "120000")  # Ray's default (30 s) fails under load
    init_kwargs.setdefault("include_dashboard", False)
    for attempt in range(1, LOCAL_START_TRIES + 1):
        try:
            ray.init(address="local", logging_level=logging.WARNING, **init_kwargs)
            return
        except Exception as exc:  # Ray raises plain Exception/RuntimeError for start-up failures
            ray.shutdown()
            if attempt == LOCAL_START_TRIES:
                first_line = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
                raise InputError("ray_start_failed", f"could not start a local Ray after {attempt} tries: "
                                 f"{first_line}") from None
            log.warning("local Ray did not start (%s); trying again", str(exc).splitlines()[0] if str(exc) else exc)


def fragment_units(
    units: Sequence[WorkUnit],
    out: str,
    *,
    config: FragmentConfig,
    read: ReadConfig,
    run: RunConfig,
    storage_options: dict | None = None,
    progress: bool = True,
    release: int | None = None,
    sources: dict[str, str] | None = None,
    keep_entries=None,
) -> dict[str, int]:
    """Stream work units through an actor pool on the Ray in scope; returns totals over the units."""
    import ray
    from tqdm.auto import tqdm

    totals = {"structures": 0, "fragments": 0, "passed": 0, "errors": 0}
    if not units:
        return totals
    ctx = ray.data.DataContext.get_current()
    ctx.enable_progress_bars = False
    ctx.print_on_execution_start = False
    cpus = int(ray.cluster_resources().get("CPU", 1))
    workers = max(1, min(run.num_workers or cpus, len(units)))
    sources = sources or {}
    items = [
        {"unit_id": u.unit_id, "refs": json.dumps([{**asdict(r), "source": sources.get(r.uri, "")} for r in u.refs])}
        for u in units
    ]
    ds = ray.data.from_items(items, override_num_blocks=len(items)).map_batches(
        FragmentWorker,
        fn_constructor_kwargs={
            "out": out, "config": config, "read": read, "storage_options": storage_options,
            "export_structures": run.export_structures, "release": release,
            "keep_entries": keep_entries,
        },
        batch_size=1,
        compute=ray.data.ActorPoolStrategy(min_size=workers, max_size=workers),  # all start at once
        num_cpus=run.worker_num_cpus,
        runtime_env={"env_vars": WORKER_ENV},
    )
    bar = tqdm(total=len(units), unit="unit", desc="fragmenting", disable=not progress)
    for row in ds.iter_rows():
        for key in totals:
            totals[key] += int(row[key])
        bar.update(1)
        bar.set_postfix(fragments=totals["fragments"], errors=totals["errors"])
    bar.close()
    return totals


def run_fragment(
    inputs: Sequence[str],
    out: str,
    *,
    config: FragmentConfig = FragmentConfig(),
    read: ReadConfig = ReadConfig(),
    run: RunConfig = RunConfig(),
    storage_options: dict | None = None,
    address: str | None = None,
    progress: bool = True,
    ray_init_kwargs: dict | None = None,
) -> FragmentSummary:
    """Fragment every structure under `inputs` into `out`/{fragments,chains,errors}/ Parquet datasets."""
    from rayfold.io.runfolder import check_output_folder

    check_output_folder(out, storage_options)
    started = time.perf_counter()
    refs = list_inputs(inputs, storage_options=storage_options)
    units = plan_units(refs, run.unit_size)
    done = {uri.rsplit("/", 1)[-1] for uri in list_files(join_uri(out, "fragments"), storage_options=storage_options)}
    todo = [u for u in units if u.part_name not in done]
    totals = {"structures": 0, "fragments": 0, "passed": 0, "errors": 0}
    if todo:
        with ray_session(address, **(ray_init_kwargs or {})):
            totals = fragment_units(todo, out, config=config, read=read, run=run,
                                    storage_options=storage_options, progress=progress)
    return FragmentSummary(
        out=out, inputs=len(refs), units=len(units), units_skipped=len(units) - len(todo),
        seconds=time.perf_counter() - started, **totals,
    )


# --- Clustering ---------------------------------------------------------------------------------
# The driver holds one FragmentSet (flat arrays) in the object store; prefilter and TM-align work
# runs in batched tasks that return plain arrays; the driver decides merges (rayfold.cluster.linkage) and
# sends the alignments its guard needs back out as batches.


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


def _ray_remote(fn, **options):
    import ray

    return ray.remote(**options)(fn) if options else ray.remote(fn)


def _search_chunk(fragments, queries, targets, prefilter_config):
    """Candidate (query, target) pairs as indices of `fragments` (a query is never its own target)."""
    import numpy as np

    from rayfold.align.prefilter import search

    pairs = search(fragments.subset(queries), fragments.subset(targets), prefilter_config)
    pairs = np.column_stack([queries[pairs[:, 0]], targets[pairs[:, 1]]]) if len(pairs) else np.zeros((0, 2), np.int64)
    return pairs[pairs[:, 0] != pairs[:, 1]]


def _align_chunk(fragments, pairs):
    from rayfold.align.tmalign import align_pairs

    return align_pairs(fragments, pairs)


def _write_ca_structures(fragments, folder) -> None:
    from rayfold.engines.foldseek import write_ca_pdb

    folder.mkdir(parents=True, exist_ok=True)
    for fid, coords, sequence in zip(fragments.ids, fragments.coords, fragments.sequences):
        (folder / f"{fid}.pdb").write_bytes(write_ca_pdb(coords, sequence))


def _foldseek_first_pass(fragments, members, binary: str, threads: int):
    """(representative id, member id) pairs of `foldseek cluster` over fragments[members]."""
    import tempfile
    from pathlib import Path

    from rayfold.engines.foldseek import run_cluster

    with tempfile.TemporaryDirectory(prefix="rayfold-foldseek-") as tmp:
        _write_ca_structures(fragments.subset(members), Path(tmp) / "structures")
        return run_cluster(binary, str(Path(tmp) / "structures"), str(Path(tmp) / "work"), threads=threads)


def _foldseek_search_pairs(fragments, queries, targets, binary: str, threads: int):
    """(query, target) index pairs that `foldseek easy-search` with TM-align alignment finds."""
    import tempfile
    from pathlib import Path

    import numpy as np

    from rayfold.engines.foldseek import run_search

    index = fragments.index()
    with tempfile.TemporaryDirectory(prefix="rayfold-foldseek-") as tmp:
        _write_ca_structures(fragments.subset(queries), Path(tmp) / "queries")
        _write_ca_structures(fragments.subset(targets), Path(tmp) / "targets")
        hits = run_search(binary, str(Path(tmp) / "queries"), str(Path(tmp) / "targets"),
                          str(Path(tmp) / "work"), threads=threads, alignment_type=1)
    pairs = np.array([(index[h.query], index[h.target]) for h in hits if h.query != h.target], dtype=np.int64)
    return pairs.reshape(-1, 2)


def _in_batches(pairs, size: int):
    for start in range(0, len(pairs), size):
        yield pairs[start : start + size]


def _run_tasks(submissions, *, desc: str, progress: bool, max_in_flight: int) -> list:
    """Run (callable -> ObjectRef) thunks with bounded in-flight tasks; results in submission order."""
    import ray
    from tqdm.auto import tqdm

    submissions = list(submissions)
    results: list = [None] * len(submissions)
    pending: dict = {}
    bar = tqdm(total=len(submissions), desc=desc, unit="task", disable=not progress)
    next_index = 0
    while next_index < len(submissions) or pending:
        while next_index < len(submissions) and len(pending) < max_in_flight:
            pending[submissions[next_index]()] = next_index
            next_index += 1
        done, _ = ray.wait(list(pending), num_returns=1)
        for ref in done:
            results[pending.pop(ref)] = ray.get(ref)
            bar.update(1)
    bar.close()
    return results


class _Aligner:
    """Submits TM-align batches for one FragmentSet already in the object store."""

    def __init__(self, fragments_ref, config, progress: bool) -> None:
        import ray

        self.fragments_ref = fragments_ref
        self.config = config
        self.progress = progress
        # queued tasks are cheap and are what an autoscaler sees as demand: never fewer than 32
        self.max_in_flight = max(32, 4 * int(ray.cluster_resources().get("CPU", 1)))
        self.calls = 0
        self.remote = _ray_remote(_align_chunk, runtime_env={"env_vars": WORKER_ENV})

    def align(self, pairs, *, desc: str):
        """Columns of all alignments, concatenated in pair order."""
        import numpy as np

        pairs = np.asarray(pairs, dtype=np.int64).reshape(-1, 2)
        self.calls += len(pairs)
        submissions = [(lambda batch=batch: self.remote.remote(self.fragments_ref, batch))
                       for batch in _in_batches(pairs, self.config.pairs_per_task)]
        columns = _run_tasks(submissions, desc=desc, progress=self.progress, max_in_flight=self.max_in_flight)
        keys = ("i", "j", "tm_a", "tm_b", "rmsd", "aligned_length", "seq_identity", "cov_a", "cov_b")
        empty = {"i": np.int64, "j": np.int64, "aligned_length": np.int64}
        return {k: np.concatenate([c[k] for c in columns]) if columns else np.zeros(0, empty.get(k, np.float64))
                for k in keys}

    def min_tm(self, pairs, *, desc: str):
        """min(TM_a, TM_b) per pair, in pair order."""
        import numpy as np

        columns = self.align(pairs, desc=desc)
        return np.minimum(columns["tm_a"], columns["tm_b"])


def resolve_engine(requested: str, foldseek: str | None) -> tuple[str, str | None]:
    """('builtin' | 'foldseek', binary): auto takes Foldseek when it is found, the built-in engine otherwise."""
    from rayfold.engines.foldseek import find_foldseek
    from rayfold.model.errors import InputError

    if requested not in ("auto", "builtin", "foldseek"):
        raise InputError("bad_engine", f"unknown engine {requested!r}: auto, builtin or foldseek")
    binary = find_foldseek(foldseek) if requested != "builtin" else None
    if requested == "foldseek" and binary is None:
        raise InputError("foldseek_not_found", "--engine foldseek: no foldseek binary on PATH or at --foldseek")
    return ("foldseek", binary) if binary else ("builtin", None)


def _unique_pairs(pairs):
    """Unordered pairs (i < j), unique and sorted: each alignment is done once."""
    import numpy as np

    pairs = np.sort(np.asarray(pairs, dtype=np.int64).reshape(-1, 2), axis=1)
    pairs = pairs[pairs[:, 0] != pairs[:, 1]]
    return np.unique(pairs, axis=0) if len(pairs) else pairs


def _candidate_pairs(fragments_ref, queries, targets, prefilter_config, *, progress: bool, desc: str,
                     chunk: int | None = None):
    """Prefilter candidates of `queries` against `targets` (indices), in tasks of `chunk` queries
    (default: about 4 tasks per CPU, 64 to 2,000 queries each)."""
    import numpy as np
    import ray

    queries = np.asarray(queries, dtype=np.int64)
    targets = np.asarray(targets, dtype=np.int64)
    if not len(queries) or not len(targets):
        return np.zeros((0, 2), np.int64)
    cpus = max(1, int(ray.cluster_resources().get("CPU", 1)))
    chunk = chunk or int(np.clip(-(-len(queries) // (4 * cpus)), 64, 2000))
    remote = _ray_remote(_search_chunk, runtime_env={"env_vars": WORKER_ENV})
    submissions = [
        (lambda s=s: remote.remote(fragments_ref, queries[s : s + chunk], targets, prefilter_config))
        for s in range(0, len(queries), chunk)
    ]
    parts = _run_tasks(submissions, desc=desc, progress=progress,
                       max_in_flight=max(8, int(ray.cluster_resources().get("CPU", 1))))
    return _unique_pairs(np.concatenate(parts))


FOLDSEEK_RESOURCE = "foldseek"  # custom resource of cluster.yaml's large node type


class _Engine:
    """Where first-pass clusters and audit candidates come from: Foldseek, or prefilter + TM-align."""

    def __init__(self, name: str, binary: str | None, fragments, fragments_ref, aligner, config,
                 prefilter_config, progress: bool) -> None:
        import ray

        self.name, self.binary = name, binary
        self.fragments, self.fragments_ref = fragments, fragments_ref
        self.aligner, self.config, self.prefilter_config, self.progress = aligner, config, prefilter_config, progress
        from rayfold.model.errors import InputError

        nodes = [n["Resources"] for n in ray.nodes() if n.get("Alive", True)]
        offering = [r for r in nodes if r.get(FOLDSEEK_RESOURCE, 0) >= 1]
        ask = config.foldseek_node == "always" or (config.foldseek_node == "auto" and bool(offering))
        # one task on one node: all CPUs of the node it will run on, never the cluster's total
        node_cpus = max((int(r.get("CPU", 0)) for r in (offering or ([] if ask else nodes))), default=0)
        self.threads = config.foldseek_threads or node_cpus
        if name == "foldseek" and not self.threads:
            raise InputError("foldseek_threads_needed", "no node offering the 'foldseek' resource is up yet: "
                             "set foldseek_threads to the CPUs of that node type")
        self.options: dict = {"num_cpus": self.threads}
        if ask:
            self.options["resources"] = {FOLDSEEK_RESOURCE: 1}

    def candidates(self, queries, targets, *, desc: str):
        """Unordered index pairs worth aligning between `queries` and `targets`."""
        import ray

        if self.name == "foldseek" and len(queries) and len(targets):
            task = _ray_remote(_foldseek_search_pairs, **self.options)
            return _unique_pairs(ray.get(task.remote(self.fragments_ref, queries, targets, self.binary, self.threads)))
        return _candidate_pairs(self.fragments_ref, queries, targets, self.prefilter_config,
                                progress=self.progress, desc=desc)

    def first_pass(self, members, rank):
        """(rep_of over `members` as global indices, first-pass alignment columns or None)."""
        import numpy as np
        import ray

        from rayfold.cluster import rules as algo

        members = np.asarray(members, dtype=np.int64)
        if not len(members):
            return members.copy(), None
        if self.name == "foldseek":
            task = _ray_remote(_foldseek_first_pass, **self.options)
            pairs = ray.get(task.remote(self.fragments_ref, members, self.binary, self.threads))
            index = self.fragments.index()
            rep_of = members.copy()
            position = {int(g): k for k, g in enumerate(members.tolist())}
            for rep_id, member_id in pairs:
                rep_of[position[index[member_id]]] = index[rep_id]
            return rep_of, None
        config = self.config
        pairs = self.candidates(members, members, desc="prefilter")
        # pairs that could be a first-pass edge (length ratio >= coverage) or merge evidence (>= merge threshold)
        pairs = algo.reachable(pairs, self.fragments.lengths, min(config.coverage, config.merge_threshold))
        columns = self.aligner.align(pairs, desc="first pass")
        reps, covered = algo.first_pass_edges(columns["i"], columns["j"], columns["tm_a"], columns["tm_b"],
                                              columns["cov_a"], columns["cov_b"], config)
        local = np.full(len(self.fragments), -1, np.int64)
        local[members] = np.arange(len(members))
        local_rep_of = algo.greedy_set_cover(len(members), local[reps], local[covered], rank[members])
        return members[local_rep_of], columns


def cluster_fragments(
    fragments,
    *,
    config=None,
    prefilter_config=None,
    foldseek: str | None = None,
    progress: bool = True,
    previous=None,
) -> dict:
    """First pass, representative audit and singleton audit on the Ray in scope; returns tables.

    With `previous` (a `cluster.PreviousClusters` of the last release) only new fragments are
    clustered: they first join existing first-pass clusters (TM-align-confirmed against their
    representatives), the rest are clustered among themselves, and the new representatives are
    audited against all representatives; earlier merges are kept, earlier alignments not redone.
    """
    import json

    import numpy as np
    import pyarrow as pa
    import ray

    from rayfold.align.prefilter import PrefilterConfig
    from rayfold.cluster import rules as algo
    from rayfold.cluster.cohesion import cohesion_pairs, summarise
    from rayfold.cluster.linkage import MERGED, link_clusters
    from rayfold.cluster.rules import ClusterConfig, PreviousClusters
    from rayfold.cluster.tables import cluster_tables
    from rayfold.engines.foldseek import foldseek_version
    from rayfold.model import schema
    from rayfold.model.unionfind import forest_from_edges

    config = config or ClusterConfig()
    prefilter_config = prefilter_config or PrefilterConfig()
    started = time.perf_counter()
    name, binary = resolve_engine(config.engine, foldseek)
    n = len(fragments)
    previous = previous or PreviousClusters.none(n)
    rank = algo.priority_order(fragments.mean_plddt, fragments.lengths, fragments.ids)
    fragments_ref = ray.put(fragments)
    aligner = _Aligner(fragments_ref, config, progress)
    engine = _Engine(name, binary, fragments, fragments_ref, aligner, config, prefilter_config, progress)
    rep_of = previous.rep_of.copy()
    old_reps = previous.representatives
    new = np.flatnonzero(~previous.clustered)
    member_evidence = []  # alignment columns whose cross-cluster pairs at min-TM >= 0.7 merge clusters

    # 1. new fragments join existing first-pass clusters
    assigned = {}
    if len(new) and len(old_reps):
        pairs = algo.reachable(_candidate_pairs(fragments_ref, new, old_reps, prefilter_config, progress=progress,
                                                desc="assign prefilter"),
                               fragments.lengths, min(config.coverage, config.merge_threshold))
        columns = aligner.align(pairs, desc="assign to existing")
        is_new_i = ~previous.clustered[columns["i"].astype(np.int64)]
        m = np.where(is_new_i, columns["i"], columns["j"]).astype(np.int64)
        r = np.where(is_new_i, columns["j"], columns["i"]).astype(np.int64)
        assigned = algo.assign_to_existing(
            m, r, np.where(is_new_i, columns["tm_b"], columns["tm_a"]),
            np.where(is_new_i, columns["cov_a"], columns["cov_b"]),
            np.where(is_new_i, columns["cov_b"], columns["cov_a"]), rank, config)
        for member, rep in assigned.items():
            rep_of[member] = rep
        member_evidence.append(columns)

    # 2. the rest are clustered among themselves
    rest = np.array([i for i in new.tolist() if i not in assigned], dtype=np.int64)
    rest_rep_of, first_pass = engine.first_pass(rest, rank)
    rep_of[rest] = rest_rep_of
    if first_pass is not None:
        member_evidence.append(first_pass)
    first_reps = np.unique(rep_of)
    new_reps = np.unique(rest_rep_of)

    # 3. representative audit: new representatives against all representatives
    rep_pairs = algo.reachable(engine.candidates(new_reps, first_reps, desc="audit prefilter"),
                               fragments.lengths, config.merge_threshold)
    audit = aligner.align(rep_pairs, desc="representative audit")
    evidence = algo.merge_evidence(audit, rep_of, config.merge_threshold, source="representatives")
    for columns in member_evidence:
        evidence = algo.concat_evidence(
            evidence, algo.merge_evidence(columns, rep_of, config.merge_threshold, source="members"))

    # 4. the linkage decides which evidence joins clusters; earlier releases' merges are evidence too
    known = _known_scores([audit, *member_evidence])
    before, tick = aligner.calls, time.perf_counter()
    kept = previous.merge_pairs
    new_rows = len(evidence["rep_a"])
    linked = link_clusters(
        rep_of,
        np.concatenate([evidence["rep_a"], kept[:, 0]]), np.concatenate([evidence["rep_b"], kept[:, 1]]),
        np.concatenate([np.minimum(evidence["tm_a"], evidence["tm_b"]), previous.merge_tm]),
        np.concatenate([evidence["source"], np.array(["representatives"] * len(kept), dtype=object)]),
        rank, linkage=config.linkage, guard=config.guard_threshold,
        score=lambda pairs: aligner.min_tm(pairs, desc="linkage guard"), known=known,
        previous_rep=previous.cluster_rep if len(old_reps) else None)
    cluster_rep = linked.cluster_rep
    evidence["decision"] = linked.decision[:new_rows]
    evidence["guard_tm"] = linked.guard_tm[:new_rows]
    guard_alignments, linkage_seconds = aligner.calls - before, time.perf_counter() - tick

    # 5. cohesion: a seeded sample of each cluster's members against its representative
    before = aligner.calls
    pairs = cohesion_pairs(cluster_rep, fragments.ids, config.cohesion_sample, config.seed)
    cohesion = summarise(pairs, _scores(pairs, known, aligner, desc="cohesion"), n)
    cohesion_alignments = aligner.calls - before

    # 6. singleton audit: candidates of newly sampled fragments against the sample (the same search
    # as the audit's; all pairs of 1,000 singletons would be ~500,000 alignments), confirmed by TM-align
    sampled = algo.sample_singletons(cluster_rep, config.singleton_sample, config.seed, fragments.ids)
    fresh = sampled[~previous.sampled[sampled]]
    singleton_pairs = algo.reachable(engine.candidates(fresh, sampled, desc="singleton prefilter"),
                                     fragments.lengths, config.singleton_threshold)
    singleton_columns = aligner.align(singleton_pairs, desc="singleton audit")
    ok = algo.accepted_merges(singleton_columns["tm_a"], singleton_columns["tm_b"], config.singleton_threshold)
    in_sample = np.zeros(n, bool)
    in_sample[sampled] = True
    old_links = previous.links[in_sample[previous.links[:, 0]] & in_sample[previous.links[:, 1]]]
    new_links = np.column_stack([singleton_columns["i"][ok], singleton_columns["j"][ok]]).astype(np.int64)
    links = np.concatenate([old_links, new_links])
    audit_result = algo.singleton_components(sampled, forest_from_edges(links[:, 0], links[:, 1]))

    tables = cluster_tables(fragments, rep_of, cluster_rep, evidence, audit_result, cohesion)
    ids = np.array(fragments.ids, dtype=object)
    links = _unique_pairs(links)
    tables["singleton_links"] = pa.Table.from_arrays(
        [pa.array(ids[links[:, 0]].tolist(), pa.string()), pa.array(ids[links[:, 1]].tolist(), pa.string())],
        schema=schema.SINGLETON_LINKS)
    old_cluster_ids = set(previous.cluster_rep[previous.cluster_rep >= 0].tolist())
    run_row = dict(
        engine=name,
        engine_version=foldseek_version(binary) if binary else f"rayfold {__import__('rayfold').__version__}",
        fragments=n,
        first_pass_clusters=int(len(first_reps)),
        clusters=int(len(np.unique(cluster_rep))),
        merges=int((evidence["decision"] == MERGED).sum()),
        alignments=aligner.calls,
        guard_alignments=guard_alignments,
        cohesion_alignments=cohesion_alignments,
        linkage_seconds=linkage_seconds,
        singleton_audit=audit_result.summary(),
        seconds=time.perf_counter() - started,
        config=json.dumps(asdict(config), sort_keys=True),
        new_fragments=int(len(new)),
        assigned_to_existing=len(assigned),
        new_clusters=int(len(set(np.unique(cluster_rep).tolist()) - old_cluster_ids)),
    )
    tables["cluster_runs"] = run_row
    return tables




def _known_scores(column_sets) -> dict:
    """pair_key -> min-TM of every alignment already done (the guard and cohesion reuse them)."""
    import numpy as np

    from rayfold.cluster.linkage import pair_key

    known = {}
    for columns in column_sets:
        for i, j, tm in zip(columns["i"].tolist(), columns["j"].tolist(),
                            np.minimum(columns["tm_a"], columns["tm_b"]).tolist()):
            known[pair_key(int(i), int(j))] = tm
    return known


def _scores(pairs, known: dict, aligner, *, desc: str):
    """min-TM per pair: from `known` where it was aligned already, else aligned now."""
    import numpy as np

    from rayfold.cluster.linkage import pair_key

    keys = [pair_key(int(a), int(b)) for a, b in pairs.tolist()]
    todo = sorted({k for k in keys if k not in known})
    fresh = dict(zip(todo, aligner.min_tm(np.array(todo, dtype=np.int64).reshape(-1, 2), desc=desc).tolist()))
    return np.array([known[k] if k in known else fresh[k] for k in keys], dtype=np.float64)


def load_fragments(uri: str, *, storage_options: dict | None = None):
    """FragmentSet of the passed fragments under `uri` (a fragments dataset, or a run folder holding one)."""
    from rayfold.io.storage import exists, read_parquet_dataset
    from rayfold.model.errors import InputError
    from rayfold.model.fragset import FragmentSet

    folder = join_uri(uri, "fragments") if exists(join_uri(uri, "fragments"), storage_options) else uri
    table = read_parquet_dataset(folder, storage_options)
    if table is None or table.num_rows == 0:
        raise InputError("no_fragments", f"no fragments table at {uri}")
    return FragmentSet.from_table(table, passed_only=True)


def run_cluster(
    fragments_uri: str,
    out: str,
    *,
    config=None,
    prefilter_config=None,
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

    from rayfold.io.runfolder import check_output_folder
    from rayfold.model import schema

    check_output_folder(out, storage_options)
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
