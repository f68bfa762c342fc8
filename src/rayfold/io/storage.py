"""Input sources and small storage helpers over fsspec: local paths, ``file://`` and ``s3://``.

* `list_inputs` expands folders (recursively), files and globs into `InputRef`s: structure files
  (``.cif .mmcif .pdb .ent``, each optionally ``.gz``) and tar shards (``.tar .tar.gz .tgz``).
  Names found by walking a folder or matching a glob are filtered: other extensions, hidden entries
  (names starting with ``.``) and anything that is not a regular file (pipes, sockets, devices)
  are skipped silently. A file named exactly (path or URI, no glob) is kept whatever its
  extension: its content decides (an unreadable one gives an ``unknown_format`` error row), as the
  user asked for it by name. A spec that names an existing path is never a glob, even with
  ``*?[`` in it (``model[1].pdb.gz``); only a spec that names nothing is matched as a pattern.
* `iter_structure_bytes` reads a plain file in one go, or streams a tar shard member by member in
  memory (never extracting to disk, never following links: link, device and ``..``/absolute
  members become ``unsafe_tar_member`` items); every problem becomes an `InputError` item, not an
  exception. Local files are opened non-blocking and must be regular files, so a pipe that
  replaced a listed file cannot hang a worker.
* S3 settings come from the usual AWS variables (``AWS_ENDPOINT_URL[_S3]``, ``AWS_PROFILE``,
  ``AWS_ACCESS_KEY_ID`` ...) unless `storage_options` say otherwise. Secrets are never logged or put
  into error messages.
"""

from __future__ import annotations

import glob as _glob
import gzip
import io
import json
import os
import stat
import tarfile
import threading
import uuid
import zlib
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, BinaryIO

import fsspec
import pyarrow as pa
import pyarrow.parquet as pq
from fsspec.implementations.local import LocalFileSystem

from rayfold.model.errors import InputError

__all__ = [
    "STRUCTURE_EXTENSIONS",
    "TAR_EXTENSIONS",
    "InputRef",
    "canonical_uri",
    "exists",
    "filesystem_for",
    "is_local",
    "is_structure_name",
    "is_tar_name",
    "iter_structure_bytes",
    "join_uri",
    "list_files",
    "list_inputs",
    "printable_uri",
    "read_bytes",
    "parquet_parts",
    "read_parquet_dataset",
    "read_parquet_part",
    "write_bytes",
    "write_parquet",
]

STRUCTURE_EXTENSIONS = (".cif", ".mmcif", ".pdb", ".ent")
TAR_EXTENSIONS = (".tar", ".tar.gz", ".tgz")
DEFAULT_MAX_MEMBER_BYTES = 256 * 2**20
# Bytes a .tar.gz shard may decompress between two yielded items. Memory is bounded by
# max_member_bytes anyway; this bounds the CPU time a gzip bomb (huge skipped members) can take.
DEFAULT_MAX_DECOMPRESSED_BYTES = 512 * 2**20


@dataclass(frozen=True)
class InputRef:
    """One listed input: a structure file or a tar shard."""

    uri: str  # canonical: local paths absolute ('file://' stripped); s3://bucket/key
    size: int | None
    mtime_or_etag: str | None
    is_tar: bool


# --------------------------------------------------------------------------------------------
# names and URIs


def basename(name: str) -> str:
    """The last component of a path or URI (a trailing '/' ignored)."""
    return name.rstrip("/").rsplit("/", 1)[-1]


def is_tar_name(name: str) -> bool:
    """True for .tar, .tar.gz and .tgz names."""
    return basename(name).lower().endswith(TAR_EXTENSIONS)


def is_structure_name(name: str) -> bool:
    """True for .cif/.mmcif/.pdb/.ent names, optionally + .gz."""
    low = basename(name).lower()
    low = low.removesuffix(".gz")
    return low.endswith(STRUCTURE_EXTENSIONS)


def _protocol(uri: str) -> str:
    if "://" not in uri:
        return "file"
    proto = uri.split("://", 1)[0].lower()
    return "s3" if proto in ("s3", "s3a") else proto


def is_local(uri: str) -> bool:
    """True for plain paths and file:// URIs."""
    return _protocol(uri) in ("file", "local")


