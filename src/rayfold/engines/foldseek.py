"""Run the Foldseek program (when one is installed) and read its output.

Pure Python: subprocess calls and text parsing, no Ray. Foldseek is a C++ program that is not
installable on every machine; `find_foldseek` returns None when there is none and the caller then
uses rayfold's built-in engine.

The first clustering pass is Foldseek's ``cluster`` with exactly the method's parameters
(`CLUSTER_ARGS`)::

    foldseek createdb STRUCTURES_DIR db --threads T -v 2
    foldseek cluster db clu tmp --threads T -v 2 <CLUSTER_ARGS>
    foldseek createtsv db db clu clu.tsv --threads T -v 2

`run_cluster` runs the three steps in a private temporary folder under `workdir`, removes it
afterwards, and returns ``(representative_id, member_id)`` pairs whose ids are the structure file
stems (the fragment ids), each fragment exactly once as a member.

How Foldseek names entries (createdb, ``src/strucclustutils/structcreatedb.cpp``):

* current versions: the file's base name without its extension (``x.pdb`` -> ``x``), without two
  when the name ends in ``.gz`` (``x.pdb.gz`` -> ``x``); ``.zst``/``.zstd`` are dropped before
  the extension is. Older versions (2022, e.g. the fold_tree test data) kept the whole file name
  (``O73683.pdb``, ``1tim.pdb.gz_A``).
* ``_MODEL_<n>`` is appended when a file holds several models, and ``_<chain>`` when it holds
  several chains (``--chain-name-mode 0``, the default; ``1`` always appends the chain).
* Only the first word of the header is the entry name (a PDB/mmCIF title follows a space).

`EntryNames` maps all of these back to the stems of the files in the structure folder.
"""

from __future__ import annotations

import gzip
import logging
import os
import shutil
import signal
import subprocess
import tempfile
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from rayfold.model.fragset import FragmentSet
from rayfold.model.unionfind import KeyedUnionFind

__all__ = [
    "ALIGNMENT_DB_COLUMNS",
    "CLUSTER_ARGS",
    "COMPRESSION_SUFFIXES",
    "BACKTRACE_COLUMNS",
    "EntryNames",
    "FoldseekDatabase",
    "FoldseekError",
    "Hit",
    "SEARCH_COLUMNS",
    "STRUCTURE_SUFFIXES",
    "cluster_argv",
    "convertalis_argv",
    "createdb_argv",
    "createtsv_argv",
    "find_foldseek",
    "foldseek_entry_name",
    "foldseek_version",
    "needs_backtrace",
    "normalize_cluster_pairs",
    "parse_cluster_tsv",
    "parse_search_tsv",
    "run_cluster",
    "run_search",
    "search_argv",
    "structure_search_argv",
    "structure_files",
    "structure_stem",
    "write_ca_pdb",
]

log = logging.getLogger(__name__)

# Exactly the method's parameters for `foldseek cluster` (flag, value pairs).
CLUSTER_ARGS = [
    "-c", "0.8",
    "--cov-mode", "0",
    "--tmscore-threshold", "0.7",
    "--tmscore-threshold-mode", "1",  # normalise the TM-score by the representative's length
    "--lddt-threshold", "0.6",
    "--max-seqs", "2000",
    "-e", "0.001",
    "--alignment-type", "2",  # 3Di+AA Gotoh-Smith-Waterman
    "--cluster-reassign", "1",
]  # fmt: skip

VERBOSITY = 2  # -v 2: errors and warnings (as in the method's command); info goes to stdout at 3

# Columns requested from `easy-search` for the representative audit. All exist in current Foldseek
# (checked against the real output in shared/data/foldseek/real_foldseek_outputs, commit d5b1d3d);
# `alntmscore` needs Foldseek >= 2, `qtmscore`/`ttmscore` are missing from release 5 ("Format code
# qtmscore does not exist", steineggerlab/foldseek#108); qcov/tcov/qlen/tlen/alnlen/bits/fident
# are MMseqs2 convertalis columns.
SEARCH_COLUMNS = (
    "query", "target", "evalue", "bits", "alntmscore", "qtmscore", "ttmscore", "lddt", "prob",
    "qcov", "tcov", "qlen", "tlen", "alnlen", "fident",
)  # fmt: skip

# `createtsv` of a raw alignment DB (`foldseek search ... -a`): MMseqs2's alignment-result record
# with the query name in front; starts/ends are 0-based here, the last column (the CIGAR-like
# backtrace) only exists with -a. In TM-align mode (--alignment-type 1) `bits` is 100*qTM and
# `evalue` is the hit-order TM-score ((qTM+tTM)/2 by default).
ALIGNMENT_DB_COLUMNS = (
    "query", "target", "bits", "fident", "evalue", "qstart", "qend", "qlen", "tstart", "tend", "tlen",
    "cigar",
)  # fmt: skip

STRUCTURE_SUFFIXES = (".pdb", ".ent", ".cif", ".mmcif", ".bcif", ".mmjson", ".json", ".fcz")
COMPRESSION_SUFFIXES = (".gz", ".zst", ".zstd")

