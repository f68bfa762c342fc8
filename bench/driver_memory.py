"""The driver's resident memory per clustering stage, from the stage names its progress bars print.

Runs `python -m rayfold cluster FRAGMENTS --out OUT --engine builtin` as a child process, samples
its RSS every 0.25 s, and attributes each sample to the stage whose progress bar appeared last (the
`desc` of `iter_tasks`: "k-mer round 1, try 1", "search round 2 search", "representative audit" ...).
This is where the driver's per-fragment growth (`bench/linear_engine.py`) has to be looked for.
Resident memory is split as the kernel counts it: private (RssAnon: the driver's own heap), shared
(RssShmem: pages of Ray's object store the driver has mapped while it reads a result) and file
(RssFile: the pages of the libraries and files it has mapped), with the glibc main arena's size
(the `[heap]` mapping) beside them. Each stage's kernel mark is also given less the file pages
mapped as the stage began (an upper bound on its private and shared peak: the ~140 MB of library
pages are the same at any size but moved by up to ~30 MB between runs here, which the difference of two
sizes' marks would count as per-fragment memory); the start-up's, less those at its end.

`--allocators` also attributes the driver's memory by allocator, from inside the driver (a thread
the child starts before the CLI runs, sampling every 0.25 s): Python objects and NumPy arrays
(`tracemalloc`, which NumPy reports its data buffers to), Arrow's memory pool, and glibc's
`mallinfo2` (bytes in use, and bytes freed but kept by the allocator), and how many objects
Python's own allocator holds (`sys.getallocatedblocks`: pymalloc's arenas are mapped outside
glibc, so they show only in RSS). At the driver's highest RSS
it prints each allocator's share and the source lines holding the most traced memory then. glibc's
thread arenas (`malloc_info`: what every other thread of the driver allocated, gRPC's and Ray's
included) are counted beside the main arena; `--no-trace` leaves tracemalloc out (its bookkeeping
adds ~150 MB to every figure).

`--memray` runs the driver under memray (`pip install -e ".[bench]"`; native stacks, aggregated:
one record per allocation site live at the peak) and prints the allocations live at the high-water
mark of what it tracks, by where they were made: rayfold's own source lines (NumPy arrays, Python
objects, and what Ray's C++ allocates inside a rayfold call such as a task's arguments), Ray's core
worker and gRPC threads, Python's object arenas, the rest. Single mappings of 256 MB and more (the
object store's file, Arrow's reserved segments: mapped, not resident) are left out. The RSS table
then includes memray's own bookkeeping: read the attribution, not the RSS.

`--mappings` splits the private pages by kind of mapping at each stage's highest sample (every 2 s,
/proc/PID/smaps): glibc's main heap, its thread arenas, 1 MiB maps, reservations of 256 MiB and
more (mimalloc: Arrow's C++ default pool, which `pa.set_memory_pool` does not change: the Parquet
writer maps one and writes ~12 MB of it as the tables are written), other anonymous maps, written
pages of the libraries, and the object store's pages.

    python bench/driver_memory.py /tmp/lin/n10000 /tmp/driver-memory-out [--allocators [--no-trace] | --memray] [--mappings]
"""

from __future__ import annotations

import argparse
import ctypes
import json
import os
import re
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from typing import Any

