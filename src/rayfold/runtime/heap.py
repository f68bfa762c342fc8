"""The driver's heaps: give freed memory back to the system instead of keeping it.

At 10^5 fragments most of the driver's growth was memory glibc had been given back by free() and
kept (`mallinfo2`'s free bytes: 64 MB at 10^4, 92-134 MB at 10^5; `bench/driver_memory.py
--allocators`): NumPy temporaries of a few hundred kB per fragment-long array, and Ray's and gRPC's
buffers, freed in an order that leaves holes the heap's top cannot be trimmed past. Two settings
fix it where glibc is the allocator (elsewhere they do nothing):

- a fixed mmap threshold: blocks of 128 kB and more are mapped on their own and unmapped when
  freed (glibc otherwise raises the threshold up to 32 MB after the first big free, and every
  fragment-long array after that lands in the heap);
- `malloc_trim(0)` now and then while the driver waits on tasks: free pages inside the heap go
  back to the system too.

Arrow's own pool (mimalloc) keeps what it freed as well: at 10^5 fragments 18 MB of the driver
was a mimalloc arena after the catalogue's tables were gone. `release_freed` hands that back, but
it runs only while the driver waits on tasks: what a step frees between two waits is kept until
the next one. The driver's Arrow buffers therefore come from glibc (`pa.system_memory_pool()`):
one allocator for the bench to account for, whose big blocks are unmapped the moment they are freed
(the fixed threshold). Workers keep Arrow's default pool.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import sys
import time

M_MMAP_THRESHOLD = -3  # mallopt parameter numbers (malloc.h)
MMAP_THRESHOLD_BYTES = 128 * 1024  # glibc's own starting value, kept fixed
TRIM_EVERY_SECONDS = 2.0

_state: dict = {"libc": None, "looked": False, "last_trim": 0.0}


def _glibc() -> ctypes.CDLL | None:
    if not _state["looked"]:
        _state["looked"] = True
        name = ctypes.util.find_library("c")
        try:
            libc = ctypes.CDLL(name) if name else None
            if libc is not None and hasattr(libc, "malloc_trim") and hasattr(libc, "mallopt"):
                _state["libc"] = libc
        except OSError:
            pass
    return _state["libc"]


def keep_heap_small() -> bool:
    """Fix the mmap threshold for this process (the driver) and give Arrow glibc's allocator; False
    where glibc is not the allocator (then both are left as they are)."""
    libc = _glibc()
    if libc is None or not libc.mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD_BYTES):
        return False
    import pyarrow as pa

    pa.set_memory_pool(pa.system_memory_pool())
    return True


def release_freed(every: float = TRIM_EVERY_SECONDS) -> None:
    """`malloc_trim(0)` and Arrow's `release_unused()`, at most once per `every` seconds (each
    walks its allocator's free blocks)."""
    now = time.monotonic()
    if now - _state["last_trim"] < every:
        return
    _state["last_trim"] = now
    libc = _glibc()
    if libc is not None:
        libc.malloc_trim(0)
    arrow = sys.modules.get("pyarrow")  # never imported for this
    if arrow is not None:
        arrow.default_memory_pool().release_unused()