_INT_COLUMNS = frozenset(
    {"alnlen", "qstart", "qend", "qlen", "tstart", "tend", "tlen", "mismatch", "gapopen", "nident", "raw"}
)
_FLOAT_COLUMNS = frozenset(
    {"evalue", "bits", "fident", "pident", "alntmscore", "qtmscore", "ttmscore", "lddt", "prob",
     "qcov", "tcov", "rmsd"}
)  # fmt: skip


class FoldseekError(RuntimeError):
    """A Foldseek command failed (or its output is unusable); says which command and why."""

    def __init__(self, message: str, argv: Sequence[str] | None = None, returncode: int | None = None,
                 stderr: str = "") -> None:  # fmt: skip
        super().__init__(message)
        self.argv = list(argv) if argv is not None else None
        self.returncode = returncode
        self.stderr = stderr


# ---------------------------------------------------------------------------------------------
# Finding the program


def _is_executable(path: Path) -> bool:
    return path.is_file() and os.access(path, os.X_OK)


def find_foldseek(explicit: str | os.PathLike[str] | None = None) -> str | None:
    """The Foldseek program to use: `explicit` (a path or a command name), else ``foldseek`` on $PATH.

    Returns an absolute path, or None when no `explicit` was given and none is on $PATH. An
    `explicit` one that is missing or not executable raises FoldseekError (a typo must not
    silently fall back to the built-in engine).
    """
    if explicit is not None and str(explicit) != "":
        p = Path(explicit).expanduser()
        if _is_executable(p):
            return str(p.resolve())
        found = shutil.which(str(explicit)) if os.sep not in str(explicit) else None
        if found:
            return str(Path(found).resolve())
        why = "is not executable" if p.exists() else "does not exist"
        raise FoldseekError(f"foldseek program {str(explicit)!r} {why}")
    found = shutil.which("foldseek")
    return str(Path(found).resolve()) if found else None


def _tail(text: str, n_lines: int = 25, n_chars: int = 4000) -> str:
    lines = text.strip().splitlines()[-n_lines:]
    return "\n".join(lines)[-n_chars:]


def _run(argv: Sequence[str], *, cwd: str | os.PathLike[str] | None = None,
         timeout: float | None = None) -> subprocess.CompletedProcess[str]:  # fmt: skip
    """Run one Foldseek command; stdout and stderr captured; FoldseekError on any failure.

    The command gets its own process group: on a timeout (or an interrupt) the whole group is
    killed, including the shell scripts and programs Foldseek's workflows start.
    """
    argv = [str(a) for a in argv]
    shown = " ".join(argv)
    log.debug("running %s", shown)
    try:
        proc = subprocess.Popen(
            argv, cwd=cwd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
            text=True, errors="replace", start_new_session=True,
        )  # fmt: skip
    except OSError as e:  # missing, not executable, bad cwd
        raise FoldseekError(f"cannot run {shown}: {e}", argv) from e
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        _kill_group(proc)
        out, err = proc.communicate()
        raise FoldseekError(f"timed out after {timeout} s: {shown}\n{_tail(err)}", argv, None, err) from None
    except BaseException:
        _kill_group(proc)
        proc.communicate()
        raise
    if proc.returncode != 0:
        # MMseqs2/Foldseek print errors on stderr; some workflow failures only show on stdout.
        detail = _tail(err) or _tail(out)
        raise FoldseekError(
            f"foldseek failed (exit code {proc.returncode}): {shown}\n{detail}", argv, proc.returncode, err
        )
    return subprocess.CompletedProcess(argv, proc.returncode, out, err)


def _kill_group(proc: subprocess.Popen[str]) -> None:
    try:
        os.killpg(proc.pid, signal.SIGKILL)  # our own child's group (start_new_session=True)
    except (ProcessLookupError, PermissionError):
        proc.kill()


def foldseek_version(binary: str, *, timeout: float | None = 60) -> str:
    """Foldseek's version string, e.g. ``10.941cd33`` (`foldseek version`)."""
    try:
        out = _run([binary, "version"], timeout=timeout).stdout.strip()
    except FoldseekError:
        out = ""
    if out:
        return out.splitlines()[-1].strip()
    # Very old builds: the usage text printed without arguments holds "... Version: X".
    try:
        proc = subprocess.run([binary], capture_output=True, text=True, errors="replace", timeout=timeout)
    except (OSError, subprocess.TimeoutExpired) as e:
        raise FoldseekError(f"cannot run {binary}: {e}", [binary]) from e
    for line in (proc.stdout + "\n" + proc.stderr).splitlines():
        if "version" in line.lower() and ":" in line:
            return line.split(":", 1)[1].strip()
    raise FoldseekError(f"cannot tell the version of {binary}", [binary, "version"])


# ---------------------------------------------------------------------------------------------
# Command lines


def _common(threads: int) -> list[str]:
    if int(threads) < 1:
        raise ValueError(f"threads must be >= 1, not {threads}")
    return ["--threads", str(int(threads)), "-v", str(VERBOSITY)]


