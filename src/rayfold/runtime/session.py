"""Ray sessions and batched tasks: the only place rayfold starts, joins or schedules on Ray."""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Callable, Iterator, Sequence
from functools import partial
from typing import Any

from rayfold.runtime.heap import keep_heap_small, release_freed

log = logging.getLogger(__name__)

# One BLAS thread per worker: several threads per process on a busy machine made splits 3-5x slower.
WORKER_ENV = {"OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}


@contextlib.contextmanager
def ray_session(address: str | None = None, **init_kwargs) -> Iterator[None]:
    """Use the running Ray, connect to `address` (or $RAY_ADDRESS, set inside `ray job submit`), or
    start a private local instance (and stop it after). Never `ray.init()` bare: it silently attaches
    to whatever cluster /tmp/ray last recorded."""
    import ray

    address = address or os.environ.get("RAY_ADDRESS")
    keep_heap_small()  # this process is the driver: it waits on tasks for hours
    if ray.is_initialized():
        yield
        return
    init_kwargs.setdefault("log_to_driver", not _QUIET["on"])
    if address:
        ray.init(address=address, logging_level=_ray_log_level(), **init_kwargs)
    else:
        start_local_ray(**init_kwargs)
    try:
        yield
    finally:
        ray.shutdown()


LOCAL_START_TRIES = 2
_QUIET = {"on": False}


def quiet() -> None:
    """Show rayfold's own lines and progress bars only: Ray's internal warnings and its workers' log
    lines stay in Ray's session logs (the CLI calls this unless -v)."""
    _QUIET["on"] = True
    logging.getLogger("ray").setLevel(logging.ERROR)
    os.environ.setdefault("RAY_DATA_LOG_LEVEL", "ERROR")  # Ray Data sets its loggers' levels from this


def quiet_ray_data() -> None:
    """No progress bars or execution banner from Ray Data in this process: rayfold shows its own."""
    import ray.data

    ctx = ray.data.DataContext.get_current()
    ctx.enable_progress_bars = False
    ctx.print_on_execution_start = False


def _ray_log_level() -> int:
    """WARNING, or what the caller set on the "ray" logger if quieter (`quiet`)."""
    return max(logging.WARNING, logging.getLogger("ray").level)


def start_local_ray(**init_kwargs) -> None:
    """A private local Ray; on a busy machine its agent can miss the start-up deadline: wait longer, try again."""
    import ray

    from rayfold.model.errors import InputError

    # A token left in ~/.ray by another cluster must not stop a private local instance.
    os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    os.environ.setdefault("RAY_agent_register_timeout_ms", "120000")  # Ray's default (30 s) fails under load
    init_kwargs.setdefault("include_dashboard", False)
    for attempt in range(1, LOCAL_START_TRIES + 1):
        try:
            ray.init(address="local", logging_level=_ray_log_level(), **init_kwargs)
            return
        except Exception as exc:  # Ray raises plain Exception/RuntimeError for start-up failures
            ray.shutdown()
            if attempt == LOCAL_START_TRIES:
                first_line = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
                raise InputError("ray_start_failed", f"could not start a local Ray after {attempt} tries: "
                                 f"{first_line}") from None
            log.warning("local Ray did not start (%s); trying again", str(exc).splitlines()[0] if str(exc) else exc)


def ray_remote(fn: Callable, **options: Any) -> Any:
    """`fn` as a Ray remote function with `options` (declared once per call site, not per call)."""
    import ray

    return ray.remote(**options)(fn) if options else ray.remote(fn)


class Submissions(Sequence):
    """`submit(k)` for k < `count` as thunks made when asked (`iter_tasks` takes them in order): a
    list of thousands of bound callables is never held while the tasks run."""

    def __init__(self, count: int, submit: Callable[[int], Any]) -> None:
        self.n, self.submit = count, submit

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, k: Any) -> Any:
        if not 0 <= k < self.n:
            raise IndexError(k)
        return partial(self.submit, k)


def iter_tasks(submissions: Sequence[Callable[[], Any]], *, desc: str, progress: bool,
               max_in_flight: int, max_ahead: int | None = None) -> Iterator[tuple[int, Any]]:
    """(submission index, result) of (callable -> ObjectRef) thunks as they finish, with bounded
    in-flight tasks: a caller that folds results holds one at a time, never all of them.

    `max_ahead`: no submission more than this many places after the oldest unfinished one. A caller
    that puts results back in submission order then holds fewer than `max_ahead` finished results
    while it waits for a straggler (without it, everything after the straggler could pile up)."""
    import ray
    from tqdm.auto import tqdm

    submissions = submissions if isinstance(submissions, Sequence) else list(submissions)
    pending: dict = {}
    bar = tqdm(total=len(submissions), desc=desc, unit="task", disable=not progress)
    next_index = 0

    def may_submit() -> bool:
        if next_index >= len(submissions) or len(pending) >= max_in_flight:
            return False
        return max_ahead is None or not pending or next_index - min(pending.values()) < max_ahead

    try:
        while next_index < len(submissions) or pending:
            while may_submit():
                pending[submissions[next_index]()] = next_index
                next_index += 1
            done, _ = ray.wait(list(pending), num_returns=1)
            for ref in done:
                index = pending.pop(ref)
                result = ray.get(ref)
                bar.update(1)
                release_freed()  # the freed results' and temporaries' pages, not kept by the heap
                yield index, result
    finally:
        bar.close()