def _local_path(uri: str) -> str:
    if uri.startswith("file://"):
        uri = uri[len("file://") :]
    elif uri.startswith("local://"):
        uri = uri[len("local://") :]
    return os.path.abspath(os.path.expanduser(uri))


def canonical_uri(uri: str | os.PathLike[str]) -> str:
    """Absolute local path ('file://' stripped) or the remote URI with s3a:// spelled s3://."""
    uri = os.fspath(uri)
    if is_local(uri):
        return _local_path(uri)
    if uri.lower().startswith("s3a://"):
        return "s3://" + uri[6:]
    return uri


def printable_uri(uri: str) -> str:
    """`uri` as valid UTF-8 for tables and messages: bytes of a non-UTF-8 local file or tar member
    name (kept by Python as surrogate escapes, which Arrow refuses) become U+FFFD."""
    try:
        uri.encode("utf-8")
        return uri
    except UnicodeEncodeError:
        return uri.encode("utf-8", "surrogateescape").decode("utf-8", "replace")


def join_uri(base: str, *parts: str) -> str:
    """Join path parts onto a local path or a URI (always '/' for URIs)."""
    clean = [p.strip("/") for p in parts if p and p.strip("/")]
    if is_local(base) and not base.startswith(("file://", "local://")):
        return os.path.join(base, *clean) if clean else base
    if not clean:
        return base
    return base.rstrip("/") + "/" + "/".join(clean)


# --------------------------------------------------------------------------------------------
# filesystems

_FS_CACHE: dict[tuple[Any, ...], tuple[int, fsspec.AbstractFileSystem]] = {}
_FS_LOCK = threading.Lock()
_AWS_ENV = (
    "AWS_ENDPOINT_URL",
    "AWS_ENDPOINT_URL_S3",
    "AWS_PROFILE",
    "AWS_ACCESS_KEY_ID",
    "AWS_SECRET_ACCESS_KEY",
    "AWS_SESSION_TOKEN",
    "AWS_DEFAULT_REGION",
    "AWS_REGION",
)


def _s3_options(storage_options: dict[str, Any] | None) -> dict[str, Any]:
    opts = dict(storage_options or {})
    client_kwargs = opts.get("client_kwargs") or {}
    if "endpoint_url" not in opts and "endpoint_url" not in client_kwargs:
        endpoint = os.environ.get("AWS_ENDPOINT_URL_S3") or os.environ.get("AWS_ENDPOINT_URL")
        if endpoint:
            opts["endpoint_url"] = endpoint
    if (
        "profile" not in opts
        and "key" not in opts
        and os.environ.get("AWS_PROFILE")
        and not os.environ.get("AWS_ACCESS_KEY_ID")
    ):
        opts["profile"] = os.environ["AWS_PROFILE"]
    region = os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION")
    if region and "region_name" not in client_kwargs:
        opts["client_kwargs"] = {**client_kwargs, "region_name": region}
    # listings must reflect the bucket now, not what this process saw earlier
    opts.setdefault("use_listings_cache", False)
    return opts


def filesystem_for(
    uri: str, storage_options: dict[str, Any] | None = None
) -> tuple[fsspec.AbstractFileSystem, str]:
    """(filesystem, path inside it) for a local path or URI.

    Filesystems are built with ``skip_instance_cache=True`` and kept in a small per-process cache
    keyed by protocol, options and the AWS environment, so changed settings give a fresh one.
    """
    proto = _protocol(uri)
    if proto in ("file", "local"):
        return LocalFileSystem(), _local_path(uri)
    opts = _s3_options(storage_options) if proto == "s3" else dict(storage_options or {})
    key = (
        proto,
        json.dumps(opts, sort_keys=True, default=repr),
        tuple(os.environ.get(k) for k in _AWS_ENV),
    )
    pid = os.getpid()
    with _FS_LOCK:
        hit = _FS_CACHE.get(key)
        if hit is not None and hit[0] == pid:
            fs = hit[1]
        else:
            fs = fsspec.filesystem(proto, skip_instance_cache=True, **opts)
            if len(_FS_CACHE) >= 16:
                _FS_CACHE.clear()
            _FS_CACHE[key] = (pid, fs)
    return fs, fs._strip_protocol(uri)


