"""Arrow schemas of every table rayfold writes, declared once.

Later stages and users rely on these names and types: change them only together with a version
bump of `SCHEMA_VERSION` (stored in each table's metadata).
"""

from __future__ import annotations

import pyarrow as pa

# 2: clusters gain length range and cohesion; merges gain decision, guard_tm; 3: first_pass_rounds;
# 4: alignments and cluster_map tables; releases: reused_alignments and changed_clusters replace
# assigned_to_existing (a release clusters everything, as a fresh run); 5: cluster_runs.steps
SCHEMA_VERSION = "5"

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
        pa.field("min_length", pa.int64(), nullable=False),  # residues, over all members
        pa.field("max_length", pa.int64(), nullable=False),
        # cohesion: min(TM_a, TM_b) of a seeded sample of members against the representative
        pa.field("cohesion_sampled", pa.int64(), nullable=False),  # 0 for singletons
        pa.field("cohesion_min_tm", pa.float64()),
        pa.field("cohesion_median_tm", pa.float64()),
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
        # merged | redundant | refused | reassigned | ignored (linkage)
        pa.field("decision", pa.string(), nullable=False),
        # guarded linkage: lowest min-TM of the yielding cluster's first-pass representatives to the
        # merged representative (null where the guard was not checked)
        pa.field("guard_tm", pa.float64()),
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
        # built-in cascade: representatives after each first-pass round ("12000 > 3100 > 2900")
        pa.field("first_pass_rounds", pa.string()),
        pa.field("clusters", pa.int64(), nullable=False),
        pa.field("merges", pa.int64(), nullable=False),  # evidence rows that joined two clusters
        pa.field("alignments", pa.int64(), nullable=False),  # TM-align calls, all stages
        pa.field("guard_alignments", pa.int64(), nullable=False),  # of those, for the guarded linkage
        pa.field("cohesion_alignments", pa.int64(), nullable=False),  # of those, for the cohesion columns
        pa.field("linkage_seconds", pa.float64(), nullable=False),  # deciding merges, guard alignments included
        pa.field("singleton_audit", pa.string(), nullable=False),
        pa.field("seconds", pa.float64(), nullable=False),
        # JSON {step: {"seconds", "alignments"}} in the order run: where the time and TM-align calls went
        pa.field("steps", pa.string()),
        pa.field("config", pa.string(), nullable=False),  # JSON of the ClusterConfig used
    ],
    metadata={"rayfold_table": "cluster_runs", "rayfold_schema_version": SCHEMA_VERSION},
)


MANIFEST = pa.schema(
    [
        pa.field("input_uri", pa.string(), nullable=False),  # a structure file or a whole tar shard
        pa.field("source", pa.string(), nullable=False),  # the INPUT argument it was listed from
        pa.field("size", pa.int64()),
        pa.field("mtime_or_etag", pa.string()),  # S3 ETag, else modification time
        # over the bytes read (tar: member names and bytes); "" in a withdrawal row
        pa.field("content_sha256", pa.string(), nullable=False),
        pa.field("unit_id", pa.string(), nullable=False),  # the work unit whose parts hold its rows
        pa.field("release", pa.int64(), nullable=False),  # the release that processed it
        pa.field("structures", pa.int64(), nullable=False),
        pa.field("fragments", pa.int64(), nullable=False),
        pa.field("errors", pa.int64(), nullable=False),
        # true: a release run with --sync no longer found it listed, and its rows left the tables
        # (null in run folders from before schema 4: processed)
        pa.field("withdrawn", pa.bool_()),
    ],
    metadata={"rayfold_table": "manifest", "rayfold_schema_version": SCHEMA_VERSION},
)

