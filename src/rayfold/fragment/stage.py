"""The fragmenting stage as plain Python: a work unit of inputs in, Arrow tables out. No Ray here.

`pipeline.py` runs one `FragmentStage` per Ray actor; tests and notebooks can call it directly.
Every failure of one input becomes an errors-table row (stage read | parse | fragment, the
`InputError` kind, or ``unexpected`` for anything nobody foresaw); the unit always completes and
never raises for bad input. An entry is all-or-nothing: when any of its chains fails while
fragmenting (or while computing 3Di / exporting), none of its chain or fragment rows is kept, so
fragment numbering is the same on every run. Limits and error kinds: docs/limits.md.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import pyarrow as pa

from rayfold.align.alphabet import encode_fragment
from rayfold.config import FragmentConfig, ReadConfig
from rayfold.fragment.chain import ChainFragments, fragment_chain
from rayfold.io.storage import InputRef, iter_structure_bytes, printable_uri
from rayfold.io.structure import (
    Chain,
    ParsedEntry,
    parse_structure,
    write_fragment_structure,
)
from rayfold.model import schema
from rayfold.model.errors import InputError

log = logging.getLogger(__name__)


@dataclass
class UnitResult:
    fragments: pa.Table
    chains: pa.Table
    errors: pa.Table
    structures: dict[str, bytes] = field(default_factory=dict)  # fragment_id -> PDB bytes, when exported
    n_structures: int = 0  # structure files read (tar members counted one by one)
    inputs: list[InputSummary] = field(default_factory=list)  # one per input, in order: the manifest's rows


@dataclass(frozen=True)
class InputSummary:
    """What one input gave; `content_sha256` lets a later release tell a re-upload from new content."""

    ref: InputRef
    content_sha256: str  # over the bytes read; a tar shard: its members' names and bytes, in order
    structures: int
    fragments: int
    errors: int


class _Rows:
    """Column lists for one table, turned into an Arrow table of a declared schema at the end."""

    def __init__(self, table_schema: pa.Schema) -> None:
        self.schema = table_schema
        self.columns: dict[str, list] = {name: [] for name in table_schema.names}

    def __len__(self) -> int:
        return len(next(iter(self.columns.values())))

    def add(self, **values: object) -> None:
        for name, column in self.columns.items():
            column.append(values[name])

    def table(self) -> pa.Table:
        arrays = []
        for f in self.schema:
            values = self.columns[f.name]
            if f.name == "ca_coords":
                arrays.append(_xyz_lists(values))
            else:
                arrays.append(pa.array(values, type=f.type))
        return pa.Table.from_arrays(arrays, schema=self.schema)


def _xyz_lists(coords: list[np.ndarray]) -> pa.Array:
    lengths = np.array([len(c) for c in coords], dtype=np.int32)
    offsets = pa.array(np.concatenate([[0], np.cumsum(lengths)]).astype(np.int32))
    flat = (
        np.concatenate([np.asarray(c, dtype=np.float32).ravel() for c in coords])
        if coords
        else np.zeros(0, np.float32)
    )
    points = pa.FixedSizeListArray.from_arrays(pa.array(flat, type=pa.float32()), 3)
    return pa.ListArray.from_arrays(offsets, points, type=schema.FRAGMENTS.field("ca_coords").type)


class FragmentStage:
    """Read, parse and fragment the structures of a work unit."""

    def __init__(
        self,
        config: FragmentConfig = FragmentConfig(),  # noqa: B008 - frozen dataclass, never mutated
        read: ReadConfig = ReadConfig(),  # noqa: B008
        *,
        storage_options: dict | None = None,
        export_structures: bool = False,
    ) -> None:
        self.config = config
        self.read = read
        self.storage_options = storage_options
        self.export_structures = export_structures

    def process(self, refs: Sequence[InputRef]) -> UnitResult:
        fragments, chains, errors = _Rows(schema.FRAGMENTS), _Rows(schema.CHAINS), _Rows(schema.ERRORS)
        structures: dict[str, bytes] = {}
        n_structures = 0
        inputs: list[InputSummary] = []
        for ref in refs:
            digest = hashlib.sha256()
            before = (n_structures, len(fragments), len(errors))
            items = iter_structure_bytes(
                ref,
                storage_options=self.storage_options,
                max_member_bytes=self.read.max_file_bytes,
                max_decompressed_bytes=self.read.max_decompressed_bytes,
            )
            for raw_uri, data in _guard_iteration(printable_uri(ref.uri), items, errors):
                n_structures += 1
                if ref.is_tar:
                    digest.update(raw_uri.encode("utf-8", "surrogateescape") + b"\0")
                uri = printable_uri(raw_uri)  # a non-UTF-8 file or member name must not break the tables
                if isinstance(data, InputError):
                    errors.add(source_uri=uri, stage="read", error_kind=data.kind, message=data.message)
                    continue
                digest.update(data)
                try:
                    entry = parse_structure(
                        data, uri.rsplit("/", 1)[-1].split("#")[-1], source_uri=uri,
                        max_decompressed_bytes=self.read.max_decompressed_bytes,
                        max_atoms=self.read.max_atoms,
                        require_plddt=not self.config.whole_chains,  # pLDDT decides the cuts
                    )
                except InputError as exc:
                    errors.add(source_uri=uri, stage="parse", error_kind=exc.kind, message=exc.message)
                    continue
                except Exception as exc:  # noqa: BLE001 - a parser bug or an input nobody foresaw: record, go on
                    errors.add(source_uri=uri, stage="parse", error_kind="unexpected", message=_describe(exc))
                    continue
                self._fragment_entry(entry, fragments, chains, errors, structures)
            inputs.append(InputSummary(
                ref, digest.hexdigest(), n_structures - before[0], len(fragments) - before[1], len(errors) - before[2]))
        return UnitResult(fragments.table(), chains.table(), errors.table(), structures, n_structures, inputs)

    def _fragment_entry(
        self, entry: ParsedEntry, fragments: _Rows, chains: _Rows, errors: _Rows, structures: dict[str, bytes]
    ) -> None:
        # Rows are collected first and committed only when the whole entry succeeded: all-or-nothing
        # per entry keeps fragment numbering stable on a re-run and leaves no half entry behind.
        chain_rows: list[dict] = []
        fragment_rows: list[dict] = []
        exported: dict[str, bytes] = {}
        try:
            self._entry_rows(entry, chain_rows, fragment_rows, exported)
        except InputError as exc:
            errors.add(source_uri=entry.source_uri, stage="fragment", error_kind=exc.kind, message=exc.message)
            return
        except Exception as exc:  # noqa: BLE001 - a bug or an input nobody foresaw: record it, go on
            errors.add(source_uri=entry.source_uri, stage="fragment", error_kind="unexpected", message=_describe(exc))
            return
        for row in chain_rows:
            chains.add(**row)
        for row in fragment_rows:
            fragments.add(**row)
        structures.update(exported)

    def _entry_rows(
        self, entry: ParsedEntry, chain_rows: list[dict], fragment_rows: list[dict], structures: dict[str, bytes]
    ) -> None:
        results: list[tuple[Chain, ChainFragments]] = [(c, fragment_chain(c, self.config)) for c in entry.chains]
        number = 0
        for chain, result in results:
            chain_rows.append({
                "entry_id": entry.entry_id,
                "chain_id": chain.chain_id,
                "accession": entry.accession,
                "source_uri": entry.source_uri,
                "n_residues": chain.n_residues,
                "n_usable": result.n_usable,
                "n_fragments": len(result.fragments),
                "n_dropped_short": result.dropped_short,
                "mean_plddt": float(chain.plddt.mean()) if chain.n_residues else 0.0,
                "plddt_source": chain.plddt_source,
                "linker_index": result.linker_index.astype(np.int32),
            })
            for frag in result.fragments:
                number += 1
                fragment_id = f"{entry.entry_id}_f{number}"
                idx = frag.residue_index
                fragment_rows.append({
                    "fragment_id": fragment_id,
                    "entry_id": entry.entry_id,
                    "chain_id": chain.chain_id,
                    "accession": entry.accession,
                    "source_uri": entry.source_uri,
                    "fragment_index": number,
                    "n_residues": frag.n_residues,
                    "n_segments": frag.n_segments,
                    "chopping": frag.chopping,
                    "sequence": "".join(chain.sequence[i] for i in idx),
                    # 3Di costs ~10 us a residue: computed once here, for the fragments that get clustered
                    "states_3di": encode_fragment(entry, chain.chain_id, idx) if frag.passed else None,
                    "residue_index": idx.astype(np.int32),
                    "plddt": chain.plddt[idx].astype(np.float32),
                    "ca_coords": chain.ca_coords[idx],
                    "mean_plddt": frag.mean_plddt,
                    "radius_of_gyration": frag.radius_of_gyration,
                    "rg_ratio": frag.rg_ratio,
                    "contact_density": frag.contact_density,
                    "passed": frag.passed,
                    "fail_reason": frag.fail_reason,
                })
                if self.export_structures:
                    structures[fragment_id] = write_fragment_structure(entry, chain.chain_id, idx)


def _guard_iteration(uri: str, items, errors: _Rows):
    """Yield from a reader; if the reader itself breaks (e.g. a corrupt tar), record it and stop that input."""
    try:
        yield from items
    except InputError as exc:
        errors.add(source_uri=uri, stage="read", error_kind=exc.kind, message=exc.message)
    except Exception as exc:  # noqa: BLE001 - the unit must complete whatever one reader does
        errors.add(source_uri=uri, stage="read", error_kind="unexpected", message=_describe(exc))


def _describe(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}"[:2000]
