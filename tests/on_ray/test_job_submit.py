"""As users run it: `ray start --head`, then `ray job submit` of jobs/run.py and jobs/recluster.py,
reading inputs from and writing tables to a real (moto) S3 server.

The head gets its own temp dir and free ports, so a stale /tmp/ray cluster or another test's Ray
is never joined; RAY_AUTH_MODE=disabled keeps a token left in ~/.ray out of the way; only the
processes of this head are stopped at the end (never `ray stop`, which would stop every Ray here).
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from conftest import EXAMPLES_AFDB, REPO_ROOT
from rayfold.io.storage import read_parquet_dataset

pytestmark = pytest.mark.ray

RAY = str(Path(sys.executable).with_name("ray"))
MODELS = sorted(p for p in EXAMPLES_AFDB.iterdir() if p.name.endswith(".gz"))[:10]


def _free_ports(n: int) -> list[int]:
    socks = [socket.socket() for _ in range(n)]
    try:
        for s in socks:
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


def _env() -> dict[str, str]:
    env = {**os.environ, "RAY_AUTH_MODE": "disabled", "OPENBLAS_NUM_THREADS": "1"}
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"  # as in an activated venv
    env.pop("RAY_ADDRESS", None)
    return env


@pytest.fixture(scope="module")
def ray_head(s3_server) -> Iterator[str]:
    """A `ray start --head` cluster of our own; yields the dashboard (job submission) address."""
    temp_dir = tempfile.mkdtemp(prefix="rfh-", dir="/tmp")  # short: Ray's socket paths are limited
    gcs, dashboard, client, node_manager, object_manager, agent, metrics, runtime_env, dash_grpc = _free_ports(9)
    argv = [
        RAY, "start", "--head", "--num-cpus", "2", f"--temp-dir={temp_dir}", f"--port={gcs}",
        "--dashboard-host=127.0.0.1", f"--dashboard-port={dashboard}", f"--ray-client-server-port={client}",
        f"--node-manager-port={node_manager}", f"--object-manager-port={object_manager}",
        f"--dashboard-agent-listen-port={agent}", f"--metrics-export-port={metrics}",
        f"--runtime-env-agent-port={runtime_env}", f"--dashboard-agent-grpc-port={dash_grpc}",
        "--min-worker-port=0", "--max-worker-port=0", "--object-store-memory=268435456", "--disable-usage-stats",
    ]
    started = subprocess.run(argv, env=_env(), capture_output=True, text=True, timeout=180)
    if started.returncode != 0:
        shutil.rmtree(temp_dir, ignore_errors=True)
        pytest.fail(f"ray start failed:\n{started.stdout[-2000:]}\n{started.stderr[-2000:]}")
    try:
        yield f"http://127.0.0.1:{dashboard}"
    finally:
        _stop_head(temp_dir)
        shutil.rmtree(temp_dir, ignore_errors=True)


def _stop_head(temp_dir: str) -> None:
    """Kill the processes of this head only: those whose command line names its temp dir."""
    import psutil

    ours = []
    for p in psutil.process_iter(["cmdline"]):
        try:
            if any(temp_dir in part for part in (p.info["cmdline"] or [])):
                ours.append(p)
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            pass
    for p in ours:
        try:
            p.terminate()
        except psutil.NoSuchProcess:
            pass
    _, alive = psutil.wait_procs(ours, timeout=15)
    for p in alive:
        p.kill()


def _submit(address: str, script: str, *args: str) -> str:
    """`ray job submit` and wait; returns the job's logs (fails the test if the job failed)."""
    runtime_env = {"excludes": [".venv", ".git", "out", "*.egg-info"], "env_vars": {"OPENBLAS_NUM_THREADS": "1"}}
    argv = [RAY, "job", "submit", "--address", address, "--working-dir", str(REPO_ROOT),
            "--runtime-env-json", json.dumps(runtime_env), "--", "python", script, *args]
    done = subprocess.run(argv, env=_env(), capture_output=True, text=True, timeout=900, cwd=REPO_ROOT)
    logs = done.stdout + done.stderr
    assert done.returncode == 0 and "succeeded" in logs, logs[-4000:]
    return logs


def test_job_submit_release_then_scheduled_recluster(ray_head, s3_server):
    bucket = s3_server.create_bucket()
    first, later = MODELS[:6], MODELS[6:]
    for p in first:
        s3_server.put(bucket, f"predictions/{p.name}", p.read_bytes())
    out = f"s3://{bucket}/rayfold/main"
    started = time.monotonic()
    _submit(ray_head, "jobs/run.py", f"s3://{bucket}/predictions/", "--out", out, "--engine", "builtin",
            "--no-progress")
    first_seconds = time.monotonic() - started

    releases = read_parquet_dataset(f"{out}/releases")
    assert releases.num_rows == 1 and releases.column("new_inputs").to_pylist() == [len(first)]
    members = read_parquet_dataset(f"{out}/members")
    fragments = read_parquet_dataset(f"{out}/fragments")
    passed = {r["fragment_id"] for r in fragments.to_pylist() if r["passed"]}
    assert set(members.column("fragment_id").to_pylist()) == passed and passed
    manifest = read_parquet_dataset(f"{out}/manifest")
    assert sorted(manifest.column("input_uri").to_pylist()) == sorted(
        f"s3://{bucket}/predictions/{p.name}" for p in first)
    assert all(len(etag or "") > 0 for etag in manifest.column("mtime_or_etag").to_pylist())  # S3 ETags

    # the scheduled job after a new release of predictions: only the new inputs are processed
    for p in later:
        s3_server.put(bucket, f"predictions/{p.name}", p.read_bytes())
    _submit(ray_head, "jobs/recluster.py", f"s3://{bucket}/predictions/", "--out", out, "--engine", "builtin")
    releases = read_parquet_dataset(f"{out}/releases").sort_by("release")
    assert releases.column("release").to_pylist() == [1, 2]
    assert releases.column("new_inputs").to_pylist() == [len(first), len(later)]
    manifest = read_parquet_dataset(f"{out}/manifest")
    assert manifest.num_rows == len(MODELS)
    members = read_parquet_dataset(f"{out}/members").column("fragment_id").to_pylist()
    assert len(members) == len(set(members))
    # nothing new: the scheduled job makes no release
    logs = _submit(ray_head, "jobs/recluster.py", f"s3://{bucket}/predictions/", "--out", out, "--engine", "builtin")
    assert '"up_to_date": true' in logs
    assert read_parquet_dataset(f"{out}/releases").num_rows == 2
    assert first_seconds < 900
