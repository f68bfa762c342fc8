"""Arrow schemas of every table rayfold writes, declared once.

Later stages and users rely on these names and types: change them only together with a version
bump of `SCHEMA_VERSION` (stored in each table's metadata).
"""

from __future__ import annotations

import pyarrow as pa

SCHEMA_VERSION = "1"

XYZ = pa.list_(pa.float32(), 3)

FRAGMENTS = pa.schema(
    [
        pa.field("fragment_id", pa.string(), nullable=False),  # <entry_id>_f<n>, n from 1 in chain then residue order
        pa.field("entry_id", pa.string(), nullable=False),
        pa.field("chain_id", pa.string(), nullable=False),
        pa.field("accession", pa.string()),  # UniProt accession when known
        pa.field("source_uri", pa.string(), nullable=False),
        pa.field("fragment_index", pa.int32(), nullable=False),
        pa.field("n_residues", pa.int32(), nullable=False),
        pa.field("n_segments", pa.int32(), nullable=False),
        pa.field("chopping", pa.string(), nullable=False),  # author numbers, 'start-end' joined by '_'
        pa.field("sequence", pa.string(), nullable=False),
        pa.field("states_3di", pa.string()),  # 3Di letters from the full backbone (passed fragments), for the prefilter
        pa.field("residue_index", pa.list_(pa.int32()), nullable=False),  # 0-based, into the chain's CA residues
        pa.field("plddt", pa.list_(pa.float32()), nullable=False),
        pa.field("ca_coords", pa.list_(XYZ), nullable=False),  # Angstrom
        pa.field("mean_plddt", pa.float32(), nullable=False),
        pa.field("radius_of_gyration", pa.float32(), nullable=False),
        pa.field("rg_ratio", pa.float32(), nullable=False),  # Rg / (2.2 N^0.38)
        pa.field("contact_density", pa.float32(), nullable=False),  # long-range CA contacts per residue
        pa.field("passed", pa.bool_(), nullable=False),
        pa.field("fail_reason", pa.string()),
    ],
    metadata={"rayfold_table": "fragments", "rayfold_schema_version": SCHEMA_VERSION},
)

CHAINS = pa.schema(
    [
        pa.field("entry_id", pa.string(), nullable=False),
        pa.field("chain_id", pa.string(), nullable=False),
        pa.field("accession", pa.string()),
        pa.field("source_uri", pa.string(), nullable=False),
        pa.field("n_residues", pa.int32(), nullable=False),
        pa.field("n_usable", pa.int32(), nullable=False),  # pLDDT >= cutoff
        pa.field("n_fragments", pa.int32(), nullable=False),
        pa.field("n_dropped_short", pa.int32(), nullable=False),
        pa.field("mean_plddt", pa.float32(), nullable=False),
        pa.field("plddt_source", pa.string(), nullable=False),
        pa.field("linker_index", pa.list_(pa.int32()), nullable=False),  # residues cut as linkers
    ],
    metadata={"rayfold_table": "chains", "rayfold_schema_version": SCHEMA_VERSION},
)

ERRORS = pa.schema(
    [
        pa.field("source_uri", pa.string(), nullable=False),
        pa.field("stage", pa.string(), nullable=False),  # read | parse | fragment
        pa.field("error_kind", pa.string(), nullable=False),
        pa.field("message", pa.string(), nullable=False),
    ],
    metadata={"rayfold_table": "errors", "rayfold_schema_version": SCHEMA_VERSION},
)

CLUSTERS = pa.schema(
    [
        pa.field("cluster_id", pa.string(), nullable=False),  # = representative_id
        pa.field("representative_id", pa.string(), nullable=False),
        pa.field("size", pa.int64(), nullable=False),
        pa.field("n_first_pass_clusters", pa.int64(), nullable=False),
    ],
    metadata={"rayfold_table": "clusters", "rayfold_schema_version": SCHEMA_VERSION},
)

MEMBERS = pa.schema(
    [
        pa.field("fragment_id", pa.string(), nullable=False),
        pa.field("cluster_id", pa.string(), nullable=False),
        pa.field("first_pass_cluster_id", pa.string(), nullable=False),  # its first-pass representative
    ],
    metadata={"rayfold_table": "members", "rayfold_schema_version": SCHEMA_VERSION},
)

MERGES = pa.schema(
    [
        pa.field("representative_a", pa.string(), nullable=False),  # first-pass clusters joined
        pa.field("representative_b", pa.string(), nullable=False),
        pa.field("fragment_a", pa.string(), nullable=False),  # the TM-aligned pair that is the evidence
        pa.field("fragment_b", pa.string(), nullable=False),  # (= the representatives for source 'representatives')
        pa.field("source", pa.string(), nullable=False),  # representatives | members
        pa.field("tm_a", pa.float64(), nullable=False),  # TM normalised by fragment_a
        pa.field("tm_b", pa.float64(), nullable=False),
        pa.field("tm_min", pa.float64(), nullable=False),
        pa.field("rmsd", pa.float64(), nullable=False),
        pa.field("aligned_length", pa.int64(), nullable=False),
        pa.field("seq_identity", pa.float64(), nullable=False),
    ],
    metadata={"rayfold_table": "merges", "rayfold_schema_version": SCHEMA_VERSION},
)

SINGLETON_AUDIT = pa.schema(
    [
        pa.field("fragment_id", pa.string(), nullable=False),
        pa.field("component_id", pa.string(), nullable=False),  # smallest fragment_id of its component
        pa.field("component_size", pa.int64(), nullable=False),
    ],
    metadata={"rayfold_table": "singleton_audit", "rayfold_schema_version": SCHEMA_VERSION},
)

CLUSTER_RUNS = pa.schema(
    [
        pa.field("engine", pa.string(), nullable=False),  # builtin | foldseek
        pa.field("engine_version", pa.string(), nullable=False),
        pa.field("fragments", pa.int64(), nullable=False),
        pa.field("first_pass_clusters", pa.int64(), nullable=False),
        pa.field("clusters", pa.int64(), nullable=False),
        pa.field("merges", pa.int64(), nullable=False),
        pa.field("alignments", pa.int64(), nullable=False),  # TM-align calls, all stages
        pa.field("singleton_audit", pa.string(), nullable=False),
        pa.field("seconds", pa.float64(), nullable=False),
        pa.field("config", pa.string(), nullable=False),  # JSON of the ClusterConfig used
    ],
    metadata={"rayfold_table": "cluster_runs", "rayfold_schema_version": SCHEMA_VERSION},
)


def empty(schema: pa.Schema) -> pa.Table:
    return schema.empty_table()
