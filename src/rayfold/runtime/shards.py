"""Fragments spread over the object store in shards; the driver keeps only ids, lengths and mean pLDDT.

A shard is a `FragmentSet` of up to `shard_size` fragments (coordinates, sequences, 3Di), cut by a
task from tables that reading tasks made of the fragments table's part files (column projection,
the selected rows only, each file read once), so no coordinates ever pass through the driver.
Fragment g (global index: rank of its id) lives in shard g // shard_size at row g % shard_size (both
computed, not held per fragment); a shard's rows are in global order.

Work over pairs is blocked by shard pair: a TM-align task gets the two shards its pairs touch, a
search task one query shard and one target shard. No task holds more than two shards.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from rayfold.cluster.rules import is_sorted
from rayfold.model.fragset import FragmentIndex, FragmentSet

SHARD_COLUMNS = ("fragment_id", "sequence", "states_3di", "ca_coords", "mean_plddt")
CATALOGUE_COLUMNS = ("fragment_id", "n_residues", "mean_plddt")


@dataclass(frozen=True)
class BlockPlan:
    """Blocks of a pair list (`ShardedFragments.blocks`) as arrays: block k is rows
    rows[bounds[k]:bounds[k + 1]] of shards (shard_a[k], shard_b[k]). ~16 B a block where a tuple,
    its ints and a view of its rows took ~250 B (a k-mer try at 10^5 fragments has thousands)."""

    shard_a: np.ndarray  # int32
    shard_b: np.ndarray  # int32
    bounds: np.ndarray  # int64, one more than there are blocks
    rows: np.ndarray  # every row once, in block order

    def __len__(self) -> int:
        return len(self.shard_a)

    def __getitem__(self, k: int) -> tuple[int, int, np.ndarray]:
        return int(self.shard_a[k]), int(self.shard_b[k]), self.rows[self.bounds[k]:self.bounds[k + 1]]


@dataclass
class ShardedFragments:
    index: FragmentIndex  # ids, lengths, mean pLDDT: all the driver holds per fragment
    shard_size: int  # shard s holds global indices [s * shard_size, (s + 1) * shard_size)
    refs: list  # ObjectRef of each shard's FragmentSet

    def __len__(self) -> int:
        return len(self.index)

    def shard_of(self, g: np.ndarray) -> np.ndarray:
        """The shard of each global index (int32): computed, never held per fragment."""
        return (np.asarray(g) // self.shard_size).astype(np.int32)

    def position(self, g: np.ndarray) -> np.ndarray:
        """Each global index's row in its shard (int32)."""
        return (np.asarray(g) % self.shard_size).astype(np.int32)

    def by_shard(self, g: np.ndarray) -> list[np.ndarray]:
        """Sorted global indices `g` split by shard (one view per shard, empty where none): one
        binary search per shard, not a pass over `g` per shard."""
        cuts = np.searchsorted(g, np.arange(self.n_shards + 1, dtype=np.int64) * self.shard_size)
        return [g[a:b] for a, b in zip(cuts[:-1].tolist(), cuts[1:].tolist())]

    def in_shard(self, s: int) -> np.ndarray:
        """The global indices shard `s` holds, in its row order."""
        return np.arange(s * self.shard_size, min(len(self), (s + 1) * self.shard_size), dtype=np.int64)

    @property
    def n_shards(self) -> int:
        return len(self.refs)

    def blocks(self, a: np.ndarray, b: np.ndarray, limit: int,
               cost: Callable[[np.ndarray], np.ndarray] | None = None,
               cost_limit: float = float("inf")) -> Iterator[tuple[int, int, np.ndarray]]:
        """(shard of a, shard of b, rows) runs of at most `limit` rows that touch two shards at most.
        With `cost` (the cost of the given rows, asked a run at a time: no array of every row's), a
        run also ends once its cost reaches `cost_limit`, so a task of long chains gets few pairs.
        Rows come in the same order whatever the limits: only the cuts move."""
        for shard_a, shard_b, run in self._runs(np.asarray(a), np.asarray(b)):
            if cost is not None and np.isfinite(cost_limit):
                costs = cost(run)
                spent = np.cumsum(costs) - costs  # cost of the rows before each row
                bins = np.floor(spent / max(cost_limit, 1e-12)).astype(np.int64)
                parts = np.flatnonzero(np.r_[True, bins[1:] != bins[:-1], True])
            else:
                parts = np.array([0, len(run)])
            for p, q in zip(parts[:-1].tolist(), parts[1:].tolist()):
                for s in range(p, q, limit):
                    yield shard_a, shard_b, run[s:min(q, s + limit)]

    def block_plan(self, a: np.ndarray, b: np.ndarray, limit: int,
                   cost: Callable[[np.ndarray], np.ndarray] | None = None,
                   cost_limit: float = float("inf")) -> BlockPlan:
        """`blocks` as arrays (`BlockPlan`): what a driver keeps of them while their tasks run."""
        rows = np.empty(len(a), np.int32 if len(a) < 2**31 else np.int64)
        shard_a: list[int] = []
        shard_b: list[int] = []
        bounds = [0]
        for sa, sb, run in self.blocks(a, b, limit, cost, cost_limit):
            rows[bounds[-1]:bounds[-1] + len(run)] = run
            shard_a.append(sa)
            shard_b.append(sb)
            bounds.append(bounds[-1] + len(run))
        return BlockPlan(np.array(shard_a, np.int32), np.array(shard_b, np.int32), np.array(bounds, np.int64), rows)

    def _runs(self, a: np.ndarray, b: np.ndarray) -> Iterator[tuple[int, int, np.ndarray]]:
        """(shard of a, shard of b, rows) of each shard pair, in the order of a stable sort by
        (shard of a, shard of b). Where `a` is in order (a k-mer try's members, a search's distinct
        pairs) the rows of one shard of `a` are sorted at a time: the sort's keys and its int64
        order cost one shard's rows, not ~16 B a pair of the whole list."""
        if not len(a):
            return
        rows = np.int32 if len(a) < 2**31 else np.int64  # the rows' dtype: 4 B a pair held while they fit
        if not is_sorted(a):
            yield from self._runs_sorted(a, b, 0, rows)
            return
        cuts = np.searchsorted(a, np.arange(self.n_shards + 1, dtype=np.int64) * self.shard_size)
        cuts[-1] = len(a)
        for lo, hi in zip(cuts[:-1].tolist(), cuts[1:].tolist()):
            if hi > lo:
                yield from self._runs_sorted(a[lo:hi], b[lo:hi], lo, rows)

    def _runs_sorted(self, a: np.ndarray, b: np.ndarray, first: int,
                     rows: type) -> Iterator[tuple[int, int, np.ndarray]]:
        """`_runs` of rows first, first + 1, ... by one stable sort of their shard-pair keys."""
        width = max(1, self.n_shards)
        # one key per row, int32 while the shard pairs fit (46,340 shards: 190 M fragments)
        dtype = np.int32 if width * width < 2**31 else np.int64
        key = np.asarray(a // self.shard_size, dtype)  # a copy only where `a` is not `dtype`
        np.multiply(key, width, out=key)  # in place: the key stays `dtype`
        np.add(key, b // self.shard_size, out=key, casting="unsafe")
        order = np.argsort(key, kind="stable")
        in_order = key[order]
        order = np.add(order, first, out=order).astype(rows)
        cuts = np.flatnonzero(np.r_[True, in_order[1:] != in_order[:-1], True])
        pair_of_run = in_order[cuts[:-1]].tolist()
        del key, in_order
        for (lo, hi), pair in zip(zip(cuts[:-1].tolist(), cuts[1:].tolist()), pair_of_run):
            shard_a, shard_b = divmod(int(pair), width)
            yield shard_a, shard_b, order[lo:hi]


def shard_in_memory(fragments: FragmentSet, shard_size: int) -> ShardedFragments:
    """Shards of a set the caller already holds (tests, benches, small runs)."""
    import ray

    n = len(fragments)
    starts = list(range(0, n, shard_size)) or [0]
    refs = [ray.put(fragments.subset(range(s, min(n, s + shard_size)))) for s in starts]
    return ShardedFragments(FragmentIndex(fragments.ids, fragments.lengths, fragments.mean_plddt), shard_size, refs)


def _read_group(parts: Sequence[str], rows: list, storage_options: dict | None, group: int) -> pa.Table:
    """The selected rows of some part files, each file read once, sorted by fragment id (a Ray task):
    a shard's rows from this group are then one contiguous slice of it. `rows`: every group's."""
    from rayfold.io.storage import read_parquet_part

    rows = rows[group]
    tables = [read_parquet_part(p, storage_options, columns=SHARD_COLUMNS).take(pa.array(r))
              for p, r in zip(parts, rows)]
    return pa.concat_tables(tables, promote_options="default").sort_by("fragment_id")


def _cut_shard(slices: Sequence[tuple[int, int]], *groups: pa.Table) -> FragmentSet:
    """One shard from slices of the groups' tables (a Ray task; the tables are read from the object
    store without a copy, so a slice costs its own rows, not its group's)."""
    tables = [g.slice(lo, hi - lo) for g, (lo, hi) in zip(groups, slices)]
    table = pa.concat_tables(tables, promote_options="default") if tables else None
    if table is None or table.num_rows == 0:
        return FragmentSet.from_arrays([], [], [], np.zeros(0), [])
    return FragmentSet.from_table(table, passed_only=False)


def read_groups(part: np.ndarray, rows_per_group: int) -> list[np.ndarray]:
    """The part files (indices) each reading task takes, given each fragment's part in global index
    order: parts in the order of their first fragment, a group closing at the part that takes the
    running row count past a multiple of `rows_per_group`. Fragments of one input release sit
    together in id order, so a shard touches one or two groups; a part whose ids spread over the
    whole id range (a proteome's tar) is read once all the same."""
    present, first, counts = np.unique(part, return_index=True, return_counts=True)
    by_first = np.argsort(first, kind="stable")
    present, counts = present[by_first], counts[by_first]
    closes = np.flatnonzero(np.diff(np.cumsum(counts) // max(1, rows_per_group), prepend=0) > 0)
    return [g for g in np.split(present, closes + 1) if len(g)]


@dataclass
class ShardPlan:
    """Where each shard's rows come from: the catalogue's rows in global (id) order, the part files
    each reading task takes, the rows it reads of each, and the slices of the reading tasks' tables
    each shard is cut from."""

    index: pa.Table  # fragment_id, n_residues (int32), mean_plddt (float32): one chunk each, id order
    groups: list[list[int]]  # the parts (indices) each reading task reads
    rows: list[list[np.ndarray]]  # per group, per part of it: the rows (int32) it reads
    slices: list[list[tuple[int, int, int]]]  # per shard: (group, first row, end) of the group's sorted table


def plan_shards(catalogue: pa.Table, n_parts: int, shard_size: int) -> ShardPlan:
    """The shards of the catalogue's rows, by id order: `catalogue` has fragment_id, n_residues,
    mean_plddt, and `part` / `row` (which row of which of the `n_parts` part files holds the
    fragment); ids unique. Pure: `load_fragments` runs it in a task, where the catalogue is."""
    # Arrow sorts strings by their UTF-8 bytes: the order of Python's str comparison, without a
    # Python object per id (ids are unique, so the sort's stability does not matter). Each column
    # is taken in that order on its own, never a sorted copy of the whole catalogue at once.
    order = pc.sort_indices(catalogue.column("fragment_id"))
    n = catalogue.num_rows

    def sorted_column(name: str, dtype: type) -> np.ndarray:
        return pc.take(catalogue.column(name), order).to_numpy().astype(dtype)

    part, row = sorted_column("part", np.int64), sorted_column("row", np.int32)
    # shard s holds global indices [s * shard_size, (s + 1) * shard_size): the layout depends on the
    # ids alone, never on how inputs were grouped into part files (so neither do search results)
    groups = read_groups(part, shard_size)
    group_of = np.zeros(n_parts, np.int64)
    for k, members in enumerate(groups):
        group_of[members] = k
    # each part's fragments in global order, one contiguous run of `by_part` per part
    by_part = np.argsort(part, kind="stable")
    part_start = np.searchsorted(part[by_part], np.arange(n_parts + 1))
    rows, in_group = [], []
    for members in groups:
        runs = [by_part[part_start[p]:part_start[p + 1]] for p in members.tolist()]
        rows.append([row[r] for r in runs])
        in_group.append(np.sort(np.concatenate(runs)))  # the group's fragments in id order: its table's rows
    slices = []
    for start in range(0, n, shard_size):
        touched = np.unique(group_of[part[start:start + shard_size]]).tolist()
        slices.append([(k, *np.searchsorted(in_group[k], [start, start + shard_size]).tolist()) for k in touched])
    index = pa.table({"fragment_id": pc.take(catalogue.column("fragment_id"), order).combine_chunks(),
                      "n_residues": sorted_column("n_residues", np.int32),
                      "mean_plddt": sorted_column("mean_plddt", np.float32)})
    return ShardPlan(index, [g.tolist() for g in groups], rows, slices)


def _planned_in_task(parts: Sequence[str], storage_options: dict | None,
                     shard_size: int) -> tuple[tuple[pa.Table, list, list], list]:
    """The catalogue read and planned in a task (two returns: the driver reads the first, the
    reading tasks the second)."""
    plan = plan_shards(fragment_catalogue(parts, storage_options), len(parts), shard_size)
    return (plan.index, plan.groups, plan.slices), plan.rows


def _sharded(parts: Sequence[str], index: pa.Table, groups: list[list[int]], rows: Any,
             slices: list[list[tuple[int, int, int]]], storage_options: dict | None,
             shard_size: int) -> ShardedFragments:
    """Submit the reading and cutting tasks of a plan. `rows`: the plan's rows, or a reference to
    them (each reading task then takes its group's)."""
    import ray

    from rayfold.runtime.session import WORKER_ENV, ray_remote

    read = ray_remote(_read_group, runtime_env={"env_vars": WORKER_ENV})
    cut = ray_remote(_cut_shard, runtime_env={"env_vars": WORKER_ENV})
    rows = ray.put(rows) if isinstance(rows, list) else rows  # stored once, not once per reading task
    tables = [read.remote([parts[p] for p in members], rows, storage_options, k) for k, members in enumerate(groups)]
    refs = [cut.remote([(lo, hi) for _, lo, hi in shard], *[tables[k] for k, _, _ in shard]) for shard in slices]
    lengths, mean_plddt = (column_values(index, c) for c in ("n_residues", "mean_plddt"))
    ids = index.column("fragment_id")
    # the ids stay one Arrow array (`IdColumn`): ~30 B an id, where Python strings take ~85
    return ShardedFragments(FragmentIndex(ids.chunk(0) if ids.num_chunks == 1 else ids, lengths, mean_plddt),
                            shard_size, refs)


def column_values(table: pa.Table, name: str) -> np.ndarray:
    """A column of primitive values as NumPy: a read-only view of its buffer where it is one chunk."""
    values = table.column(name)
    return values.chunk(0).to_numpy() if values.num_chunks == 1 else values.to_numpy()


def load_sharded(parts: Sequence[str], catalogue: pa.Table, *, storage_options: dict | None = None,
                 shard_size: int = 4096) -> ShardedFragments:
    """Shards of the catalogue's rows (see `plan_shards`), planned here.

    Two kinds of task, so that every part file is read once whatever its ids: reading tasks take
    groups of parts (`read_groups`) and give their rows sorted by id; a shard task cuts its rows out
    of the groups it overlaps (one contiguous slice of each). Both results are task returns, owned
    by the driver, which never holds their rows."""
    plan = plan_shards(catalogue, len(parts), shard_size)
    return _sharded(parts, plan.index, plan.groups, plan.rows, plan.slices, storage_options, shard_size)


def load_planned(parts: Sequence[str], *, storage_options: dict | None = None,
                 shard_size: int = 4096) -> ShardedFragments | None:
    """`load_sharded` of the passed fragments of `parts`, the catalogue read and planned in a task:
    the driver receives the ids, lengths and mean pLDDT in id order (in the object store), never
    the catalogue, its sort or the rows each part file gives (~110 B a fragment at 10^5). None
    where no fragment passed."""
    import ray

    from rayfold.runtime.session import WORKER_ENV, ray_remote

    plan = ray_remote(_planned_in_task, num_returns=2, runtime_env={"env_vars": WORKER_ENV})
    head, rows = plan.remote(list(parts), storage_options, shard_size)
    index, groups, slices = ray.get(head)
    if index.num_rows == 0:
        return None
    return _sharded(parts, index, groups, rows, slices, storage_options, shard_size)


CATALOGUE_THREADS = 16  # part files read at once for the catalogue (object-store GETs wait on the network)


def fragment_catalogue(parts: Sequence[str], storage_options: dict | None = None, *,
                       columns: Sequence[str] = CATALOGUE_COLUMNS, passed_only: bool = True) -> pa.Table:
    """The light columns of every (passed) row of `parts`, with `part` and `row` to find it again.
    Parts are read by a pool of threads, in order: a run has a part per 16 input files, and one
    object-store GET after another would make the driver wait minutes at 10^5 fragments."""
    from concurrent.futures import ThreadPoolExecutor

    from rayfold.io.storage import read_parquet_part

    wanted = list(dict.fromkeys([*columns, "passed"] if passed_only else columns))

    def read(p: int) -> pa.Table:
        table = read_parquet_part(parts[p], storage_options, columns=wanted)
        table = table.append_column("part", pa.array(np.full(table.num_rows, p, np.int32)))
        table = table.append_column("row", pa.array(np.arange(table.num_rows, dtype=np.int32)))
        if passed_only:
            table = table.filter(table.column("passed")).drop_columns(["passed"])
        return table

    with ThreadPoolExecutor(max_workers=min(CATALOGUE_THREADS, max(1, len(parts)))) as pool:
        tables = list(pool.map(read, range(len(parts))))
    if not tables:
        return pa.table({**{c: pa.array([], pa.string()) for c in columns},
                         "part": pa.array([], pa.int32()), "row": pa.array([], pa.int32())})
    return pa.concat_tables(tables, promote_options="default")


def gather(parts: Sequence[tuple[FragmentSet, np.ndarray]]) -> FragmentSet:
    """One set of the given rows of each set, in order (a task's working copy of what it needs)."""
    sets = [fs.subset(rows) for fs, rows in parts]
    states = ([x for s in sets for x in s.states_3di]  # type: ignore[union-attr]
              if all(s.states_3di is not None for s in sets) else None)
    return FragmentSet.from_arrays(
        [i for s in sets for i in s.ids], [c for s in sets for c in s.coords],
        [q for s in sets for q in s.sequences], np.concatenate([s.mean_plddt for s in sets] or [np.zeros(0)]),
        states)