STAGE = re.compile(rb"\s*([A-Za-z][A-Za-z0-9 ,\-]+?):")
FINAL = re.compile(rb"final high-water mark ([0-9.]+) MB")  # the child's last line


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("fragments", help="a fragments dataset (or a run folder holding one)")
    parser.add_argument("out", help="where the clustering tables go")
    parser.add_argument("--allocators", action="store_true", help="attribute the driver's memory by allocator")
    parser.add_argument("--no-trace", action="store_true",
                        help="with --allocators: glibc's arenas and Arrow's pool only, no tracemalloc")
    parser.add_argument("--memray", action="store_true",
                        help="run the driver under memray and attribute what is live at its peak")
    parser.add_argument("--mappings", action="store_true",
                        help="also split the private pages by kind of mapping (every 2 s, from /proc/PID/smaps)")
    args = parser.parse_args()
    cli = ["cluster", args.fragments, "--out", args.out, "--engine", "builtin"]
    probe_file, capture = f"{args.out}.allocators.jsonl", f"{args.out}.memray.bin"
    child_flag = "--child-untraced" if args.no_trace else "--child"
    if args.memray:
        if os.path.exists(capture):
            os.remove(capture)  # memray will not overwrite
        command = [sys.executable, "-m", "memray", "run", "--native", "--aggregate", "-q", "-o", capture,
                   "-m", "rayfold", *cli]
    elif args.allocators:
        command = [sys.executable, __file__, child_flag, probe_file, *cli]
    else:
        command = [sys.executable, "-m", "rayfold", *cli]
    child = subprocess.Popen(command, stderr=subprocess.PIPE, stdout=subprocess.DEVNULL)
    assert child.stderr is not None
    start = time.monotonic()
    # (t, (rss, private, shared, file, heap, high-water mark)) in MB
    samples: list[tuple[float, tuple[float, ...]]] = []

    def sample_every(seconds: float, read: Callable[[], Any], into: list) -> None:
        """(seconds since the start, read()) into `into` while the child runs, in a thread."""
        def run() -> None:
            while child.poll() is None:
                try:
                    into.append((time.monotonic() - start, read()))
                except (OSError, KeyError, IndexError):
                    return
                time.sleep(seconds)

        threading.Thread(target=run, daemon=True).start()

    sample_every(0.25, lambda: resident(child.pid), samples)
    by_mapping: list[tuple[float, dict[str, float]]] = []
    if args.mappings:
        sample_every(2.0, lambda: private_by_mapping(child.pid), by_mapping)
    stages: list[tuple[float, str]] = [(0.0, "start-up, loading, first k-mer shuffle")]
    seen: set[bytes] = set()
    # each finished stage's (kernel's high-water mark, file pages mapped as it began); the mark is
    # reset as a stage ends, and the file pages (the libraries' code: ~140 MB, the same whatever the
    # set, never freed) only grow, so mark - file pages at the start bounds the stage's private and
    # shared peak from above
    stage_marks: list[tuple[float, float]] = []
    file_at_start = resident(child.pid)[3]
    pending = b""
    # read1: what the pipe has now; read(256) would wait for 256 bytes, and a stage's first line (a
    # step's, ~25 bytes) would end the stage before it only once more output came: a spike early in
    # the new stage (cohesion's sample, 5.3 MB at 10^5) was counted in the linkage's mark
    while chunk := child.stderr.read1(256):
        *lines, pending = re.split(rb"[\r\n]", pending + chunk)
        for line in lines:
            final = FINAL.match(line)
            if final:  # the child's own reading as it exits: the last stage's mark (--allocators)
                stage_marks[len(stages) - 1:] = [(float(final.group(1)), file_at_start)]
                continue
            match = STAGE.match(line)
            if match and match.group(1) not in seen:
                seen.add(match.group(1))
                mark, file_now = end_stage(child.pid)
                if len(stages) == 1:  # start-up: the libraries were mapped during it, so its file
                    file_at_start = file_now  # pages are those at its end (a lower bound here)
                stage_marks.append((mark, file_at_start))
                file_at_start = file_now or file_at_start  # 0: the child has exited
                stages.append((time.monotonic() - start, match.group(1).decode()))
    child.wait()
    print("| from | stage | RSS max (MB) | private max | shared max | file max | [heap] max | high-water mark | "
          "mark less file pages |\n|---|---|---|---|---|---|---|---|---|")
    stage_marks += [(0.0, 0.0)] * (len(stages) - len(stage_marks))  # a child that gave no final reading
    for (begin, name), (end, _), (mark, file_pages) in zip(stages, [*stages[1:], (float("inf"), "")], stage_marks):
        rows = [values for t, values in samples if begin <= t < end]
        if rows:
            *columns, marks = (max(c) for c in zip(*rows))
            print(f"| {begin:.0f} s | {name} | " + " | ".join(f"{c:.1f}" for c in columns)
                  + f" | {max(marks, mark):.1f} | {max(marks, mark) - (file_pages or columns[3]):.1f} |")
        elif mark:  # a step shorter than a sample's interval: its mark alone
            print(f"| {begin:.0f} s | {name} | " + " | ".join("-" for _ in range(5))
                  + f" | {mark:.1f} | {mark - file_pages:.1f} |")
    peaks = [max(c) for c in zip(*(values for _, values in samples))]
    peaks[5] = max(peaks[5], *(m for m, _ in stage_marks))
    beyond_files = max((m - f for m, f in stage_marks if m), default=0.0)
    print(f"\npeak RSS {peaks[0]:.1f} MB, private {peaks[1]:.1f} MB, shared {peaks[2]:.1f} MB, file {peaks[3]:.1f} MB, "
          f"[heap] {peaks[4]:.1f} MB; the kernel's high-water mark {peaks[5]:.1f} MB, {beyond_files:.1f} MB less "
          f"the file pages; exit status {child.returncode}")
    if args.mappings:
        report_mappings(by_mapping, stages)
    if args.allocators:
        report_allocators(probe_file, stages)
        report_peaks(probe_file.replace(".allocators.jsonl", ".peaks.json"), stages)
    if args.memray:
        report_memray(capture)