def _full_uri(path: str, proto: str) -> str:
    return f"{proto}://{path.lstrip('/')}" if proto != "file" else path


def _error_text(exc: BaseException) -> str:
    """Short message for an error without anything that could carry credentials."""
    msg = str(exc).splitlines()[0] if str(exc) else ""
    return f"{type(exc).__name__}: {msg[:200]}" if msg else type(exc).__name__


# --------------------------------------------------------------------------------------------
# listing


def _wanted(name: str) -> bool:
    return is_structure_name(name) or is_tar_name(name)


def _local_ref(path: str) -> InputRef | None:
    """InputRef of a regular file (symlinks followed); None for anything else or a vanished path."""
    try:
        st = os.stat(path)
    except OSError:
        return None
    if not stat.S_ISREG(st.st_mode):
        return None  # a pipe would block the reader forever; devices and sockets are no inputs
    return InputRef(path, st.st_size, str(st.st_mtime_ns), is_tar_name(path))


def _walk_local(root: str) -> list[InputRef]:
    out: list[InputRef] = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        for f in sorted(filenames):
            if f.startswith(".") or not _wanted(f):
                continue
            ref = _local_ref(os.path.join(dirpath, f))
            if ref is not None:
                out.append(ref)
    return out


def _expand_local(spec: str) -> tuple[list[InputRef], bool]:
    """(refs, whether the spec named anything at all).

    A path that exists is taken literally even when it holds glob characters (``model[1].pdb.gz``):
    the user named that file, and as a pattern it would match something else or nothing.
    """
    path = _local_path(spec)
    if _glob.has_magic(path) and not os.path.lexists(path):
        matches = sorted(_glob.glob(path, recursive=True))
        refs: list[InputRef] = []
        for m in matches:
            if os.path.isdir(m):
                refs.extend(_walk_local(m))
            elif os.path.isfile(m) and _wanted(m):
                ref = _local_ref(os.path.abspath(m))
                if ref is not None:
                    refs.append(ref)
        return refs, bool(matches)
    if os.path.isdir(path):
        return _walk_local(path), True
    if os.path.isfile(path):
        ref = _local_ref(path)  # an explicitly named file is kept whatever its extension
        return ([ref] if ref else []), True
    if os.path.exists(path):
        raise InputError("not_a_file", f"{spec}: not a regular file or folder (a pipe, socket or device)")
    return [], False


def _remote_ref(fs: fsspec.AbstractFileSystem, proto: str, path: str, info: dict[str, Any]) -> InputRef:
    tag = info.get("ETag") or info.get("etag")
    if tag is None:
        tag = info.get("LastModified") or info.get("mtime") or info.get("last_modified")
    size = info.get("size")
    return InputRef(
        uri=_full_uri(path, proto),
        size=int(size) if size is not None else None,
        mtime_or_etag=str(tag).strip('"') if tag is not None else None,
        is_tar=is_tar_name(path),
    )


def _expand_remote(spec: str, storage_options: dict[str, Any] | None) -> tuple[list[InputRef], bool]:
    proto = _protocol(spec)
    fs, path = filesystem_for(spec, storage_options)
    found: dict[str, dict[str, Any]] = {}
    named = False
    explicit_file = False
    try:
        try:
            info = fs.info(path)  # an existing key or prefix is literal, as for local paths
        except FileNotFoundError:
            info = None
        if info is None and _glob.has_magic(path):
            matches = fs.glob(path, detail=True)
            named = bool(matches)
            for p, match in matches.items():
                if match.get("type") == "directory":
                    found.update(fs.find(p, detail=True))
                else:
                    found[p] = match
        elif info is not None:
            named = True
            if info.get("type") == "directory":
                found.update(fs.find(path, detail=True))
            else:
                found[path] = info
                explicit_file = True
    except FileNotFoundError:
        return [], False
    except (OSError, ValueError) as exc:
        raise InputError("read_error", f"{spec}: cannot list ({_error_text(exc)})") from None
    refs = []
    for p, info in found.items():
        if info.get("type", "file") != "file":
            continue
        if not explicit_file and (basename(p).startswith(".") or not _wanted(p)):
            continue
        refs.append(_remote_ref(fs, proto, p, info))
    return refs, named


