"""Two `rayfold run` processes on one output: nothing is lost, whichever way they overlap.

The reporter's case: run 1 (inputs x) is frozen (SIGSTOP) after writing fragment parts, as a long
clustering stage would hold it; run 2 (inputs y) starts on the same output. Run 2 must refuse while
run 1's lock is fresh; when run 1's lock has gone stale, run 2 takes over, and run 1, woken up, must
not commit over it. Either way every passed fragment of x and y ends up clustered exactly once.
"""

from __future__ import annotations

import os
import shutil
import signal
import tempfile
import time
from pathlib import Path

import pytest

from cli_processes import kill_run, run_cli, wait_for
from conftest import EXAMPLES_AFDB
from rayfold.io.storage import exists, join_uri, list_files, read_parquet_dataset
from rayfold.release.lock import LOCK_NAME, RunLock

pytestmark = pytest.mark.ray

MODELS = sorted(p for p in EXAMPLES_AFDB.iterdir() if p.name.endswith(".gz"))


def _inputs(root: Path) -> tuple[Path, Path]:
    x, y = root / "x", root / "y"
    x.mkdir()
    y.mkdir()
    for p in MODELS[:6]:
        shutil.copy2(p, x / p.name)
    for p in MODELS[6:9]:
        shutil.copy2(p, y / p.name)
    return x, y


def _parts(out: str, table: str) -> int:
    return len([u for u in list_files(f"{out}/{table}") if u.endswith(".parquet")])


def _finish(proc, ray_tmp: str) -> tuple[int, str]:
    try:
        _, stderr = proc.communicate(timeout=600)
        return proc.returncode, stderr.decode()
    finally:
        kill_run(proc, ray_tmp)


def assert_everything_clustered_once(out: str) -> None:
    fragments = read_parquet_dataset(f"{out}/fragments")
    passed = [f for f, ok in zip(fragments.column("fragment_id").to_pylist(), fragments.column("passed").to_pylist())
              if ok]
    members = read_parquet_dataset(f"{out}/members").column("fragment_id").to_pylist()
    assert len(members) == len(set(members))
    assert sorted(members) == sorted(set(passed))
    manifest = read_parquet_dataset(f"{out}/manifest").column("input_uri").to_pylist()
    assert len(manifest) == len(set(manifest)) == 9


def _overlap(out: str, root: Path, *, stale_after: str | None) -> tuple[int, str, int, str]:
    """Run 1 on x, frozen once it wrote a fragments part; run 2 on y meanwhile; then run 1 woken."""
    x, y = _inputs(root)
    extra = ("--stale-lock-after", stale_after) if stale_after else ()
    tmp1, tmp2 = tempfile.mkdtemp(prefix="rfo1-", dir="/tmp"), tempfile.mkdtemp(prefix="rfo2-", dir="/tmp")
    first = run_cli([x], out, tmp1, *extra)
    try:
        assert wait_for(lambda: _parts(out, "fragments") >= 1, first), first.stderr.read().decode()[-3000:]
        os.kill(first.pid, signal.SIGSTOP)  # the driver only: its lock's heartbeat stops with it
        if stale_after:
            time.sleep(float(stale_after) + 1)
        second_rc, second_err = _finish(run_cli([y], out, tmp2, *extra), tmp2)
        os.kill(first.pid, signal.SIGCONT)
        first_rc, first_err = _finish(first, tmp1)
    finally:
        if first.poll() is None:
            os.kill(first.pid, signal.SIGCONT)
        kill_run(first, tmp1)
        for tmp in (tmp1, tmp2):
            shutil.rmtree(tmp, ignore_errors=True)
    return first_rc, first_err, second_rc, second_err


def _catch_up(out: str, root: Path) -> None:
    tmp = tempfile.mkdtemp(prefix="rfo3-", dir="/tmp")
    try:
        rc, err = _finish(run_cli([root / "x", root / "y"], out, tmp), tmp)
        assert rc == 0, err[-3000:]
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


@pytest.mark.parametrize("where", ["local", "s3"])
def test_a_second_run_refuses_while_the_first_holds_the_lock(tmp_path, s3_server, where):
    out = str(tmp_path / "out") if where == "local" else f"s3://{s3_server.create_bucket()}/rayfold/main"
    first_rc, first_err, second_rc, second_err = _overlap(out, tmp_path, stale_after=None)
    assert second_rc == 2, second_err[-3000:]
    assert "run_in_progress" in second_err and "Traceback" not in second_err
    assert first_rc == 0, first_err[-3000:]
    releases = read_parquet_dataset(f"{out}/releases").to_pylist()
    assert [r["release"] for r in releases] == [1] and releases[0]["new_inputs"] == 6  # x only
    _catch_up(out, tmp_path)  # y is still new: the next run takes it
    assert_everything_clustered_once(out)


def test_a_frozen_run_whose_lock_was_taken_over_does_not_commit(tmp_path, s3_server):
    out = str(tmp_path / "out")
    first_rc, first_err, second_rc, second_err = _overlap(out, tmp_path, stale_after="2")
    assert second_rc == 0, second_err[-3000:]
    assert first_rc == 2, first_err[-3000:]
    assert ("lock_lost" in first_err or "concurrent_release" in first_err) and "Traceback" not in first_err
    assert [r["release"] for r in read_parquet_dataset(f"{out}/releases").to_pylist()] == [1]
    _catch_up(out, tmp_path)  # x's units the frozen run finished after the commit are clustered now
    assert_everything_clustered_once(out)


@pytest.mark.parametrize("where", ["local", "s3"])
def test_run_lock_refuses_takes_over_when_stale_and_notices_loss(tmp_path, s3_server, where):
    out = str(tmp_path / "out") if where == "local" else f"s3://{s3_server.create_bucket()}/out"
    holder = RunLock(out, stale_after=60).acquire()
    try:
        with pytest.raises(Exception, match="run_in_progress"):
            RunLock(out, stale_after=60).acquire()
    finally:
        holder.release()
    assert not exists(join_uri(out, LOCK_NAME))  # released: the lock file is gone
    frozen = RunLock(out, stale_after=1).acquire()
    frozen._stop.set()  # stand-in for a frozen process: no more heartbeats
    frozen._thread.join()
    time.sleep(1.5)
    thief = RunLock(out, stale_after=1).acquire()
    try:
        with pytest.raises(Exception, match="lock_lost"):
            frozen.check()
    finally:
        thief.release()
        frozen.release()  # does not delete a lock that is not its own


def test_a_lock_whose_process_is_gone_from_this_host_is_taken_over_at_once(tmp_path):
    import json
    import socket
    import subprocess
    import sys

    out = str(tmp_path / "out")
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / LOCK_NAME).write_text(json.dumps(
        {"token": "killed-run", "host": socket.gethostname(), "pid": gone.pid, "heartbeat_at": time.time(),
         "stale_after": 900}))
    lock = RunLock(out, stale_after=900).acquire()  # a killed driver's lock does not block its restart
    lock.release()
    (tmp_path / "out" / LOCK_NAME).write_text(json.dumps(
        {"token": "other-host", "host": "elsewhere", "pid": gone.pid, "heartbeat_at": time.time(), "stale_after": 900}))
    with pytest.raises(Exception, match="run_in_progress"):  # on another host a pid says nothing
        RunLock(out, stale_after=900).acquire()