def createdb_argv(binary: str, structures: str | os.PathLike[str], db: str | os.PathLike[str],
                  threads: int = 1) -> list[str]:  # fmt: skip
    """``foldseek createdb STRUCTURES DB``: STRUCTURES is a folder (read recursively) or a file."""
    return [str(binary), "createdb", str(structures), str(db), *_common(threads)]


def cluster_argv(binary: str, db: str | os.PathLike[str], clu_db: str | os.PathLike[str],
                 tmp: str | os.PathLike[str], threads: int = 1) -> list[str]:  # fmt: skip
    """``foldseek cluster DB CLU TMP`` with exactly the method's parameters (`CLUSTER_ARGS`)."""
    return [str(binary), "cluster", str(db), str(clu_db), str(tmp), *_common(threads), *CLUSTER_ARGS]


def createtsv_argv(binary: str, db: str | os.PathLike[str], clu_db: str | os.PathLike[str],
                   tsv: str | os.PathLike[str], threads: int = 1) -> list[str]:  # fmt: skip
    """``foldseek createtsv DB DB CLU TSV``: one ``representative<TAB>member`` line per member."""
    return [str(binary), "createtsv", str(db), str(db), str(clu_db), str(tsv), *_common(threads)]


def search_argv(binary: str, query: str | os.PathLike[str], target: str | os.PathLike[str],
                out: str | os.PathLike[str], tmp: str | os.PathLike[str], threads: int = 1, *,
                alignment_type: int = 1, exhaustive: bool = False, evalue: float = 10.0,
                columns: Sequence[str] = SEARCH_COLUMNS,
                extra_args: Sequence[str] = ()) -> list[str]:  # fmt: skip
    """``foldseek easy-search QUERY TARGET OUT TMP`` writing a headerless TSV of `columns`.

    `alignment_type`: 0 3Di, 1 TM-align (global), 2 3Di+AA (default of Foldseek and of rayfold's
    audits). `exhaustive` skips the prefilter (all pairs aligned; much slower). With
    alignment type 1 Foldseek's `evalue` column is a TM-score (the mean of qTM and tTM).
    """
    if alignment_type not in (0, 1, 2, 3):
        raise ValueError(f"alignment_type must be 0, 1, 2 or 3, not {alignment_type}")
    if not columns or any("," in c or not c for c in columns):
        raise ValueError(f"bad column list {columns!r}")
    argv = [
        str(binary), "easy-search", str(query), str(target), str(out), str(tmp), *_common(threads),
        "--alignment-type", str(int(alignment_type)),
        "-e", _fmt_number(evalue),
        "--format-mode", "0",
        "--format-output", ",".join(columns),
    ]  # fmt: skip
    if exhaustive:
        argv += ["--exhaustive-search", "1"]
    argv += [str(a) for a in extra_args]
    return argv


# --alignment-type by name
ALIGNMENT_TYPES = {"3di": 0, "tmalign": 1, "3di+aa": 2}


# Columns whose values need the alignment's backtrace (Foldseek's LocalParameters::getOutputFormat):
# easy-search turns backtraces on for them, a plain `search` must be asked (-a).
BACKTRACE_COLUMNS = frozenset(
    {"cigar", "qaln", "taln", "q3dialn", "t3dialn", "u", "t", "alntmscore", "qtmscore", "ttmscore", "rmsd",
     "lddt", "lddtfull", "prob"}
)  # fmt: skip


def needs_backtrace(columns: Sequence[str]) -> bool:
    return bool(BACKTRACE_COLUMNS.intersection(columns))


def structure_search_argv(binary: str, query_db: str, target_db: str, aln_db: str, tmp: str, threads: int = 1, *,
                          alignment_type: int = 1, exhaustive: bool = False, evalue: float = 10.0,
                          backtrace: bool = False) -> list[str]:  # fmt: skip
    """``foldseek search QUERY_DB TARGET_DB ALN TMP`` with easy-search's defaults (``-k 6``; plain
    `search` picks k itself) and the options `search_argv` gives easy-search."""
    if alignment_type not in (0, 1, 2, 3):
        raise ValueError(f"alignment_type must be 0, 1, 2 or 3, not {alignment_type}")
    argv = [
        str(binary), "search", query_db, target_db, aln_db, tmp, *_common(threads),
        "--alignment-type", str(int(alignment_type)),
        "-e", _fmt_number(evalue),
        "-k", "6",
    ]  # fmt: skip
    if exhaustive:
        argv += ["--exhaustive-search", "1"]
    if backtrace:
        argv += ["-a", "1"]
    return argv


def convertalis_argv(binary: str, query_db: str, target_db: str, aln_db: str, out: str, threads: int = 1,
                     columns: Sequence[str] = SEARCH_COLUMNS) -> list[str]:  # fmt: skip
    """``foldseek convertalis``: a search result as a headerless TSV of `columns`."""
    if not columns or any("," in c or not c for c in columns):
        raise ValueError(f"bad column list {columns!r}")
    return [str(binary), "convertalis", query_db, target_db, aln_db, out, *_common(threads),
            "--format-mode", "0", "--format-output", ",".join(columns)]