def list_inputs(
    specs: Sequence[str | os.PathLike[str]], *, storage_options: dict[str, Any] | None = None
) -> list[InputRef]:
    """Expand folders, files, globs and s3:// prefixes into sorted, de-duplicated inputs.

    Raises InputError('not_found') for a spec that yields no structure file or tar shard.
    """
    if isinstance(specs, (str, os.PathLike)):
        specs = [specs]
    refs: dict[str, InputRef] = {}
    for raw in specs:
        spec = os.fspath(raw)
        if is_local(spec):
            found, named = _expand_local(spec)
        else:
            found, named = _expand_remote(spec, storage_options)
        if not found:
            why = "matches no structure files or tar shards" if named else "no such file, folder or prefix"
            raise InputError("not_found", f"{spec}: {why}")
        for r in found:
            refs.setdefault(r.uri, r)
    return [refs[u] for u in sorted(refs)]


# --------------------------------------------------------------------------------------------
# reading


class _CappedReader:
    """File-like wrapper that raises InputError once more than `cap` bytes were read since reset()."""

    def __init__(self, raw: io.BufferedIOBase, cap: int, what: str) -> None:
        self._raw = raw
        self._cap = cap
        self._what = what
        self.count = 0

    def reset(self) -> None:
        self.count = 0

    def read(self, size: int = -1) -> bytes:
        data = self._raw.read(size)
        self.count += len(data)
        if self.count > self._cap:
            raise InputError(
                "decompressed_too_large",
                f"{self._what}: more than {self._cap} bytes decompressed for one member (limit: "
                "ReadConfig.max_decompressed_bytes; a gzip bomb?); the rest of the shard is not read",
            )
        return data


def _member_is_unsafe(m: tarfile.TarInfo) -> str | None:
    name = m.name.replace("\\", "/")
    if name.startswith("/") or (len(name) > 1 and name[1] == ":"):
        return "absolute member name (never extracted or followed)"
    if ".." in name.split("/"):
        return "member name with '..' (never extracted or followed)"
    if m.issym() or m.islnk():
        return ("symbolic" if m.issym() else "hard") + f" link to {m.linkname!r} (links are never followed)"
    if not m.isreg():
        return "not a regular file (device, fifo or other special member)"
    return None


def _open_local_regular(path: str) -> BinaryIO:
    """Open a local regular file for reading; a pipe, socket or device is refused without blocking."""
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise InputError("not_a_file", f"{os.path.basename(path)!r} is not a regular file (pipe, socket or device)")
        os.set_blocking(fd, True)
        return os.fdopen(fd, "rb")
    except BaseException:
        os.close(fd)
        raise


def _open_binary(ref_uri: str, storage_options: dict[str, Any] | None) -> BinaryIO:
    if is_local(ref_uri):
        return _open_local_regular(_local_path(ref_uri))
    fs, path = filesystem_for(ref_uri, storage_options)
    return fs.open(path, "rb")


def _read_plain(ref: InputRef, storage_options: dict[str, Any] | None, max_bytes: int) -> bytes:
    if ref.size is not None and ref.size > max_bytes:
        raise InputError("file_too_large", f"{ref.size} bytes > limit {max_bytes} (ReadConfig.max_file_bytes)")
    if not is_local(ref.uri) and ref.size is not None:
        fs, path = filesystem_for(ref.uri, storage_options)
        data = fs.cat_file(path)
    else:
        with _open_binary(ref.uri, storage_options) as fh:
            data = fh.read(max_bytes + 1)
    if len(data) > max_bytes:
        raise InputError("file_too_large", f"more than {max_bytes} bytes (limit: ReadConfig.max_file_bytes)")
    return data