MAPPING_KINDS = ("heap", "thread arenas", "1 MiB maps", "reserved (>= 256 MiB)", "other anonymous",
                 "file (written)", "object store")


def private_by_mapping(pid: int) -> dict[str, float]:
    """The private pages of `pid` by kind of mapping, in MB: glibc's main heap; glibc's thread arenas (a
    written part followed by its unwritten rest, 64 MiB in all); 1 MiB maps (Python's object arenas,
    glibc's blocks of that size); reservations of 256 MiB and more (mimalloc's arenas: Arrow's C++
    default pool); the other anonymous maps (glibc's mmapped blocks: NumPy arrays of 128 kB and more,
    Ray's and gRPC's); the written pages of file maps (the libraries' data); and the object store's
    pages read or written (shared)."""
    header = re.compile(r"^([0-9a-f]+)-([0-9a-f]+) (\S+) \S+ \S+ \S+\s*(.*)$")
    maps: list[dict] = []
    for line in open(f"/proc/{pid}/smaps"):
        match = header.match(line)
        if match:
            maps.append({"start": int(match[1], 16), "end": int(match[2], 16), "perm": match[3],
                         "name": match[4].strip(), "Anonymous": 0.0, "Rss": 0.0})
        elif line.startswith(("Anonymous:", "Rss:")):
            maps[-1][line.split(":")[0]] = int(line.split()[1]) / 1024
    kinds = dict.fromkeys(MAPPING_KINDS, 0.0)
    for k, m in enumerate(maps):
        size, after = (m["end"] - m["start"]) / 2**20, (maps[k + 1] if k + 1 < len(maps) else None)
        if m["name"] == "[heap]":
            kind = "heap"
        elif m["name"].startswith("/dev/shm"):
            kinds["object store"] += m["Rss"]
            continue
        elif m["name"].startswith("/"):
            kind = "file (written)"
        elif m["name"]:
            continue  # [stack], [vdso] ...
        elif (after is not None and not after["name"] and after["perm"].startswith("---")
              and after["start"] == m["end"] and abs((after["end"] - m["start"]) / 2**20 - 64) < 0.01):
            kind = "thread arenas"
        elif abs(size - 1.0) < 1e-9:
            kind = "1 MiB maps"
        elif size >= 256:
            kind = "reserved (>= 256 MiB)"
        else:
            kind = "other anonymous"
        kinds[kind] += m["Anonymous"]
    return kinds


def report_mappings(samples: list[tuple[float, dict[str, float]]], stages: list[tuple[float, str]]) -> None:
    """Each stage's private pages by kind of mapping, at its sample of most private pages."""
    print("\n| from | stage | " + " | ".join(MAPPING_KINDS) + " |\n|---|---|" + "---|" * len(MAPPING_KINDS))
    for (begin, name), (end, _) in zip(stages, [*stages[1:], (float("inf"), "")]):
        rows = [kinds for t, kinds in samples if begin <= t < end]
        if rows:
            top = max(rows, key=lambda kinds: sum(v for k, v in kinds.items() if k != "object store"))
            print(f"| {begin:.0f} s | {name} | " + " | ".join(f"{top[k]:.1f}" for k in MAPPING_KINDS) + " |")


def end_stage(pid: int) -> tuple[float, float]:
    """(the kernel's high-water mark of `pid` so far, its file pages now) in MB, then the mark reset
    to its current RSS (Linux's clear_refs 5): each stage's mark is its own, spikes between two
    samples included."""
    try:
        fields = status_mb(pid, ("VmHWM", "RssFile"))
        if fields:  # none once the process has exited
            with open(f"/proc/{pid}/clear_refs", "w") as control:
                control.write("5")
    except OSError:
        return 0.0, 0.0
    return fields.get("VmHWM", 0.0), fields.get("RssFile", 0.0)