def _fmt_number(x: float) -> str:
    x = float(x)
    if x == float("inf"):
        return "inf"
    return repr(int(x)) if x.is_integer() else repr(x)


# ---------------------------------------------------------------------------------------------
# Entry names <-> structure file stems


def _strip_compression(name: str) -> str:
    low = name.lower()
    for s in COMPRESSION_SUFFIXES:
        if low.endswith(s) and len(name) > len(s):
            return name[: -len(s)]
    return name


def structure_stem(filename: str | os.PathLike[str]) -> str:
    """The id of a structure file: its base name without compression and structure suffix.

    ``AF-X-F1-model_v4.cif.gz`` -> ``AF-X-F1-model_v4``, ``frag_f1.pdb`` -> ``frag_f1``. Only
    known suffixes are removed, so ids may contain dots (``a.b_f1.pdb`` -> ``a.b_f1``).
    """
    name = _strip_compression(os.path.basename(os.fspath(filename)))
    low = name.lower()
    for s in STRUCTURE_SUFFIXES:
        if low.endswith(s) and len(name) > len(s):
            return name[: -len(s)]
    return name


def foldseek_entry_name(filename: str | os.PathLike[str]) -> str:
    """The entry name current Foldseek gives a single-chain, single-model file.

    Foldseek removes the last extension of the base name, and one more when the name ends in
    ``.gz`` (after dropping ``.zst``/``.zstd``): ``x.pdb`` -> ``x``, ``x.pdb.gz`` -> ``x``,
    ``x.y`` -> ``x``, ``x`` -> ``x``.
    """
    name = os.path.basename(os.fspath(filename))
    low = name.lower()
    for s in (".zstd", ".zst"):
        if low.endswith(s):
            name = name[: -len(s)]
            break
    if name.endswith(".gz"):
        name = _remove_extension(name)
    return _remove_extension(name)


def _remove_extension(name: str) -> str:
    i = name.rfind(".")
    return name if i < 0 else name[:i]


def structure_files(folder: str | os.PathLike[str]) -> list[Path]:
    """The structure files Foldseek's createdb would read in `folder` (recursively), sorted.

    Hidden files and files without a structure suffix are left out (Foldseek would try them and
    count them as "incorrect"; rayfold writes only ``<fragment_id>.pdb`` there).
    """
    root = Path(folder)
    if not root.is_dir():
        raise FoldseekError(f"structure folder {str(root)!r} does not exist or is not a folder")
    out = []
    for p in root.rglob("*"):
        if p.name.startswith(".") or not p.is_file():
            continue
        if _strip_compression(p.name).lower().endswith(STRUCTURE_SUFFIXES):
            out.append(p)
    return sorted(out)


class EntryNames:
    """Maps Foldseek entry names back to structure ids (file stems).

    Built from file names (or ids). A name resolves when it is, after dropping anything after the
    first whitespace, an id, a file name, or the name Foldseek gives the file; otherwise trailing
    ``_<suffix>`` parts (chain names, ``_MODEL_<n>``) are cut off one at a time, from the right,
    until what is left resolves (``1tim_A`` -> ``1tim``, ``1tim.pdb.gz_A`` -> ``1tim``,
    ``x_MODEL_2_B`` -> ``x``). Exact matches win, so an id that itself ends in ``_A`` stays itself.
    """

    def __init__(self, files_or_ids: Iterable[str | os.PathLike[str]]) -> None:
        # key -> (priority, id); lower priority wins: the id itself, the file name, the file name
        # without compression suffix, the name Foldseek gives the file. Ties between two ids make
        # the key ambiguous (None).
        best: dict[str, tuple[int, str | None]] = {}
        owners: dict[str, str] = {}
        for f in files_or_ids:
            base = os.path.basename(os.fspath(f))
            sid = structure_stem(base)
            if owners.setdefault(sid, base) != base:
                raise FoldseekError(f"two structure files have the id {sid!r}: {owners[sid]!r} and {base!r}")
            for prio, key in enumerate((sid, base, _strip_compression(base), foldseek_entry_name(base))):
                old = best.get(key)
                if old is None or prio < old[0]:
                    best[key] = (prio, sid)
                elif prio == old[0] and old[1] != sid:
                    best[key] = (prio, None)
        self.ids: set[str] = set(owners)
        self._map: dict[str, str | None] = {k: v for k, (_, v) in best.items()}

    @classmethod
    def from_folder(cls, folder: str | os.PathLike[str]) -> EntryNames:
        return cls(p.name for p in structure_files(folder))

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and self.get(name) is not None

    def __len__(self) -> int:
        return len(self.ids)

    def _lookup(self, name: str) -> tuple[str | None, str | None]:
        """(the key that matched, its id: None when ambiguous); (None, None) when nothing matched."""
        token = name.split(None, 1)[0] if name.strip() else ""
        cut = token
        while cut:
            if cut in self._map:
                return cut, self._map[cut]
            i = cut.rfind("_")
            cut = cut[:i] if i > 0 else ""
        return None, None

    def get(self, name: str) -> str | None:
        """The structure id of a Foldseek entry name; None when unknown or ambiguous."""
        return self._lookup(name)[1]

    def __call__(self, name: str) -> str:
        key, sid = self._lookup(name)
        if sid is not None:
            return sid
        if key is not None:
            raise FoldseekError(f"Foldseek entry {name!r} is ambiguous: several structure files are named {key!r}")
        raise FoldseekError(f"Foldseek entry {name!r} matches none of the {len(self.ids)} structure files")