def _read_failure(exc: BaseException, what: str) -> InputError:
    if isinstance(exc, InputError):
        return exc
    if isinstance(exc, FileNotFoundError):
        return InputError(
            "not_found", f"{what} no longer exists (deleted or moved after it was listed): {_error_text(exc)}"
        )
    if isinstance(exc, EOFError):
        return InputError("truncated_tar", f"{what}: data ends early ({_error_text(exc)})")
    if isinstance(exc, (gzip.BadGzipFile, zlib.error)):
        return InputError("corrupt_gzip", f"{what}: {_error_text(exc)}")
    if isinstance(exc, tarfile.TarError):
        return InputError("corrupt_tar", f"{what}: {_error_text(exc)}")
    return InputError("read_error", f"{what}: {_error_text(exc)}")


def _iter_tar(
    ref: InputRef,
    storage_options: dict[str, Any] | None,
    max_member_bytes: int,
    max_decompressed_bytes: int,
) -> Iterator[tuple[str, bytes | InputError]]:
    n_items = 0
    try:
        with _open_binary(ref.uri, storage_options) as raw:
            magic = raw.read(6)
            raw.seek(0)
            if magic.startswith((b"BZh", b"\xfd7zXZ", b"\x28\xb5\x2f\xfd")):
                raise InputError("unsupported_compression", "tar shards may be plain or gzip-compressed only")
            stream: Any = raw
            capped: _CappedReader | None = None
            if magic.startswith(b"\x1f\x8b"):
                capped = _CappedReader(gzip.GzipFile(fileobj=raw, mode="rb"), max_decompressed_bytes, "tar.gz shard")
                stream = capped
            with tarfile.open(fileobj=stream, mode="r|") as tf:
                for m in tf:
                    if capped is not None:
                        capped.reset()
                    if m.isdir() or not is_structure_name(m.name):
                        continue
                    member_uri = f"{ref.uri}#{m.name}"
                    n_items += 1
                    why = _member_is_unsafe(m)
                    if why is not None:
                        yield member_uri, InputError("unsafe_tar_member", f"{m.name!r}: {why}; skipped")
                        continue
                    if m.size > max_member_bytes:
                        yield member_uri, InputError(
                            "member_too_large",
                            f"{m.name!r}: {m.size} bytes > limit {max_member_bytes} (ReadConfig.max_file_bytes)",
                        )
                        continue
                    fobj = tf.extractfile(m)
                    data = fobj.read() if fobj is not None else b""
                    if len(data) != m.size:
                        raise EOFError(f"member {m.name!r} is cut short")
                    yield member_uri, data
    except (InputError, OSError, EOFError, tarfile.TarError, zlib.error, ValueError) as exc:
        yield ref.uri, _read_failure(exc, "tar shard")
        return
    if n_items == 0:
        yield ref.uri, InputError("no_structures_in_tar", "tar shard holds no structure files")


def iter_structure_bytes(
    ref: InputRef | str,
    *,
    storage_options: dict[str, Any] | None = None,
    max_member_bytes: int = DEFAULT_MAX_MEMBER_BYTES,
    max_decompressed_bytes: int = DEFAULT_MAX_DECOMPRESSED_BYTES,
) -> Iterator[tuple[str, bytes | InputError]]:
    """Yield (uri, raw bytes or InputError) for a structure file or each member of a tar shard.

    Bytes are returned as stored (possibly gzipped): `structure.parse_structure` decompresses.
    Tar members get ``uri = f"{shard_uri}#{member_name}"``; only members that look like structure
    files are yielded. `max_member_bytes` caps a plain file or tar member (stored size);
    `max_decompressed_bytes` caps what a .tar.gz shard may decompress for one member (skipped
    members included), so a bomb stops early while big shards of many small members pass.
    A shard without any structure member yields one ``no_structures_in_tar`` error.
    """
    if not isinstance(ref, InputRef):
        uri = canonical_uri(ref)
        ref = InputRef(uri, None, None, is_tar_name(uri))
    if ref.is_tar:
        yield from _iter_tar(ref, storage_options, max_member_bytes, max_decompressed_bytes)
        return
    try:
        data = _read_plain(ref, storage_options, max_member_bytes)
    except Exception as exc:  # noqa: BLE001 - every failure becomes an error row
        yield ref.uri, _read_failure(exc, "file")
        return
    yield ref.uri, data


# --------------------------------------------------------------------------------------------
# small storage helpers for later stages


