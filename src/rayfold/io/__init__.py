"""Storage (local and S3 through fsspec), mmCIF/PDB parsing, and the run folder."""