def _resolver(ids: EntryNames | Iterable[str | os.PathLike[str]] | None) -> Any:
    if ids is None:
        return lambda name: structure_stem(name.split(None, 1)[0])  # best effort: drop extensions
    return ids if isinstance(ids, EntryNames) else EntryNames(ids)


# ---------------------------------------------------------------------------------------------
# Parsing


def _read_text(path_or_text: str | os.PathLike[str] | bytes) -> str:
    """File contents (plain or gzip) for a path; the text itself for a string holding a newline."""
    if isinstance(path_or_text, bytes):
        data = path_or_text
    elif isinstance(path_or_text, os.PathLike) or (
        isinstance(path_or_text, str) and "\n" not in path_or_text and "\t" not in path_or_text
        and path_or_text != "" and os.path.exists(path_or_text)
    ):  # fmt: skip
        data = Path(path_or_text).read_bytes()
    elif isinstance(path_or_text, str):
        if path_or_text and "\n" not in path_or_text and "\t" not in path_or_text:
            raise FileNotFoundError(f"no such file: {path_or_text!r}")
        return path_or_text
    else:
        raise TypeError(f"expected a path or text, not {type(path_or_text).__name__}")
    if data[:2] == b"\x1f\x8b":
        data = gzip.decompress(data)
    return data.decode("utf-8", errors="replace")


def _rows(text: str) -> Iterator[tuple[int, list[str]]]:
    for lineno, line in enumerate(text.splitlines(), 1):
        line = line.rstrip("\r")
        if not line.strip() or line.startswith("#"):
            continue
        yield lineno, line.split("\t")


def parse_cluster_tsv(path_or_text: str | os.PathLike[str] | bytes,
                      ids: EntryNames | Iterable[str | os.PathLike[str]] | None = None,
                      ) -> list[tuple[str, str]]:  # fmt: skip
    """``(representative, member)`` pairs of a cluster TSV from `foldseek createtsv`/`easy-cluster`.

    Names are mapped to structure ids: with `ids` (an `EntryNames`, or the structure file names or
    ids) through `EntryNames` (chain suffixes removed, unknown names raise FoldseekError); without,
    by dropping structure extensions only. Pairs keep the file order; exact repeats (several chains
    of one file) are dropped. See `normalize_cluster_pairs` for a table with each id once.
    """
    resolve = _resolver(ids)
    out: list[tuple[str, str]] = []
    seen: set[tuple[str, str]] = set()
    for lineno, fields in _rows(_read_text(path_or_text)):
        if len(fields) != 2:
            raise FoldseekError(f"cluster TSV line {lineno}: expected 2 tab-separated fields, got {len(fields)}")
        pair = (resolve(fields[0].strip()), resolve(fields[1].strip()))
        if pair not in seen:
            seen.add(pair)
            out.append(pair)
    return out


def normalize_cluster_pairs(pairs: Iterable[tuple[str, str]], ids: Iterable[str] | None = None,
                            ) -> list[tuple[str, str]]:  # fmt: skip
    """A cluster table with every id exactly once as a member, each representative its own.

    * A member listed under several representatives (several chains of one file) keeps the first.
    * A representative that is itself a member of another cluster is followed to that cluster's
      representative (a cycle resolves to its smallest id).
    * Ids in `ids` that Foldseek left out (it skips chains of <= 3 residues and chains with no
      standard amino acid) become singletons; a warning says how many.

    Returns pairs sorted by (representative, member).
    """
    rep_of: dict[str, str] = {}
    dropped = 0
    for rep, mem in pairs:
        if mem in rep_of:
            dropped += rep_of[mem] != rep
            continue
        rep_of[mem] = rep
    for rep in list(rep_of.values()):
        rep_of.setdefault(rep, rep)
    if dropped:
        log.warning("%d members were listed under more than one representative; kept the first", dropped)

    # Each id points at one representative, so a connected group holds one self-representing id,
    # or (in a broken table) one cycle: its smallest id represents the group then.
    groups = KeyedUnionFind(rep_of)
    for member, rep in rep_of.items():
        groups.union(member, rep)
    table: dict[str, str] = {}
    for group in groups.groups().values():
        own = [x for x in group if rep_of[x] == x]
        representative = own[0] if len(own) == 1 else min(group)
        table.update({x: representative for x in group})
    if ids is not None:
        missing = [i for i in ids if i not in table]
        if missing:
            log.warning(
                "Foldseek left out %d of the structures (e.g. %s); they are singletons",
                len(missing), ", ".join(sorted(missing)[:5]),
            )  # fmt: skip
            for i in missing:
                table[i] = i
    return sorted((r, m) for m, r in table.items())


