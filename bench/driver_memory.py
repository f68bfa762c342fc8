"""The driver's resident memory per clustering stage, from the stage names its progress bars print.

Runs `python -m rayfold cluster FRAGMENTS --out OUT --engine builtin` as a child process, samples
its RSS every 0.25 s, and attributes each sample to the stage whose progress bar appeared last (the
`desc` of `run_tasks`: "k-mer round 1, try 1", "search round 2 search", "representative audit" ...).
This is where the driver's per-fragment growth (`bench/linear_engine.py`) has to be looked for.

    python bench/driver_memory.py /tmp/lin/n10000 /tmp/driver-memory-out
"""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
import threading
import time

import psutil

STAGE = re.compile(rb"\s*([A-Za-z][A-Za-z0-9 ,\-]+?):")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("fragments", help="a fragments dataset (or a run folder holding one)")
    parser.add_argument("out", help="where the clustering tables go")
    args = parser.parse_args()
    child = subprocess.Popen([sys.executable, "-m", "rayfold", "cluster", args.fragments, "--out", args.out,
                              "--engine", "builtin"], stderr=subprocess.PIPE, stdout=subprocess.DEVNULL)
    assert child.stderr is not None
    process, start = psutil.Process(child.pid), time.monotonic()
    samples: list[tuple[float, float]] = []

    def sample() -> None:
        while child.poll() is None:
            try:
                samples.append((time.monotonic() - start, process.memory_info().rss / 1e6))
            except psutil.Error:
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
    print("| from | stage | driver RSS max (MB) |\n|---|---|---|")
    for (begin, name), (end, _) in zip(stages, [*stages[1:], (float("inf"), "")]):
        rss = [r for t, r in samples if begin <= t < end]
        if rss:
            print(f"| {begin:.0f} s | {name} | {max(rss):.1f} |")
    print(f"\npeak {max(r for _, r in samples):.1f} MB; exit status {child.returncode}")


if __name__ == "__main__":
    main()
