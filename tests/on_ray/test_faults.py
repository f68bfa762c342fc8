"""Faults and determinism on a real local Ray: killed actors and alignment workers, different worker
counts and unit sizes, and a planted secret that must appear in no output and no log."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from conftest import EXAMPLES_AFDB
from rayfold.cluster.rules import ClusterConfig
from rayfold.config import RunConfig
from rayfold.io.storage import read_parquet_dataset
from rayfold.release.run import ReleaseConfig, run_release

if TYPE_CHECKING:
    import psutil

pytestmark = pytest.mark.ray

MODELS = sorted(p for p in EXAMPLES_AFDB.iterdir() if p.name.endswith(".gz"))
CLUSTER_TABLES = ("clusters", "members", "merges", "singleton_audit", "singleton_links")
KEYS = {"fragments": ["fragment_id"], "chains": ["source_uri", "chain_id"], "errors": ["source_uri", "error_kind"],
        "manifest": ["input_uri"]}


def tables(out: Path) -> dict:
    found = {}
    for name in (*CLUSTER_TABLES, *KEYS):
        t = read_parquet_dataset(str(out / name))
        if name == "manifest":  # unit ids name the grouping, which is what the runs vary
            t = t.drop_columns(["unit_id"])
        found[name] = t.sort_by([(k, "ascending") for k in KEYS.get(name, [t.column_names[0]])])
    return found


def assert_same_tables(a: Path, b: Path) -> None:
    ta, tb = tables(a), tables(b)
    for name in ta:
        assert ta[name].num_rows == tb[name].num_rows, name
        assert ta[name].select(tb[name].column_names).equals(tb[name]), name


@pytest.fixture(scope="module")
def inputs(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("faults") / "inputs"
    folder.mkdir()
    for p in MODELS[:14]:
        shutil.copy2(p, folder / p.name)
    return folder


@pytest.fixture(scope="module")
def reference(ray_local, inputs, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("faults") / "reference"
    run_release([str(inputs)], str(out), config=ReleaseConfig(cluster=ClusterConfig(engine="builtin")),
                run=RunConfig(unit_size=4), progress=False, analytics=False)
    return out


def own_ray_workers() -> list[psutil.Process]:
    """Worker processes of the Ray instance this test process started (`ray_local`): the children
    of its own raylet, found from this process down. Never a search by name across the machine:
    other jobs' Ray workers there carry the same titles (ray::_align_block, ray::FragmentWorker)."""
    import psutil

    workers = []
    for p in psutil.Process().children(recursive=True):
        try:
            if p.name() == "raylet":
                workers.extend(p.children())
        except psutil.NoSuchProcess:
            continue
    return workers


class Killer(threading.Thread):
    """SIGKILLs the first worker of this test's own Ray instance whose title or command line
    contains each marker, once each."""

    def __init__(self, markers: list[str]) -> None:
        super().__init__(daemon=True)
        self.markers = markers
        self.killed: dict[str, int] = {}
        self.stop = threading.Event()

    def run(self) -> None:
        import psutil

        while not self.stop.is_set() and len(self.killed) < len(self.markers):
            for p in own_ray_workers():
                try:
                    text = p.name() + " " + " ".join(p.cmdline())
                except (psutil.NoSuchProcess, psutil.AccessDenied):
                    continue
                for marker in self.markers:
                    if marker not in self.killed and marker in text:
                        try:
                            p.kill()
                            self.killed[marker] = p.pid
                        except psutil.NoSuchProcess:
                            pass
            time.sleep(0.02)


def test_killed_actor_and_alignment_worker_change_nothing(ray_local, inputs, reference, tmp_path):
    killer = Killer(["FragmentWorker", "_align_block"])
    killer.start()
    out = tmp_path / "out"
    try:
        run_release([str(inputs)], str(out),
                    config=ReleaseConfig(cluster=ClusterConfig(engine="builtin", pairs_per_task=8)),
                    run=RunConfig(unit_size=4), progress=False, analytics=False)
    finally:
        killer.stop.set()
        killer.join()
    # an empty dict here means no own raylet was found (Ray attached to a cluster this test did not start)
    assert set(killer.killed) == {"FragmentWorker", "_align_block"}, killer.killed
    assert_same_tables(out, reference)


def test_same_tables_whatever_the_workers_units_and_batches(ray_local, inputs, reference, tmp_path):
    out = tmp_path / "out"
    config = ReleaseConfig(cluster=ClusterConfig(engine="builtin", pairs_per_task=5))
    run_release([str(inputs)], str(out), config=config, run=RunConfig(unit_size=1, num_workers=1), progress=False,
                analytics=False)
    assert_same_tables(out, reference)


def test_planted_secret_appears_nowhere(s3_server, tmp_path):
    """A run against S3 with a unique secret key: scan every object written and every log line."""
    secret = "rayfold-planted-" + os.urandom(12).hex()
    key_id = "AKIA" + os.urandom(8).hex().upper()
    bucket = s3_server.create_bucket()
    for p in MODELS[:4]:
        s3_server.put(bucket, f"in/{p.name}", p.read_bytes())
    s3_server.put(bucket, "in/broken.cif.gz", b"\x1f\x8b\x08\x00garbage")
    env = {**os.environ, "AWS_SECRET_ACCESS_KEY": secret, "AWS_ACCESS_KEY_ID": key_id, "RAY_AUTH_MODE": "disabled"}
    env.pop("RAY_ADDRESS", None)
    ray_tmp = Path(tempfile.mkdtemp(prefix="rfs-", dir="/tmp"))  # short: Ray's socket paths are limited
    env["RAY_TMPDIR"] = str(ray_tmp)
    out = f"s3://{bucket}/out"
    logs = ""
    for argv in (["-v", "run", f"s3://{bucket}/in/", "--out", out, "--engine", "builtin"],
                 ["run", f"s3://{bucket}/missing/", "--out", out],  # an error path too
                 ["stats", out], ["report", out]):
        done = subprocess.run([sys.executable, "-m", "rayfold.cli", *argv], env=env, capture_output=True,
                              text=True, timeout=600)
        logs += done.stdout + done.stderr
    assert '"release": 1' in logs and "not_found" in logs
    client = s3_server.client()
    objects = client.list_objects_v2(Bucket=bucket, Prefix="out/")["Contents"]
    assert len(objects) > 20
    for obj in objects:
        body = client.get_object(Bucket=bucket, Key=obj["Key"])["Body"].read()
        assert secret.encode() not in body and key_id.encode() not in body, obj["Key"]
    for path in ray_tmp.rglob("*"):  # Ray's own session logs of the job
        if path.is_file() and path.stat().st_size < 50 * 2**20:
            data = path.read_bytes()
            assert secret.encode() not in data, path
    assert secret not in logs and key_id not in logs
    shutil.rmtree(ray_tmp, ignore_errors=True)
