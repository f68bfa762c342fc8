"""Seconds and TM-align calls per step of one clustering: where a run's (or a release's) cost went,
kept in `cluster_runs.steps` so nobody has to guess it from progress bars."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Protocol


class Counted(Protocol):
    calls: int  # TM-align calls so far (an Aligner)


class Steps:
    """`with steps("audit"): ...` adds the block's wall time and the aligner's new calls to "audit";
    a step entered twice adds up. Steps keep the order they first ran in."""

    def __init__(self, aligner: Counted) -> None:
        self.aligner = aligner
        self.record: dict[str, dict[str, float | int]] = {}

    @contextmanager
    def __call__(self, name: str) -> Iterator[None]:
        tick, before = time.perf_counter(), self.aligner.calls
        try:
            yield
        finally:
            step = self.record.setdefault(name, {"seconds": 0.0, "alignments": 0})
            step["seconds"] = float(step["seconds"]) + time.perf_counter() - tick
            step["alignments"] = int(step["alignments"]) + self.aligner.calls - before

    def to_json(self) -> str:
        return json.dumps({name: {"seconds": round(float(s["seconds"]), 3), "alignments": int(s["alignments"])}
                           for name, s in self.record.items()})