@dataclass(frozen=True)
class Hit:
    """One row of a Foldseek search result; a column that was not requested is None.

    `qstart`/`qend`/`tstart`/`tend` are as written (1-based in easy-search/convertalis output,
    0-based in a raw alignment DB from createtsv). With ``--alignment-type 1`` `evalue` holds a
    TM-score and `bits` 100 x qTM. Foldseek's TM-scores are approximate (``--exact-tmscore 0``) and
    `alntmscore` can exceed 1. Columns without a field here are kept in `extra` as text.
    """

    query: str
    target: str
    evalue: float | None = None
    bits: float | None = None
    alntmscore: float | None = None
    qtmscore: float | None = None
    ttmscore: float | None = None
    lddt: float | None = None
    prob: float | None = None
    qcov: float | None = None
    tcov: float | None = None
    fident: float | None = None
    pident: float | None = None
    rmsd: float | None = None
    alnlen: int | None = None
    qstart: int | None = None
    qend: int | None = None
    qlen: int | None = None
    tstart: int | None = None
    tend: int | None = None
    tlen: int | None = None
    mismatch: int | None = None
    gapopen: int | None = None
    nident: int | None = None
    extra: Mapping[str, str] = field(default_factory=dict, compare=False, hash=False)

    @property
    def min_tm(self) -> float | None:
        """min(qTM, tTM): the TM-score normalised by the longer of the two chains."""
        if self.qtmscore is None or self.ttmscore is None:
            return None
        return min(self.qtmscore, self.ttmscore)


_HIT_FIELDS = frozenset(f for f in Hit.__dataclass_fields__ if f != "extra")


def _columns(columns: str | Sequence[str]) -> tuple[str, ...]:
    cols = tuple(c.strip() for c in (columns.split(",") if isinstance(columns, str) else columns))
    if not cols or "" in cols:
        raise ValueError(f"bad column list {columns!r}")
    if len(set(cols)) != len(cols):
        raise ValueError(f"repeated column in {columns!r}")
    if "query" not in cols or "target" not in cols:
        raise ValueError("the columns must include query and target")
    return cols


def _value(col: str, text: str, lineno: int) -> Any:
    try:
        if col in _INT_COLUMNS:
            return int(text)
        if col in _FLOAT_COLUMNS:
            return float(text)  # handles 1.004E+00, inf, nan
    except ValueError:
        raise FoldseekError(f"search TSV line {lineno}: column {col} is not a number: {text!r}") from None
    return text


def parse_search_tsv(path_or_text: str | os.PathLike[str] | bytes,
                     columns: str | Sequence[str] = SEARCH_COLUMNS,
                     ids: EntryNames | Iterable[str | os.PathLike[str]] | None = None,
                     ) -> list[Hit]:  # fmt: skip
    """Hits of a tab-separated Foldseek search result with the given `columns` (in order).

    Plain or gzip files, or the text itself. A header line equal to the column names (format
    mode 4) is skipped. Query and target names are mapped to structure ids as in
    `parse_cluster_tsv`. For the raw alignment-DB form (`createtsv` of `search -a`) pass
    `ALIGNMENT_DB_COLUMNS` (or its first 11 without -a).
    """
    cols = _columns(columns)
    resolve = _resolver(ids)
    hits: list[Hit] = []
    for lineno, fields in _rows(_read_text(path_or_text)):
        if not hits and tuple(f.strip() for f in fields) == cols:
            continue  # header (--format-mode 4)
        if len(fields) != len(cols):
            raise FoldseekError(
                f"search TSV line {lineno}: {len(fields)} fields for {len(cols)} columns ({','.join(cols)})"
            )  # fmt: skip
        known: dict[str, Any] = {}
        extra: dict[str, str] = {}
        for col, text in zip(cols, fields, strict=True):
            if col in ("query", "target"):
                known[col] = resolve(text.strip())
            elif col in _HIT_FIELDS:
                known[col] = _value(col, text.strip(), lineno)
            else:
                extra[col] = text
        hits.append(Hit(**known, extra=extra))
    return hits


# ---------------------------------------------------------------------------------------------
# Running


def _run_dir(workdir: str | os.PathLike[str], prefix: str) -> Path:
    base = Path(workdir)
    base.mkdir(parents=True, exist_ok=True)
    return Path(tempfile.mkdtemp(prefix=prefix, dir=base))


def _require(path: Path, argv: Sequence[str]) -> None:
    if not path.exists():
        raise FoldseekError(f"foldseek wrote no {path.name}: {' '.join(map(str, argv))}", argv)


