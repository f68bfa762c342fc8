"""`rayfold run` as real separate processes, each with its own Ray (found by its own temp dir)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path


def run_cli(inputs: Sequence[Path | str], out: Path | str, ray_tmp: str, *extra: str) -> subprocess.Popen:
    """Start `rayfold run INPUT... --out OUT` in a new session (its own process group) and Ray temp dir."""
    env = {**os.environ, "RAY_TMPDIR": ray_tmp, "RAY_AUTH_MODE": "disabled"}
    env.pop("RAY_ADDRESS", None)
    argv = [sys.executable, "-m", "rayfold.cli", "run", *map(str, inputs), "--out", str(out), "--engine", "builtin",
            "--unit-size", "2", "--no-progress", "--no-report", *extra]
    return subprocess.Popen(argv, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True)


def kill_run(proc: subprocess.Popen, ray_tmp: str) -> None:
    """SIGKILL the driver's process group and every Ray process it started (found by its temp dir)."""
    import psutil

    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    proc.wait(timeout=60)
    for p in psutil.process_iter(["cmdline"]):
        try:
            if any(ray_tmp in part for part in (p.info["cmdline"] or [])):
                p.kill()
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            pass


def wait_for(predicate: Callable[[], bool], proc: subprocess.Popen, timeout: float = 300) -> bool:
    """Poll `predicate` until it holds; False when `proc` exits first or time runs out."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        if proc.poll() is not None:
            return False
        time.sleep(0.2)
    return False