RELEASES = pa.schema(
    [
        pa.field("release", pa.int64(), nullable=False),  # 1, 2, ...
        pa.field("started_at", pa.timestamp("s", tz="UTC"), nullable=False),
        pa.field("finished_at", pa.timestamp("s", tz="UTC"), nullable=False),
        pa.field("inputs", pa.int64(), nullable=False),  # all inputs in the manifest after this release
        pa.field("new_inputs", pa.int64(), nullable=False),  # processed in this release (new or changed)
        pa.field("changed_inputs", pa.int64(), nullable=False),  # of those, seen before with other content
        pa.field("withdrawn_inputs", pa.int64(), nullable=False),  # no longer listed (--sync): their rows left
        pa.field("fragments", pa.int64(), nullable=False),  # passed fragments clustered, all releases
        pa.field("new_fragments", pa.int64(), nullable=False),  # fragment ids the last release did not have
        pa.field("reused_alignments", pa.int64(), nullable=False),  # stored alignments it could reuse
        pa.field("clusters", pa.int64(), nullable=False),
        pa.field("new_clusters", pa.int64(), nullable=False),  # cluster ids the last release did not have
        pa.field("changed_clusters", pa.int64(), nullable=False),  # clusters with rows in cluster_map
        pa.field("merges", pa.int64(), nullable=False),  # evidence rows that joined clusters, all releases
        pa.field("alignments", pa.int64(), nullable=False),  # TM-align calls in this release
        pa.field("errors", pa.int64(), nullable=False),  # error rows of this release's inputs
        pa.field("engine", pa.string(), nullable=False),
        pa.field("seconds", pa.float64(), nullable=False),
        pa.field("stage_seconds", pa.string(), nullable=False),  # JSON {stage: seconds}
        pa.field("config", pa.string(), nullable=False),  # JSON of every config used
    ],
    metadata={"rayfold_table": "releases", "rayfold_schema_version": SCHEMA_VERSION},
)

SINGLETON_LINKS = pa.schema(
    [
        pa.field("fragment_a", pa.string(), nullable=False),  # sampled singletons at min-TM >= threshold
        pa.field("fragment_b", pa.string(), nullable=False),
    ],
    metadata={"rayfold_table": "singleton_links", "rayfold_schema_version": SCHEMA_VERSION},
)

# every alignment a release computed (`rayfold.cluster.memo`): later releases reuse the rows whose two
# fragments still exist with the same content (digest) instead of aligning them again
ALIGNMENTS = pa.schema(
    [
        pa.field("fragment_a", pa.string(), nullable=False),  # aligned as (a, b): TM-align is not symmetric
        pa.field("fragment_b", pa.string(), nullable=False),
        pa.field("digest_a", pa.int64(), nullable=False),  # content digest of fragment_a when aligned
        pa.field("digest_b", pa.int64(), nullable=False),
        pa.field("tm_a", pa.float64(), nullable=False),  # TM normalised by fragment_a
        pa.field("tm_b", pa.float64(), nullable=False),
        pa.field("rmsd", pa.float64(), nullable=False),
        pa.field("aligned_length", pa.int32(), nullable=False),
        pa.field("seq_identity", pa.float64(), nullable=False),
        pa.field("cov_a", pa.float64(), nullable=False),  # span of fragment_a's aligned residues / its length
        pa.field("cov_b", pa.float64(), nullable=False),
    ],
    metadata={"rayfold_table": "alignments", "rayfold_schema_version": SCHEMA_VERSION},
)

# how each release's clusters follow from the last release's (`rayfold.release.clustermap`): one row
# per (cluster now, cluster then) that share fragments, for every cluster whose id or members changed;
# a cluster with no row kept its id and its members
CLUSTER_MAP = pa.schema(
    [
        pa.field("release", pa.int64(), nullable=False),
        pa.field("cluster_id", pa.string()),  # null: these fragments left the collection
        pa.field("previous_cluster_id", pa.string()),  # null: these fragments are new in this release
        pa.field("fragments", pa.int64(), nullable=False),  # fragments in both (or only in the non-null side)
        pa.field("change", pa.string(), nullable=False),  # same_id | moved | new | removed
    ],
    metadata={"rayfold_table": "cluster_map", "rayfold_schema_version": SCHEMA_VERSION},
)


