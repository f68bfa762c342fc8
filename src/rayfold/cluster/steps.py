"""Seconds and TM-align calls per step of one clustering: where a run's (or a release's) cost went,
kept in `cluster_runs.steps` so nobody has to guess it from progress bars."""

from __future__ import annotations

import gc
import json
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Protocol


class Counted(Protocol):
    calls: int  # TM-align calls so far (an Aligner)


@dataclass
class Step:
    seconds: float = 0.0
    alignments: int = 0


class Steps:
    """`with steps("audit"): ...` adds the block's wall time and the aligner's new calls to "audit";
    a step entered twice adds up. Steps keep the order they first ran in. A step's garbage is
    collected as it ends: NumPy arrays are not what starts Python's cycle collector, so arrays held
    by a cycle (a closure, a generator) could otherwise outlive their step by several."""

    def __init__(self, aligner: Counted) -> None:
        self.aligner = aligner
        self.record: dict[str, Step] = {}

    @contextmanager
    def __call__(self, name: str) -> Iterator[None]:
        tick, before = time.perf_counter(), self.aligner.calls
        try:
            yield
        finally:
            step = self.record.setdefault(name, Step())
            step.seconds += time.perf_counter() - tick
            step.alignments += self.aligner.calls - before
            gc.collect()

    def to_json(self) -> str:
        return json.dumps({name: {"seconds": round(s.seconds, 3), "alignments": s.alignments}
                           for name, s in self.record.items()})
