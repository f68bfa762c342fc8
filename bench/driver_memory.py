"""The driver's resident memory per clustering stage, from the stage names its progress bars print.

Runs `python -m rayfold cluster FRAGMENTS --out OUT --engine builtin` as a child process, samples
its RSS every 0.25 s, and attributes each sample to the stage whose progress bar appeared last (the
`desc` of `iter_tasks`: "k-mer round 1, try 1", "search round 2 search", "representative audit" ...).
This is where the driver's per-fragment growth (`bench/linear_engine.py`) has to be looked for.
Resident memory is split as the kernel counts it: private (RssAnon: the driver's own heap), shared
(RssShmem: pages of Ray's object store the driver has mapped while it reads a result) and file
(RssFile: the pages of the libraries and files it has mapped), with the glibc main arena's size
(the `[heap]` mapping) beside them.

    python bench/driver_memory.py /tmp/lin/n10000 /tmp/driver-memory-out
"""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
import threading
import time

STAGE = re.compile(rb"\s*([A-Za-z][A-Za-z0-9 ,\-]+?):")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("fragments", help="a fragments dataset (or a run folder holding one)")
    parser.add_argument("out", help="where the clustering tables go")
    args = parser.parse_args()
    child = subprocess.Popen([sys.executable, "-m", "rayfold", "cluster", args.fragments, "--out", args.out,
                              "--engine", "builtin"], stderr=subprocess.PIPE, stdout=subprocess.DEVNULL)
    assert child.stderr is not None
    start = time.monotonic()
    samples: list[tuple[float, ...]] = []  # (t, rss, private, shared, file, heap) in MB

    def sample() -> None:
        while child.poll() is None:
            try:
                samples.append((time.monotonic() - start, *resident(child.pid)))
            except (OSError, KeyError):
                return
            time.sleep(0.25)

    threading.Thread(target=sample, daemon=True).start()
    stages: list[tuple[float, str]] = [(0.0, "start-up, loading, first k-mer shuffle")]
    seen: set[bytes] = set()
    pending = b""
    while chunk := child.stderr.read(256):
        *lines, pending = re.split(rb"[\r\n]", pending + chunk)
        for line in lines:
            match = STAGE.match(line)
            if match and match.group(1) not in seen:
                seen.add(match.group(1))
                stages.append((time.monotonic() - start, match.group(1).decode()))
    child.wait()
    print("| from | stage | RSS max (MB) | private max | shared max | file max | [heap] max |\n|---|---|---|---|---|---|---|")
    for (begin, name), (end, _) in zip(stages, [*stages[1:], (float("inf"), "")]):
        rows = [s[1:] for s in samples if begin <= s[0] < end]
        if rows:
            columns = " | ".join(f"{max(c):.1f}" for c in zip(*rows))
            print(f"| {begin:.0f} s | {name} | {columns} |")
    peaks = [max(c) for c in zip(*(s[1:] for s in samples))]
    print(f"\npeak RSS {peaks[0]:.1f} MB, private {peaks[1]:.1f} MB, shared {peaks[2]:.1f} MB, file {peaks[3]:.1f} MB, "
          f"[heap] {peaks[4]:.1f} MB; exit status {child.returncode}")


def resident(pid: int) -> tuple[float, float, float, float, float]:
    """(RSS, private, shared, file, [heap] size) in MB (MiB) from /proc/PID (Linux)."""
    fields = {}
    for line in open(f"/proc/{pid}/status"):
        key, _, value = line.partition(":")
        if key in ("VmRSS", "RssAnon", "RssShmem", "RssFile"):
            fields[key] = int(value.split()[0]) / 1024
    heap = 0.0
    for line in open(f"/proc/{pid}/maps"):
        if line.rstrip().endswith("[heap]"):
            start, end = (int(x, 16) for x in line.split()[0].split("-"))
            heap += (end - start) / 2**20
    return fields["VmRSS"], fields["RssAnon"], fields["RssShmem"], fields["RssFile"], heap


if __name__ == "__main__":
    main()