def empty(schema: pa.Schema) -> pa.Table:
    return schema.empty_table()


# --------------------------------------------------------------------------------------------
# analytics (rayfold.analytics.stats, rayfold.analytics.sampling): whole tables, rewritten on every run

STATS = pa.schema(
    [
        pa.field("scope", pa.string(), nullable=False),  # 'all' or an input source (the INPUT argument)
        pa.field("fragments", pa.int64(), nullable=False),  # fragment rows, passed or not
        pa.field("clustered_fragments", pa.int64(), nullable=False),  # rows of members (passed fragments)
        pa.field("clusters", pa.int64(), nullable=False),  # a source scope counts clusters within the source
        pa.field("singletons", pa.int64(), nullable=False),  # clusters of size 1
        pa.field("multi_member_clusters", pa.int64(), nullable=False),
        pa.field("fragments_in_multi_member", pa.int64(), nullable=False),
        pa.field("largest_cluster", pa.int64(), nullable=False),
        pa.field("top100_share", pa.float64()),  # of fragments_in_multi_member; null without any
        pa.field("top1000_share", pa.float64()),
        pa.field("singleton_audit_sampled", pa.int64(), nullable=False),  # N: singletons aligned all-vs-all
        pa.field("singleton_audit_linked", pa.int64(), nullable=False),  # X: of those, in a component of >= 2
        pa.field("singleton_audit_components", pa.int64(), nullable=False),  # K: components of >= 2
        pa.field("singleton_audit_largest", pa.int64(), nullable=False),  # M: largest component (0 if none sampled)
        pa.field("singleton_audit", pa.string(), nullable=False),  # "X of N sampled singletons in K ..."
    ],
    metadata={"rayfold_table": "stats", "rayfold_schema_version": SCHEMA_VERSION},
)

SAMPLING = pa.schema(
    [
        pa.field("gamma", pa.float64(), nullable=False),  # cluster_size_exponent: cluster mass ~ N^gamma
        pa.field("population", pa.string(), nullable=False),  # all | multi_member (singletons left out)
        pa.field("clusters", pa.int64(), nullable=False),
        pa.field("fragments", pa.int64(), nullable=False),
        pa.field("effective_clusters", pa.float64(), nullable=False),  # inverse Simpson 1 / sum p_i^2
        pa.field("top100_mass", pa.float64(), nullable=False),  # sampling mass of the 100 largest clusters
        pa.field("top1000_mass", pa.float64(), nullable=False),
        pa.field("largest_cluster_mass", pa.float64(), nullable=False),
    ],
    metadata={"rayfold_table": "sampling", "rayfold_schema_version": SCHEMA_VERSION},
)

WEIGHTS = pa.schema(
    [
        pa.field("fragment_id", pa.string(), nullable=False),
        pa.field("cluster_id", pa.string(), nullable=False),
        pa.field("cluster_size", pa.int64(), nullable=False),
        pa.field("weight", pa.float64(), nullable=False),  # sums to 1 over the table
        pa.field("gamma", pa.float64(), nullable=False),  # the exponent the weights were made with
        pa.field("population", pa.string(), nullable=False),  # all | multi_member
    ],
    metadata={"rayfold_table": "weights", "rayfold_schema_version": SCHEMA_VERSION},
)

SAMPLE = pa.schema(
    [
        pa.field("draw", pa.int64(), nullable=False),  # 0..n-1, the order of the draws
        pa.field("fragment_id", pa.string(), nullable=False),
        pa.field("cluster_id", pa.string(), nullable=False),
        pa.field("weight", pa.float64(), nullable=False),
    ],
    metadata={"rayfold_table": "sample", "rayfold_schema_version": SCHEMA_VERSION},
)