def status_mb(pid: int | str, keys: tuple[str, ...]) -> dict[str, float]:
    """The `keys` of /proc/PID/status (kB figures) in MB (MiB); PID may be "self"."""
    fields = {}
    for line in open(f"/proc/{pid}/status"):
        key, _, value = line.partition(":")
        if key in keys:
            fields[key] = int(value.split()[0]) / 1024
    return fields


def resident(pid: int) -> tuple[float, float, float, float, float, float]:
    """(RSS, private, shared, file, [heap] size, high-water mark) in MB (MiB) from /proc/PID (Linux)."""
    fields = status_mb(pid, ("VmRSS", "RssAnon", "RssShmem", "RssFile", "VmHWM"))
    heap = 0.0
    for line in open(f"/proc/{pid}/maps"):
        if line.rstrip().endswith("[heap]"):
            start, end = (int(x, 16) for x in line.split()[0].split("-"))
            heap += (end - start) / 2**20
    return fields["VmRSS"], fields["RssAnon"], fields["RssShmem"], fields["RssFile"], heap, fields["VmHWM"]


class MallInfo2(ctypes.Structure):
    _fields_ = [(name, ctypes.c_size_t) for name in ("arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks",
                                                     "fsmblks", "uordblks", "fordblks", "keepcost")]


def thread_arenas(libc: ctypes.CDLL, scratch: str) -> tuple[float, float, int]:
    """(bytes the non-main glibc arenas hold from the system, bytes free inside them, how many), from
    `malloc_info`: `mallinfo2` counts the main arena and mmapped blocks only, while every thread that
    allocates (gRPC's, Ray's core worker's, the catalogue's readers) may get an arena of its own."""
    handle = libc.fopen(scratch.encode(), b"w")
    libc.malloc_info(0, handle)
    libc.fclose(handle)
    held = free = 0.0
    count = 0
    for heap in re.findall(r'<heap nr="(\d+)">(.*?)</heap>', open(scratch).read(), re.S):
        if heap[0] == "0":
            continue
        count += 1
        held += float(re.search(r'<system type="current" size="(\d+)"', heap[1]).group(1))
        free += sum(float(x) for x in re.findall(r'<total type="(?:fast|rest)" count="\d+" size="(\d+)"', heap[1]))
    return held, free, count


