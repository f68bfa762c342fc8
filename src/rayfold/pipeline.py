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
from rayfold.io import InputRef, join_uri, list_files, list_inputs, write_bytes, write_parquet
from rayfold.stages import FragmentStage

log = logging.getLogger(__name__)

# One BLAS thread per worker: several threads per process on a busy machine made splits 3-5x slower.
WORKER_ENV = {"OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
FRAGMENT_TABLES = ("fragments", "chains", "errors")


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


def plan_units(refs: Sequence[InputRef], unit_size: int) -> list[WorkUnit]:
    """Group sorted inputs into units of `unit_size` files; a tar shard is a unit of its own."""
    units: list[WorkUnit] = []
    batch: list[InputRef] = []

    def close(group: list[InputRef]) -> None:
        key = "\n".join(f"{r.uri}\t{r.size}\t{r.mtime_or_etag}" for r in group)
        units.append(WorkUnit(hashlib.sha1(key.encode()).hexdigest()[:16], tuple(group)))

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
    """Ray Data actor: one `FragmentStage` per process, set up once."""

    def __init__(self, out: str, config: FragmentConfig, read: ReadConfig, storage_options: dict | None,
                 export_structures: bool) -> None:
        self.out = out
        self.storage_options = storage_options
        self.stage = FragmentStage(config, read, storage_options=storage_options, export_structures=export_structures)

    def __call__(self, batch: dict) -> dict:
        summary: dict[str, list] = {k: [] for k in ("unit_id", "structures", "fragments", "passed", "errors", "seconds")}
        for unit_id, refs_json in zip(batch["unit_id"], batch["refs"]):
            started = time.perf_counter()
            refs = [InputRef(**r) for r in json.loads(refs_json)]
            result = self.stage.process(refs)
            part = f"part-{unit_id}.parquet"
            for fragment_id, data in result.structures.items():
                write_bytes(data, join_uri(self.out, "structures", f"{fragment_id}.pdb"),
                            storage_options=self.storage_options)
            # fragments last: its part is the marker that the unit is complete
            write_parquet(result.errors, join_uri(self.out, "errors", part), storage_options=self.storage_options)
            write_parquet(result.chains, join_uri(self.out, "chains", part), storage_options=self.storage_options)
            write_parquet(result.fragments, join_uri(self.out, "fragments", part), storage_options=self.storage_options)
            summary["unit_id"].append(unit_id)
            summary["structures"].append(result.n_structures)
            summary["fragments"].append(result.fragments.num_rows)
            summary["passed"].append(int(sum(result.fragments.column("passed").to_pylist())))
            summary["errors"].append(result.errors.num_rows)
            summary["seconds"].append(time.perf_counter() - started)
        return summary


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
        # A token left in ~/.ray by another cluster must not stop a private local instance.
        os.environ.setdefault("RAY_AUTH_MODE", "disabled")
        init_kwargs.setdefault("include_dashboard", False)
        ray.init(address="local", logging_level=logging.WARNING, **init_kwargs)
    try:
        yield
    finally:
        ray.shutdown()


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
    import ray
    from tqdm.auto import tqdm

    started = time.perf_counter()
    refs = list_inputs(inputs, storage_options=storage_options)
    units = plan_units(refs, run.unit_size)
    done = {uri.rsplit("/", 1)[-1] for uri in list_files(join_uri(out, "fragments"), storage_options=storage_options)}
    todo = [u for u in units if u.part_name not in done]
    totals = dict(structures=0, fragments=0, passed=0, errors=0)
    if todo:
        with ray_session(address, **(ray_init_kwargs or {})):
            ctx = ray.data.DataContext.get_current()
            ctx.enable_progress_bars = False
            ctx.print_on_execution_start = False
            cpus = int(ray.cluster_resources().get("CPU", 1))
            workers = max(1, min(run.num_workers or cpus, len(todo)))
            items = [
                {"unit_id": u.unit_id, "refs": json.dumps([asdict(r) for r in u.refs])} for u in todo
            ]
            ds = ray.data.from_items(items, override_num_blocks=len(items)).map_batches(
                FragmentWorker,
                fn_constructor_kwargs=dict(
                    out=out, config=config, read=read, storage_options=storage_options,
                    export_structures=run.export_structures,
                ),
                batch_size=1,
                compute=ray.data.ActorPoolStrategy(min_size=1, max_size=workers),
                num_cpus=run.worker_num_cpus,
                runtime_env={"env_vars": WORKER_ENV},
            )
            bar = tqdm(total=len(todo), unit="unit", desc="fragmenting", disable=not progress)
            for row in ds.iter_rows():
                for key in totals:
                    totals[key] += int(row[key])
                bar.update(1)
                bar.set_postfix(fragments=totals["fragments"], errors=totals["errors"])
            bar.close()
    return FragmentSummary(
        out=out, inputs=len(refs), units=len(units), units_skipped=len(units) - len(todo),
        seconds=time.perf_counter() - started, **totals,
    )
