"""One `rayfold run` per output at a time: a lease file with a heartbeat, on local folders and S3.

A run writes OUT/run.lock (its token, host, pid, times) and refreshes it every `stale_after / 5`
seconds. A second run that finds a fresh lock refuses to start; a lock whose heartbeat is older
than `stale_after` belongs to a dead (or frozen) run and is taken over, and so is one whose process
is gone from this very host (a killed driver restarted on the same node need not wait). Object stores have no
atomic create-if-absent through fsspec, so a run reads the lock back after writing it and gives up
if another run's token is there; and because a frozen run can wake after its lock was taken over,
the release commit itself also checks that no other release was committed meanwhile
(`rayfold.release.run`). Either check alone stops the lost-update the lock is for.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import threading
import time
import uuid
from dataclasses import dataclass, field

from rayfold.io.storage import exists, filesystem_for, join_uri, read_bytes, write_bytes
from rayfold.model.errors import InputError

log = logging.getLogger(__name__)

LOCK_NAME = "run.lock"
DEFAULT_STALE_AFTER = 900.0  # seconds without a heartbeat before a lock counts as abandoned


def _dead_here(held: dict) -> bool:
    """The lock's run was on this host and its process is gone (killed, preempted): no need to wait."""
    if held.get("host") != socket.gethostname():
        return False
    try:
        os.kill(int(held.get("pid", 0)), 0)
    except ProcessLookupError:
        return True
    except (PermissionError, ValueError, OverflowError):
        return False
    return False


@dataclass
class RunLock:
    out: str
    storage_options: dict | None = None
    stale_after: float = DEFAULT_STALE_AFTER
    token: str = field(default_factory=lambda: uuid.uuid4().hex)
    lost: bool = False
    _stop: threading.Event = field(default_factory=threading.Event, repr=False)
    _thread: threading.Thread | None = field(default=None, repr=False)

    @property
    def uri(self) -> str:
        return join_uri(self.out, LOCK_NAME)

    def _record(self) -> dict:
        return {"token": self.token, "host": socket.gethostname(), "pid": os.getpid(),
                "heartbeat_at": time.time(), "stale_after": self.stale_after}

    def _read(self) -> dict | None:
        if not exists(self.uri, self.storage_options):
            return None
        try:
            return json.loads(read_bytes(self.uri, self.storage_options))
        except (ValueError, OSError):  # half-written or deleted meanwhile: no valid holder
            return None

    def acquire(self) -> RunLock:
        held = self._read()
        if held is not None and held.get("token") != self.token:
            age = time.time() - float(held.get("heartbeat_at", 0))
            if age < float(held.get("stale_after", self.stale_after)) and not _dead_here(held):
                raise InputError(
                    "run_in_progress",
                    f"another rayfold run is working on {self.out} (pid {held.get('pid')} on {held.get('host')}, "
                    f"last heartbeat {age:.0f} s ago); wait for it, or delete {self.uri} if that run is gone "
                    f"(it is taken over by itself after {held.get('stale_after', self.stale_after):.0f} s "
                    "without a heartbeat)")
            log.warning("taking over the lock of pid %s on %s (gone, or no heartbeat for %.0f s)",
                        held.get("pid"), held.get("host"), age)
        write_bytes(json.dumps(self._record()).encode(), self.uri, self.storage_options)
        time.sleep(0.2)  # let a racing writer land, then see who won
        held = self._read()
        if held is None or held.get("token") != self.token:
            raise InputError("run_in_progress", f"another rayfold run took {self.uri} at the same moment")
        self._thread = threading.Thread(target=self._heartbeat, name="rayfold-run-lock", daemon=True)
        self._thread.start()
        return self

    def _heartbeat(self) -> None:
        interval = max(0.5, self.stale_after / 5)
        while not self._stop.wait(interval):
            try:
                held = self._read()
                if held is None or held.get("token") != self.token:
                    self.lost = True  # taken over while this run was frozen: it must not commit
                    return
                write_bytes(json.dumps(self._record()).encode(), self.uri, self.storage_options)
            except Exception as exc:  # a storage hiccup: try again next beat
                log.warning("run lock heartbeat failed: %s", exc)

    def check(self) -> None:
        """Raise when another run has taken the lock over (this run was frozen past `stale_after`)."""
        held = self._read()
        if self.lost or held is None or held.get("token") != self.token:
            self.lost = True
            raise InputError("lock_lost", f"another run took over {self.uri} while this one was stalled; "
                             "this run stops without committing (run again to continue)")

    def release(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
        held = self._read()
        if held is not None and held.get("token") == self.token:
            fs, path = filesystem_for(self.uri, self.storage_options)
            fs.rm(path)

    def __enter__(self) -> RunLock:
        return self.acquire()

    def __exit__(self, *exc: object) -> None:
        self.release()