class FoldseekDatabase:
    """One `foldseek createdb` of a structure folder, reused by every stage of a clustering.

    The first pass clusters it (or a subset); each search runs on subsets made with
    `foldseek createsubdb` (which links the parent's data, headers and lookup: no structure is
    parsed twice). One stage at a time: the commands of each call run in the database's folder
    under fixed names and are removed when it returns. `close` removes the folder.

    A search is ``foldseek search`` + ``convertalis`` with easy-search's own defaults
    (``-k 6``, backtraces only where a column needs them), so its hits are easy-search's.
    """

    def __init__(self, binary: str, folder: Path, names: EntryNames, threads: int = 1,
                 timeout: float | None = None) -> None:  # fmt: skip
        self.binary, self.folder, self.names = binary, folder, names
        self.threads, self.timeout = threads, timeout
        self._keys: dict[str, int] | None = None

    @classmethod
    def create(cls, binary: str, structures_dir: str | os.PathLike[str], workdir: str | os.PathLike[str],
               threads: int = 1, *, timeout: float | None = None) -> FoldseekDatabase:  # fmt: skip
        """createdb of every structure file in `structures_dir`, in a new folder under `workdir`
        (the structure files are no longer needed afterwards)."""
        names = EntryNames.from_folder(structures_dir)
        if not len(names):
            raise FoldseekError(f"no structure files in {str(structures_dir)!r}")
        db = cls(binary, _run_dir(workdir, "foldseek-db-"), names, threads, timeout)
        try:
            # Relative names inside the folder: Foldseek's workflow shell scripts then never see
            # the (possibly long or odd) path of `workdir`.
            db._step(createdb_argv(binary, Path(structures_dir).resolve(), "db", threads), "db.index")
        except BaseException:
            db.close()
            raise
        return db

    def __enter__(self) -> FoldseekDatabase:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        shutil.rmtree(self.folder, ignore_errors=True)

    def _step(self, argv: Sequence[str], product: str) -> None:
        _run(argv, cwd=self.folder, timeout=self.timeout)
        _require(self.folder / product, argv)

    def _clear(self, *names: str) -> None:
        for name in names:
            for p in self.folder.glob(f"{name}*"):
                shutil.rmtree(p) if p.is_dir() and not p.is_symlink() else p.unlink()

    def keys(self) -> dict[str, int]:
        """structure id -> database key, from createdb's lookup file."""
        if self._keys is None:
            lookup = self.folder / "db.lookup"
            if not lookup.exists():
                raise FoldseekError("foldseek createdb wrote no db.lookup: cannot take subsets")
            keys: dict[str, int] = {}
            for lineno, fields in _rows(lookup.read_text()):
                if len(fields) < 2:
                    raise FoldseekError(f"db.lookup line {lineno}: expected key and name, got {fields!r}")
                keys.setdefault(self.names(fields[1].strip()), int(fields[0]))
            self._keys = keys
        return self._keys

    def _subset(self, ids: Iterable[str] | None, name: str) -> str:
        """The database of `ids` (all of it for None) under `name`; the name to pass to Foldseek."""
        if ids is None:
            return "db"
        keys = self.keys()
        missing = sorted({i for i in ids if i not in keys})
        if missing:
            raise FoldseekError(f"{len(missing)} structures are not in the Foldseek database, e.g. {missing[:3]}")
        wanted = sorted({keys[i] for i in ids})
        (self.folder / f"{name}.list").write_text("".join(f"{k}\n" for k in wanted))
        argv = [self.binary, "createsubdb", f"{name}.list", "db", name, "--id-mode", "0", "-v", str(VERBOSITY)]
        self._step(argv, f"{name}.index")
        return name

    def cluster(self, ids: Iterable[str] | None = None, *,
                keep_tsv: str | os.PathLike[str] | None = None) -> list[tuple[str, str]]:  # fmt: skip
        """`foldseek cluster` (`CLUSTER_ARGS`) of `ids` (default: all): ``(representative, member)``
        pairs, each structure exactly once as a member (see `normalize_cluster_pairs`). `keep_tsv`:
        where to copy Foldseek's cluster TSV."""
        try:
            db = self._subset(ids, "members")
            (self.folder / "tmp").mkdir()
            self._step(cluster_argv(self.binary, db, "clu", "tmp", self.threads), "clu.index")
            self._step(createtsv_argv(self.binary, db, "clu", "clu.tsv", self.threads), "clu.tsv")
            if keep_tsv is not None:
                Path(keep_tsv).parent.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(self.folder / "clu.tsv", keep_tsv)
            pairs = parse_cluster_tsv(self.folder / "clu.tsv", self.names)
            everyone = sorted(self.names.ids) if ids is None else sorted(set(ids))
            return normalize_cluster_pairs(pairs, everyone)
        finally:
            self._clear("members", "clu", "tmp")

    def search(self, query_ids: Iterable[str] | None = None, target_ids: Iterable[str] | None = None, *,
               alignment_type: int = 1, exhaustive: bool = False, evalue: float = 10.0,
               columns: Sequence[str] = SEARCH_COLUMNS) -> list[Hit]:  # fmt: skip
        """Hits of `query_ids` against `target_ids` (default: all; the same set is one subset)."""
        try:
            query_ids = None if query_ids is None else sorted(set(query_ids))
            target_ids = None if target_ids is None else sorted(set(target_ids))
            query = self._subset(query_ids, "queries")
            target = query if target_ids == query_ids else self._subset(target_ids, "targets")
            (self.folder / "tmp").mkdir()
            self._step(structure_search_argv(self.binary, query, target, "aln", "tmp", self.threads,
                                             alignment_type=alignment_type, exhaustive=exhaustive, evalue=evalue,
                                             backtrace=needs_backtrace(columns)), "aln.index")
            self._step(convertalis_argv(self.binary, query, target, "aln", "hits.tsv", self.threads, columns),
                       "hits.tsv")
            return parse_search_tsv(self.folder / "hits.tsv", columns, self.names)
        finally:
            self._clear("queries", "targets", "aln", "tmp", "hits.tsv")


