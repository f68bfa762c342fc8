"""The driver's heap settings (`rayfold.runtime.heap`), in fresh processes: glibc's behaviour
depends on what the process allocated before."""

from __future__ import annotations

import subprocess
import sys

import pytest

from rayfold.runtime.heap import _glibc

# a driver-like pattern: temporaries below the mmap threshold (64 kB) freed while small results
# (4 kB) allocated between them survive, so the freed blocks are holes inside the heap
PATTERN = """
import sys
import numpy as np
from rayfold.runtime.heap import keep_heap_small, release_freed

def rss_mb():
    return int(open("/proc/self/statm").read().split()[1]) * 4096 / 2**20

keep_heap_small()
before = rss_mb()
kept, temporaries = [], []
for k in range(3000):
    temporaries.append(np.ones(8192))
    kept.append(np.ones(512))
del temporaries
if sys.argv[1] == "released":
    release_freed(every=0.0)
print(rss_mb() - before)
"""


def grown_mb(mode: str, script: str = PATTERN) -> float:
    done = subprocess.run([sys.executable, "-c", script, mode], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    return float(done.stdout.split()[-1])


@pytest.mark.skipif(_glibc() is None, reason="glibc's malloc only")
def test_freed_holes_in_the_heap_go_back_to_the_system():
    assert grown_mb("kept") > 150  # glibc keeps the ~190 MB of holes it was given back
    assert grown_mb("released") < 40  # the survivors (12 MB) and the pages they share


ARROW_PATTERN = """
import sys
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from rayfold.runtime.heap import release_freed

def rss_mb():
    return int(open("/proc/self/statm").read().split()[1]) * 4096 / 2**20

base = pa.array(np.ones(8192))
before = rss_mb()
tables = [pc.add(base, k) for k in range(3000)]  # 64 kB each, in Arrow's own pool
del tables
if sys.argv[1] == "released":
    release_freed(every=0.0)
print(rss_mb() - before)
"""


def test_arrow_pool_gives_back_what_it_freed():
    assert grown_mb("kept", ARROW_PATTERN) > 150  # the pool keeps the ~190 MB it freed
    assert grown_mb("released", ARROW_PATTERN) < 40


BIG_ARROW_PATTERN = """
import sys
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from rayfold.runtime.heap import keep_heap_small

def rss_mb():
    return int(open("/proc/self/statm").read().split()[1]) * 4096 / 2**20

if sys.argv[1] == "driver":
    keep_heap_small()
base = pa.array(np.ones(131072))
before = rss_mb()
tables = [pc.add(base, k) for k in range(200)]  # 1 MB each
del tables
print(rss_mb() - before)
"""


@pytest.mark.skipif(_glibc() is None, reason="glibc's malloc only")
def test_the_drivers_arrow_buffers_go_back_when_freed_without_a_trim():
    assert grown_mb("default", BIG_ARROW_PATTERN) > 150  # Arrow's own pool keeps the ~200 MB until asked
    assert grown_mb("driver", BIG_ARROW_PATTERN) < 20