def exists(uri: str, storage_options: dict[str, Any] | None = None) -> bool:
    """Whether a file or folder exists at `uri`."""
    if is_local(uri):
        return os.path.exists(_local_path(uri))
    fs, path = filesystem_for(uri, storage_options)
    return bool(fs.exists(path))


def list_files(
    uri: str,
    *,
    storage_options: dict[str, Any] | None = None,
    suffix: str | None = None,
    recursive: bool = False,
) -> list[str]:
    """URIs of the files in a folder (sorted; hidden ``.``-names skipped); [] when it is missing."""
    if is_local(uri):
        root = _local_path(uri)
        if not os.path.isdir(root):
            return []
        if recursive:
            found: list[str] = []
            for dirpath, dirnames, filenames in os.walk(root):
                dirnames[:] = [d for d in dirnames if not d.startswith(".")]
                found.extend(os.path.join(dirpath, f) for f in filenames)
        else:
            found = [os.path.join(root, f) for f in os.listdir(root) if os.path.isfile(os.path.join(root, f))]
    else:
        proto = _protocol(uri)
        fs, path = filesystem_for(uri, storage_options)
        try:
            if recursive:
                paths = fs.find(path)
            else:
                paths = [e["name"] for e in fs.ls(path, detail=True) if e.get("type") == "file"]
        except FileNotFoundError:
            return []
        found = [_full_uri(p, proto) for p in paths if p.rstrip("/") != path.rstrip("/")]
    out = [u for u in found if not basename(u).startswith(".") and (suffix is None or u.endswith(suffix))]
    return sorted(out)


def read_bytes(uri: str, storage_options: dict[str, Any] | None = None) -> bytes:
    """Whole content of a file."""
    if is_local(uri):
        with open(_local_path(uri), "rb") as fh:
            return fh.read()
    fs, path = filesystem_for(uri, storage_options)
    return fs.cat_file(path)


def _atomic_local_write(path: str, write: Any) -> None:
    folder = os.path.dirname(path) or "."
    os.makedirs(folder, exist_ok=True)
    tmp = os.path.join(folder, f".{os.path.basename(path)}.{uuid.uuid4().hex[:12]}.tmp")
    try:
        write(tmp)
        os.replace(tmp, path)
    except BaseException:
        try:
            os.remove(tmp)
        except OSError:
            pass
        raise


def write_bytes(data: bytes, uri: str, storage_options: dict[str, Any] | None = None) -> None:
    """Write a file (atomically for local paths: temp name in the same folder, then rename)."""
    if is_local(uri):

        def _w(tmp: str) -> None:
            with open(tmp, "wb") as fh:
                fh.write(data)

        _atomic_local_write(_local_path(uri), _w)
        return
    fs, path = filesystem_for(uri, storage_options)
    with fs.open(path, "wb") as fh:
        fh.write(data)


# rows written (and dictionary columns decoded) at a time: a Parquet writer holds a row group's pages
# until it closes, so the driver's peak while writing grows with it. A 10^5-row members table and
# 20,000 merge rows: 24.7 MB above the RSS before writing at 131,072 rows, 20.2 at 16,384, against
# 18.4 for 10^4 rows (one group); the files 1.6% larger (`bench/write_memory.py`, docs/scaling.md)
ROW_GROUP_ROWS = 16_384


def plain_schema(schema: pa.Schema) -> pa.Schema:
    """`schema` with each dictionary-encoded field as its value type (names, nullability, metadata kept)."""
    return pa.schema([f.with_type(f.type.value_type) if pa.types.is_dictionary(f.type) else f for f in schema],
                     metadata=schema.metadata)


def write_parquet(
    table: pa.Table,
    uri: str,
    storage_options: dict[str, Any] | None = None,
    *,
    compression: str = "zstd",
) -> None:
    """Write `table` as one Parquet file at `uri` (local: atomic rename; S3: single PUT/upload).

    Written `ROW_GROUP_ROWS` rows at a time: a dictionary-encoded column (an id column that indexes
    the ids, as the members table's representatives do) is decoded one slice at a time, so writing
    never holds a whole decoded column; the file has plain columns (`plain_schema`).
    No dictionary pages: rayfold's string columns are mostly unique ids, whose dictionaries the
    writer builds and then abandons. Measured on a 10^5-row members table (three id columns): 20 MB
    of writer memory and 1.38 MB on disk with dictionaries, none and 1.04 MB without (zstd)."""
    slices = (table.slice(start, ROW_GROUP_ROWS) for start in range(0, table.num_rows, ROW_GROUP_ROWS))
    write_parquet_stream(table.schema, slices, uri, storage_options, compression=compression)