def run_cluster(binary: str, structures_dir: str | os.PathLike[str], workdir: str | os.PathLike[str],
                threads: int = 1, *, keep_tsv: str | os.PathLike[str] | None = None,
                timeout: float | None = None) -> list[tuple[str, str]]:  # fmt: skip
    """Cluster the structures in `structures_dir` with Foldseek; ``(representative, member)`` pairs.

    createdb -> cluster (`CLUSTER_ARGS`) -> createtsv in a new temporary folder under `workdir`,
    removed afterwards (also on failure). Ids are the structure file stems (fragment ids); every
    structure file appears exactly once as a member (see `normalize_cluster_pairs`). `keep_tsv`
    copies Foldseek's cluster TSV there. Raises FoldseekError with the command and the tail of
    its stderr when a step fails.
    """
    with FoldseekDatabase.create(binary, structures_dir, workdir, threads, timeout=timeout) as db:
        return db.cluster(keep_tsv=keep_tsv)


def run_search(binary: str, query_dir: str | os.PathLike[str], target_dir: str | os.PathLike[str],
               workdir: str | os.PathLike[str], threads: int = 1, *, alignment_type: int = 1,
               exhaustive: bool = False, evalue: float = 10.0,
               columns: Sequence[str] = SEARCH_COLUMNS, extra_args: Sequence[str] = (),
               timeout: float | None = None) -> list[Hit]:  # fmt: skip
    """`foldseek easy-search` of the structures in `query_dir` against those in `target_dir`.

    For the representative audit: representatives against representatives (the same folder twice
    is fine), TM-align alignment (`alignment_type=1`). Hits carry structure ids (file stems).
    Runs in a temporary folder under `workdir`, removed afterwards.
    """
    files = {p.name for p in structure_files(query_dir)} | {p.name for p in structure_files(target_dir)}
    names = EntryNames(sorted(files))
    if not len(names):
        raise FoldseekError(f"no structure files in {str(query_dir)!r} / {str(target_dir)!r}")
    run = _run_dir(workdir, "foldseek-search-")
    try:
        (run / "tmp").mkdir()
        argv = search_argv(
            binary, Path(query_dir).resolve(), Path(target_dir).resolve(), "hits.tsv", "tmp", threads,
            alignment_type=alignment_type, exhaustive=exhaustive, evalue=evalue, columns=columns,
            extra_args=extra_args,
        )  # fmt: skip
        _run(argv, cwd=run, timeout=timeout)
        _require(run / "hits.tsv", argv)
        return parse_search_tsv(run / "hits.tsv", columns, names)
    finally:
        shutil.rmtree(run, ignore_errors=True)


def write_ca_pdb(coords: np.ndarray, sequence: str, chain_id: str = "A") -> bytes:
    """A C-alpha-only PDB of one fragment, the form Foldseek rebuilds a backbone for (PULCHRA).

    Only CA atoms (with N or C present Foldseek would not rebuild, and its 3Di would be wrong) and
    real residue names (an all-UNK chain is dropped as not protein).
    """
    import gemmi

    lines = []
    for k, ((x, y, z), letter) in enumerate(zip(np.asarray(coords, dtype=np.float64), sequence), start=1):
        name = gemmi.expand_one_letter(letter, gemmi.ResidueKind.AA) or "UNK"
        lines.append(
            f"ATOM  {k:5d}  CA  {name:3s} {chain_id:1s}{k:4d}    {x:8.3f}{y:8.3f}{z:8.3f}  1.00  0.00           C"
        )
    lines += ["TER", "END", ""]
    return "\n".join(lines).encode()


def write_ca_structures(fragments: FragmentSet, folder: Path) -> None:
    """One C-alpha-only PDB file per fragment in `folder` (Foldseek rebuilds the backbone)."""
    folder.mkdir(parents=True, exist_ok=True)
    for fid, coords, sequence in zip(fragments.ids, fragments.coords, fragments.sequences):
        (folder / f"{fid}.pdb").write_bytes(write_ca_pdb(coords, sequence))
