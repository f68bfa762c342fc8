"""Fragmenting on Ray: work units streamed through an actor pool of `FragmentStage`s.

The driver lists inputs and groups them into work units (deterministic part names, so a re-run
skips units already written); Ray Data streams the units through the pool; each actor writes its
unit's Parquet parts straight to the output (local or s3://) and returns a one-row summary, so the
driver's memory does not grow with the data.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass

from rayfold.config import FragmentConfig, ReadConfig, RunConfig
from rayfold.fragment.stage import FragmentStage
from rayfold.io.storage import InputRef, join_uri, list_files, list_inputs, write_bytes, write_parquet
from rayfold.runtime.session import WORKER_ENV, quiet_ray_data, ray_session


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
                 export_structures: bool, release: int | None = None, entry_filter=None) -> None:
        self.out = out
        self.storage_options = storage_options
        self.release = release
        self.entry_filter = entry_filter
        self.stage = FragmentStage(config, read, storage_options=storage_options, export_structures=export_structures)

    def __call__(self, batch: dict) -> dict:
        keys = ("unit_id", "structures", "fragments", "passed", "errors", "seconds")
        summary: dict[str, list] = {k: [] for k in keys}
        for unit_id, refs_json in zip(batch["unit_id"], batch["refs"]):
            started = time.perf_counter()
            items = json.loads(refs_json)
            sources = {r["uri"]: r.pop("source", "") for r in items}
            result = self.stage.process([InputRef(**r) for r in items])
            if self.entry_filter is not None:
                result = _filter_entries(result, self.entry_filter)
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
         "release": release, "structures": s.structures, "fragments": s.fragments, "errors": s.errors,
         "withdrawn": False}
        for s in result.inputs
    ]
    return pa.Table.from_pylist(rows, schema=schema.MANIFEST)


def _filter_entries(result, entry_filter):
    """The unit's fragments and chains of entries the input filter keeps (errors stay, all of them)."""
    import pyarrow as pa

    def kept(table):
        mask = [entry_filter.keeps(e, a)
                for e, a in zip(table.column("entry_id").to_pylist(), table.column("accession").to_pylist())]
        return table.filter(pa.array(mask, type=pa.bool_()))

    result.fragments = kept(result.fragments)
    result.chains = kept(result.chains)
    kept_ids = set(result.fragments.column("fragment_id").to_pylist())
    result.structures = {k: v for k, v in result.structures.items() if k in kept_ids}
    return result


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
    entry_filter=None,
) -> dict[str, int]:
    """Stream work units through an actor pool on the Ray in scope; returns totals over the units."""
    import ray
    from tqdm.auto import tqdm

    totals = {"structures": 0, "fragments": 0, "passed": 0, "errors": 0}
    if not units:
        return totals
    quiet_ray_data()
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
            "entry_filter": entry_filter,
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
    from rayfold.io.runfolder import RunFolder

    RunFolder(out, storage_options).check_writable()
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