def write_parquet_stream(
    schema: pa.Schema,
    tables: Iterable[pa.Table],
    uri: str,
    storage_options: dict[str, Any] | None = None,
    *,
    compression: str = "zstd",
) -> None:
    """Write tables of `schema` one after another as one Parquet file (a row group or more each):
    what is written never has to be in memory at once. Local: atomic rename; S3: one upload."""
    target = plain_schema(schema)

    def write(sink: Any) -> None:
        with pq.ParquetWriter(sink, target, compression=compression, use_dictionary=False) as writer:
            for table in tables:
                writer.write_table(table.cast(target))

    if is_local(uri):
        _atomic_local_write(_local_path(uri), write)
        return
    fs, path = filesystem_for(uri, storage_options)
    parent = path.rsplit("/", 1)[0]
    if parent and parent != path:
        try:
            fs.makedirs(parent, exist_ok=True)
        except OSError:
            pass  # object stores have no folders
    with fs.open(path, "wb") as fh:
        write(fh)


def remove_tree(uri: str, storage_options: dict[str, Any] | None = None) -> None:
    """Delete a folder (or prefix) and everything under it; nothing when absent."""
    fs, path = filesystem_for(uri, storage_options)
    try:
        fs.rm(path, recursive=True)
    except FileNotFoundError:
        pass


def parquet_parts(uri: str, storage_options: dict[str, Any] | None = None) -> list[str]:
    """URIs of the ``*.parquet`` part files under a folder (or the file itself), in name order.

    Hidden/temporary names (``.``/``_`` prefix, files or folders) are skipped; [] when absent."""
    if is_local(uri):
        fs: fsspec.AbstractFileSystem = LocalFileSystem()
        path = _local_path(uri)
    else:
        fs, path = filesystem_for(uri, storage_options)
    try:
        info = fs.info(path)
    except FileNotFoundError:
        return []
    if info.get("type") != "directory":
        return [uri]
    root = path.rstrip("/")
    files = sorted(
        p
        for p in fs.find(path)
        if p.endswith(".parquet")
        and not basename(p).startswith((".", "_"))
        and not any(part.startswith((".", "_")) for part in p[len(path) :].split("/")[:-1] if part)
    )
    return [uri.rstrip("/") + p[len(root):] for p in files]


def read_parquet_dataset(
    uri: str,
    storage_options: dict[str, Any] | None = None,
    *,
    columns: Sequence[str] | None = None,
    filters: Any = None,
) -> pa.Table | None:
    """All ``*.parquet`` part files under a folder (or one file) as one table; None when none.

    Part files are read in name order (`parquet_parts`). Schemas are unified (missing columns
    become nulls). `columns` and `filters` are applied while each part is read, so a wide table
    (``fragments/``, per-residue lists) need not be held whole to get a few columns.
    """
    tables = [read_parquet_part(part, storage_options, columns=columns, filters=filters)
              for part in parquet_parts(uri, storage_options)]
    if not tables:
        return None
    if len(tables) == 1:
        return tables[0]
    return pa.concat_tables(tables, promote_options="default")


def read_parquet_part(
    uri: str,
    storage_options: dict[str, Any] | None = None,
    *,
    columns: Sequence[str] | None = None,
    filters: Any = None,
) -> pa.Table:
    """One Parquet file, only `columns` and the rows `filters` keep."""
    wanted = list(columns) if columns is not None else None
    if is_local(uri):
        return pq.read_table(_local_path(uri), columns=wanted, filters=filters)
    fs, path = filesystem_for(uri, storage_options)
    with fs.open(path, "rb") as fh:
        return pq.read_table(fh, columns=wanted, filters=filters)