def probe(path: str, every: float = 0.25, trace: bool = True) -> None:
    """Sample the allocators of this process into `path` (one JSON line per sample, MB); at each new
    high of RSS, the 12 source lines holding the most traced memory go into the sample too.
    `trace=False`: no tracemalloc (its bookkeeping adds ~150 MB), the glibc and Arrow figures only."""
    import tracemalloc

    import pyarrow as pa

    libc = ctypes.CDLL("libc.so.6")
    libc.mallinfo2.restype = MallInfo2
    libc.fopen.restype = ctypes.c_void_p
    libc.fopen.argtypes = [ctypes.c_char_p, ctypes.c_char_p]
    libc.malloc_info.argtypes = [ctypes.c_int, ctypes.c_void_p]
    libc.fclose.argtypes = [ctypes.c_void_p]
    if trace:
        tracemalloc.start(1)
    start, highest = time.monotonic(), 0.0
    mb = 2**20
    scratch = f"{path}.malloc_info.xml"
    with open(path, "w") as out:
        while True:
            rss = int(open("/proc/self/statm").read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / mb
            info = libc.mallinfo2()
            traced, _ = tracemalloc.get_traced_memory() if trace else (0, 0)
            held, free, count = thread_arenas(libc, scratch)
            row = {"t": time.monotonic() - start, "rss": rss, "traced": traced / mb,
                   "arrow": pa.total_allocated_bytes() / mb, "glibc_used": (info.uordblks + info.hblkhd) / mb,
                   "glibc_free": info.fordblks / mb, "glibc_mmapped": info.hblkhd / mb,
                   "arenas_used": (held - free) / mb, "arenas_free": free / mb, "arenas": count,
                   "py_blocks": sys.getallocatedblocks() / 1e6}
            if trace and rss > highest * 1.02 + 1.0:
                highest = rss
                stats = tracemalloc.take_snapshot().statistics("lineno")[:12]
                row["top"] = [[str(s.traceback[0]), s.size / mb] for s in stats]
            out.write(json.dumps(row) + "\n")
            out.flush()
            time.sleep(every)


def report_allocators(path: str, stages: list[tuple[float, str]]) -> None:
    """The allocators' figures at the driver's highest RSS, and each one's highest per stage."""
    rows = [json.loads(line) for line in open(path)]
    if not rows:
        return
    keys = ("rss", "traced", "arrow", "glibc_used", "glibc_free", "arenas_used", "arenas_free", "arenas",
            "py_blocks")
    for r in rows:
        r.setdefault("py_blocks", 0.0)  # samples from before this column
    print("\n| from | stage | RSS | traced (Python + NumPy) | Arrow pool | main arena + mmapped, in use | main arena free, kept "
          "| thread arenas, in use | thread arenas, free | thread arenas | Python objects (millions of pymalloc blocks) |"
          "\n|---|---|---|---|---|---|---|---|---|---|---|")
    for (begin, name), (end, _) in zip(stages, [*stages[1:], (float("inf"), "")]):
        here = [r for r in rows if begin <= r["t"] < end]
        if here:
            print(f"| {begin:.0f} s | {name} | " + " | ".join(f"{max(r[k] for r in here):.1f}" for k in keys) + " |")
    peak = max(rows, key=lambda r: r["rss"])
    tops = [r for r in rows if "top" in r and r["t"] <= peak["t"]]
    if not tops:
        return
    last_top = tops[-1]
    print(f"\nat the highest RSS ({peak['t']:.0f} s): " + ", ".join(
        f"{k} {peak[k]:.1f} {'M blocks' if k == 'py_blocks' else 'MB'}" for k in keys))
    print(f"most traced memory, by source line ({last_top['t']:.0f} s, RSS {last_top['rss']:.1f} MB):")
    for where, size in last_top["top"]:
        print(f"  {size:8.2f} MB  {where}")


class PeakLocator:
    """Where in the code each stage's private memory peaks: a thread reads this process's private
    pages (statm: resident less file and shared pages) every few milliseconds and, at each new high
    of the current stage, takes the main thread's Python stack. Stages are named as the parent names
    them (a progress bar's `desc`, "step NAME"), so its table and this one line up."""

    def __init__(self, path: str, every: float = 0.005) -> None:
        self.path, self.every = path, every
        self.stage = "start-up, loading, first k-mer shuffle"
        self.peaks: dict[str, dict] = {}
        self.main = threading.main_thread().ident

    def enter(self, stage: str) -> None:
        self.stage = stage

    def run(self) -> None:
        page = os.sysconf("SC_PAGE_SIZE") / 2**20
        start = time.monotonic()
        while True:
            _, resident, shared = (int(x) for x in open("/proc/self/statm").read().split()[:3])
            private = (resident - shared) * page
            stage = self.stage
            if stage not in self.peaks and self.peaks:
                self.save()  # the stages so far, readable while the run goes on
            best = self.peaks.get(stage)
            if best is None or private > best["private"] + 0.05:
                self.peaks[stage] = {"private": private, "t": time.monotonic() - start,
                                     "where": rayfold_frames(sys._current_frames().get(self.main))}
            time.sleep(self.every)

    def save(self) -> None:
        with open(self.path, "w") as out:
            json.dump(dict(self.peaks), out)


def rayfold_frames(frame, innermost: int = 4) -> list[str]:  # type: ignore[no-untyped-def]
    """The innermost rayfold frames of a stack, outermost first, from the frames alone: never
    `traceback.extract_stack`, whose source lines stay in the driver it measures (linecache keeps
    every line of every file on a stack: 80 of the driver's module files took 4 MB and 43,000
    objects; round 14's runs held 0.2 M more objects than round 13's from the start)."""
    where = []
    while frame is not None and len(where) < innermost:
        code = frame.f_code
        if "/rayfold/" in code.co_filename:
            where.append(f"{code.co_filename.split('/')[-1]}:{frame.f_lineno} {code.co_name}")
        frame = frame.f_back
    return where[::-1]


def report_peaks(path: str, stages: list[tuple[float, str]]) -> None:
    """Each stage's highest private memory (as sampled every few ms) and the rayfold frames running then."""
    if not os.path.exists(path):
        return
    peaks = json.load(open(path))
    print("\n| stage | private peak (MB, sampled) | where (innermost rayfold frames last) |\n|---|---|---|")
    for _, name in stages:
        for key in (name, f"step {name.removeprefix('step ')}"):
            if key in peaks:
                p = peaks.pop(key)
                print(f"| {name} | {p['private']:.1f} | {' < '.join(reversed(p['where'])) or '-'} |")
                break


def mark_steps(locator: PeakLocator | None = None) -> None:
    """Each clustering step names itself on stderr as it begins ("step evidence: ..."), as progress
    bars do: the steps with no bar (the evidence read-back, the tables) get stages of their own."""
    from rayfold.cluster.steps import Steps

    enter = Steps.__call__

    def marked(self: Steps, name: str):  # type: ignore[no-untyped-def]
        print(f"\nstep {name}: begins", file=sys.stderr, flush=True)  # a line of its own after a bar's \r
        if locator is not None:
            locator.enter(f"step {name}")
        return enter(self, name)

    Steps.__call__ = marked  # type: ignore[method-assign]
    if locator is None:
        return
    from rayfold.runtime import clustering

    tasks = clustering.iter_tasks

    def named(*args, desc: str, **kwargs):  # type: ignore[no-untyped-def]
        locator.enter(desc)
        return tasks(*args, desc=desc, **kwargs)

    clustering.iter_tasks = named  # type: ignore[assignment]


UNTOUCHED_MAPPING = 256 * 2**20  # single mappings this large are reservations (object store, Arrow's arenas)


def where_made(record) -> str:
    """Python's object arenas; else the innermost rayfold source line of the allocation's stack; else
    what made it."""
    frames = record.hybrid_stack_trace(max_stacks=64)
    natives = " ".join(f"{function} {filename}" for function, filename, _ in frames)
    if "_PyObject_ArenaMmap" in natives or "new_arena" in natives:  # made by whichever object needed it
        return "Python's object arenas (pymalloc: objects of 512 B or less)"
    for function, filename, line in frames:
        if "/rayfold/" in filename and filename.endswith(".py"):
            return f"rayfold {filename.split('/rayfold/')[-1]}:{line} ({function})"
    if "ray::" in natives or "_raylet" in natives or "ray/_private" in natives:
        return "Ray's core worker (C++)"
    if "grpc" in natives:
        return "gRPC (C++)"
    for function, filename, line in frames:
        if filename.endswith(".py") or filename.startswith("<frozen"):
            return f"other Python: {filename.split('/')[-1]}:{line} ({function})"
    return f"other native: {frames[0][0][:60] if frames else '?'}"


def report_memray(capture: str, top: int = 30) -> None:
    """What was live at the driver's high-water mark, by `where_made`, biggest first."""
    from collections import Counter

    from memray import AllocatorType, FileReader

    reader = FileReader(capture)
    records = list(reader.get_high_watermark_allocation_records(merge_threads=True))
    sizes: Counter = Counter()
    reserved = 0
    for record in records:
        if record.allocator == AllocatorType.MMAP and record.size >= UNTOUCHED_MAPPING:
            reserved += record.size
            continue
        sizes[where_made(record)] += record.size
    mb = 2**20
    print(f"\nmemray: live at the high-water mark {sum(sizes.values()) / mb:.1f} MB, besides {reserved / mb:.0f} MB "
          f"of reserved mappings (the object store's file, Arrow's segments)")
    for where, size in sizes.most_common(top):
        print(f"  {size / mb:8.2f} MB  {where}")


if __name__ == "__main__":
    if len(sys.argv) > 2 and sys.argv[1] in ("--child", "--child-untraced"):  # the driver, with the probe
        threading.Thread(target=probe, args=(sys.argv[2], 0.25, sys.argv[1] == "--child"), daemon=True).start()
        locator = PeakLocator(sys.argv[2].replace(".allocators.jsonl", ".peaks.json"))
        threading.Thread(target=locator.run, daemon=True).start()
        mark_steps(locator)
        from rayfold.cli import main as cli_main

        status = cli_main(sys.argv[3:])
        locator.save()
        own = status_mb("self", ("VmHWM", "RssFile"))
        print(f"\nfinal high-water mark {own['VmHWM']:.1f} MB, file pages {own['RssFile']:.1f} MB",
              file=sys.stderr, flush=True)
        sys.exit(status)
    main()
