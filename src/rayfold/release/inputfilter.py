"""The seed's optional input filter: keep only entries named in an id table, or only entries in
non-singleton clusters of an MMseqs2 sequence clustering (`rep<TAB>member` lines, as written by
`mmseqs createtsv` / `easy-cluster`'s `_cluster.tsv`).

An entry is kept when its entry id or its UniProt accession is listed; AFDB ids such as
`AF-A0A000-F1` are also matched by their accession.
"""

from __future__ import annotations

import io
import re
from collections import Counter
from dataclasses import dataclass

from rayfold.io.storage import read_bytes
from rayfold.model.errors import InputError

_AFDB_ID = re.compile(r"^AF-(?P<acc>[A-Za-z0-9]+)-F\d+(?:-model_v\d+)?$")


@dataclass(frozen=True)
class EntryFilter:
    ids: frozenset[str]
    origin: str  # what it was built from, for the release record

    def keeps(self, entry_id: str, accession: str | None = None) -> bool:
        return entry_id in self.ids or (accession is not None and accession in self.ids)

    def describe(self) -> dict:
        return {"origin": self.origin, "ids": len(self.ids)}

    @classmethod
    def from_ids(cls, ids, origin: str = "ids") -> EntryFilter:
        names: set[str] = set()
        for raw in ids:
            name = raw.strip()
            if not name:
                continue
            names.add(name)
            match = _AFDB_ID.match(name)
            if match:
                names.add(match.group("acc"))
        if not names:
            raise InputError("empty_filter", f"{origin}: the entry filter lists no ids")
        return cls(frozenset(names), origin)


def _lines(uri: str, storage_options: dict | None) -> list[str]:
    data = read_bytes(uri, storage_options)
    if uri.endswith(".gz"):
        import gzip

        data = gzip.decompress(data)
    try:
        return io.StringIO(data.decode("utf-8")).read().splitlines()
    except UnicodeDecodeError:
        raise InputError("bad_filter", f"{uri}: not a UTF-8 text file") from None


def read_id_table(uri: str, storage_options: dict | None = None) -> EntryFilter:
    """One id per line (first column of a TSV/CSV; a Parquet file's first column); '#' lines and a
    header named id/entry_id/accession are skipped."""
    if uri.endswith(".parquet"):
        from rayfold.io.storage import read_parquet_dataset

        table = read_parquet_dataset(uri, storage_options)
        assert table is not None, f"{uri}: no Parquet data"
        return EntryFilter.from_ids([str(v) for v in table.column(0).to_pylist() if v is not None], uri)
    ids = []
    for line in _lines(uri, storage_options):
        if not line.strip() or line.startswith("#"):
            continue
        first = re.split(r"[\t,]", line.strip(), maxsplit=1)[0]
        if first.lower() in ("id", "entry_id", "accession"):
            continue
        ids.append(first)
    return EntryFilter.from_ids(ids, uri)


def read_mmseqs_clusters(uri: str, storage_options: dict | None = None, min_size: int = 2) -> EntryFilter:
    """Members (representatives included) of sequence clusters with at least `min_size` members."""
    pairs = []
    for number, line in enumerate(_lines(uri, storage_options), 1):
        if not line.strip():
            continue
        parts = line.split("\t")
        if len(parts) < 2:
            raise InputError("bad_filter", f"{uri}:{number}: expected 'representative<TAB>member'")
        pairs.append((parts[0].strip(), parts[1].strip()))
    sizes = Counter(rep for rep, _ in pairs)
    return EntryFilter.from_ids([m for rep, m in pairs if sizes[rep] >= min_size], f"{uri} (clusters >= {min_size})")
