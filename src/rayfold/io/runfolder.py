"""A run folder (local or S3): its storage settings and its layout, bound once.

Every table of a run is a Parquet dataset `OUT/<table>/`; each release's committed clustering is
under `OUT/state/<release>/`. Code that reads or writes a run goes through a `RunFolder` instead
of joining paths and threading storage options by hand.

It also says what makes a folder a run: a command that reads one (`stats`, `sample`, `report`)
refuses a path that is not one, instead of printing zeros or writing a report into someone's
input folder; a command that writes one refuses an --out that is an existing file before Ray starts.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import pyarrow as pa

from rayfold.io.storage import (
    exists,
    filesystem_for,
    join_uri,
    read_bytes,
    read_parquet_dataset,
    remove_tree,
    write_bytes,
    write_parquet,
    write_parquet_stream,
)
from rayfold.model.errors import InputError

# tables `rayfold cluster` and `rayfold run` always write; a run folder has them
RUN_FOLDER_TABLES = ("members", "clusters")


@dataclass(frozen=True)
class RunFolder:
    uri: str
    storage_options: dict[str, Any] | None = None

    def path(self, *parts: str) -> str:
        return join_uri(self.uri, *parts)

    def state_path(self, release: int, *parts: str) -> str:
        """`OUT/state/<release>/...`: what a release committed."""
        return self.path("state", f"{release:06d}", *parts)

    def exists(self, *parts: str) -> bool:
        return exists(self.path(*parts), self.storage_options)

    def table(self, *parts: str, columns: Sequence[str] | None = None, filters: Any = None) -> pa.Table | None:
        """The Parquet dataset (or file) at `OUT/<parts>`, None when absent."""
        return read_parquet_dataset(self.path(*parts), self.storage_options, columns=columns, filters=filters)

    def write_table(self, table: pa.Table, *parts: str) -> None:
        write_parquet(table, self.path(*parts), self.storage_options)

    def write_tables(self, schema: pa.Schema, tables: Iterable[pa.Table], *parts: str) -> None:
        """One Parquet file of `tables` written as they come (`write_parquet_stream`)."""
        write_parquet_stream(schema, tables, self.path(*parts), self.storage_options)

    def remove(self, *parts: str) -> None:
        """Delete `OUT/<parts>` and everything under it (nothing when absent)."""
        remove_tree(self.path(*parts), self.storage_options)

    def read_bytes(self, *parts: str) -> bytes:
        return read_bytes(self.path(*parts), self.storage_options)

    def write_bytes(self, data: bytes, *parts: str) -> None:
        write_bytes(data, self.path(*parts), self.storage_options)

    def read_json(self, *parts: str) -> Any:
        return json.loads(self.read_bytes(*parts))

    def write_json(self, value: Any, *parts: str) -> None:
        self.write_bytes(json.dumps(value, indent=1).encode(), *parts)

    def check_writable(self) -> None:
        """Refuse an --out that is an existing file (not a folder)."""
        fs, path = filesystem_for(self.uri, self.storage_options)
        try:
            is_file = fs.isfile(path)
        except OSError:
            return  # unreachable storage: the first real read reports it
        if is_file:
            raise InputError("out_is_a_file", f"--out {self.uri} is an existing file; give a folder (or a prefix)")

    def require_results(self) -> None:
        """Refuse a path that holds no clustering results (a typo, an input folder, a fragments-only run)."""
        missing = [t for t in RUN_FOLDER_TABLES if not self.exists(t)]
        if missing:
            raise InputError("not_a_run_folder", f"{self.uri} is not a run folder (no {'/, '.join(missing)}/ there): "
                             "give the --out of `rayfold run` or `rayfold cluster`")
