"""Releases equal a fresh run: the inputs arrive in random splits over 2 to 4 releases, one model is
replaced (new content under its name) and one withdrawn (`sync`) on the way, and the last release's
clustering tables equal those of one run over the final inputs, row for row."""

from __future__ import annotations

import gzip
import shutil
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pyarrow.compute as pc
import pytest

from conftest import EXAMPLES_AFDB
from rayfold.cluster.rules import ClusterConfig
from rayfold.config import RunConfig
from rayfold.io.storage import read_parquet_dataset
from rayfold.release.run import ReleaseConfig, run_release

pytestmark = pytest.mark.ray

CONFIG = ReleaseConfig(cluster=ClusterConfig(engine="builtin"))
MODELS = sorted(p for p in EXAMPLES_AFDB.iterdir() if p.name.endswith(".gz"))[::3]
REPLACED = next(p for p in MODELS if p.name.endswith(".pdb.gz"))  # cut in half below
WITHDRAWN = next(p for p in MODELS if p != REPLACED)
CLUSTERING = ("clusters", "members", "merges", "singleton_audit")


def table(out: Path, name: str):
    return read_parquet_dataset(str(out / name))


def replaced_bytes(model: Path) -> bytes:
    """The same entry with the second half of its atoms gone (a new version of the model)."""
    lines = gzip.decompress(model.read_bytes()).decode().splitlines()
    atoms = [i for i, line in enumerate(lines) if line.startswith("ATOM")]
    return gzip.compress("\n".join(lines[: atoms[len(atoms) // 2]] + ["END"]).encode())


def release(inputs: Path, out: Path, run: RunConfig = RunConfig()):
    return run_release([str(inputs)], str(out), config=CONFIG, run=run, progress=False, analytics=False, sync=True)


@pytest.fixture(scope="module")
def fresh(ray_local, tmp_path_factory) -> Path:
    """One run over the final inputs: every model but the withdrawn one, the replaced one's new bytes."""
    root = tmp_path_factory.mktemp("fresh")
    inputs, out = root / "inputs", root / "out"
    inputs.mkdir()
    for p in MODELS:
        if p != WITHDRAWN:
            shutil.copy2(p, inputs / p.name)
    (inputs / REPLACED.name).write_bytes(replaced_bytes(REPLACED))
    release(inputs, out)
    return out


def in_releases(releases: int, root: Path, run: RunConfig = RunConfig(),
                before_last: Callable[[Path], None] = lambda out: None) -> tuple[list, Path]:
    """The models in a seeded random split over `releases` releases: the replaced and withdrawn
    ones in the first, replaced and withdrawn before the last (`before_last(out)` runs then)."""
    rng = np.random.default_rng(releases)
    others = [p for p in MODELS if p not in (REPLACED, WITHDRAWN)]
    rest = [others[k] for k in rng.permutation(len(others))]
    cuts = sorted(rng.choice(np.arange(1, len(rest)), size=releases - 1, replace=False).tolist())
    batches = [list(b) for b in np.split(np.array(rest, dtype=object), cuts)]
    batches[0] = [REPLACED, WITHDRAWN, *batches[0]]
    inputs, out = root / "inputs", root / "out"
    inputs.mkdir()
    summaries = []
    for k, batch in enumerate(batches):
        for p in batch:
            shutil.copy2(p, inputs / p.name)
        if k == releases - 1:
            before_last(out)
            (inputs / REPLACED.name).write_bytes(replaced_bytes(REPLACED))
            (inputs / WITHDRAWN.name).unlink()
        summaries.append(release(inputs, out, run))
    assert [s.release for s in summaries] == list(range(1, releases + 1))
    assert (summaries[-1].changed_inputs, summaries[-1].withdrawn_inputs) == (1, 1)
    return summaries, out


@pytest.mark.parametrize("releases", [2, 4])
def test_any_split_into_releases_gives_the_fresh_tables(fresh, tmp_path, releases):
    summaries, out = in_releases(releases, tmp_path)
    for name in CLUSTERING:
        assert table(out, name).equals(table(fresh, name)), name
    passed = table(out, "fragments").filter(pc.field("passed")).column("fragment_id").to_pylist()
    assert sorted(passed) == sorted(table(fresh, "fragments").filter(pc.field("passed")).column("fragment_id")
                                    .to_pylist())
    assert not any(uri.endswith(WITHDRAWN.name)
                   for uri in table(out, "fragments").column("source_uri").to_pylist())
    # every alignment is stored once: no release aligned a pair (same contents, same orientation) again
    stored = table(out, "alignments")
    assert stored.num_rows == sum(s.alignments for s in summaries)
    keys = stored.select(["fragment_a", "fragment_b", "digest_a", "digest_b"]).to_pylist()
    assert len({tuple(k.values()) for k in keys}) == len(keys)


def test_a_compacted_alignments_part_holds_the_current_rows_only(fresh, tmp_path):
    """The fourth release would read three parts: it writes one part of every current alignment
    instead. The withdrawn model's rows are gone (a replaced model's old rows go the same way, by
    their digests: tests/cluster/test_memo.py), no pair is aligned twice, the parts it replaced are
    removed, and the tables are still the fresh run's."""
    before: dict = {}

    def look(out: Path) -> None:  # the stored rows before the release that compacts
        before["stored"] = table(out, "alignments")
        fragments = table(out, "fragments").filter(pc.field("passed"))
        before["withdrawn"] = set(fragments.filter(pc.ends_with(fragments.column("source_uri"), WITHDRAWN.name))
                                  .column("fragment_id").to_pylist())

    summaries, out = in_releases(4, tmp_path, RunConfig(compact_alignments_after=3), before_last=look)
    for name in CLUSTERING:
        assert table(out, name).equals(table(fresh, name)), name
    assert sorted(p.name for p in (out / "alignments").iterdir()) == ["part-000004-all.parquet"]
    stored, last = table(out, "alignments"), summaries[-1]
    assert stored.num_rows == last.reused_alignments + last.alignments
    keys = stored.select(["fragment_a", "fragment_b", "digest_a", "digest_b"]).to_pylist()
    assert len({tuple(k.values()) for k in keys}) == len(keys)

    def ends(rows) -> set:
        return set(rows.column("fragment_a").to_pylist()) | set(rows.column("fragment_b").to_pylist())

    assert ends(before["stored"]) & before["withdrawn"], "the withdrawn model had no alignments: proves nothing"
    assert not ends(stored) & before["withdrawn"]
