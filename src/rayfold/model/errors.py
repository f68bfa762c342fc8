"""Errors that become rows of the errors table instead of stopping a run.

`ERROR_KINDS` lists every `error_kind` the fragment stage can write, with the stage(s) it comes
from and what it means; docs/limits.md shows them with example messages (a test keeps the two in
step).
"""

from __future__ import annotations

__all__ = ["ERROR_KINDS", "InputError"]


class InputError(Exception):
    """A structure that cannot be used, with a short machine-readable `kind`.

    Raised by the pure modules (reading, parsing, fragmenting); the pipeline records it as a row of
    the errors table (input, stage, kind, message) and goes on with the next input.
    """

    def __init__(self, kind: str, message: str) -> None:
        super().__init__(message)
        self.kind = kind
        self.message = message

    def __str__(self) -> str:
        return f"{self.kind}: {self.message}"


# error_kind -> (stages it is reported at, meaning). "listing" kinds are raised by `list_inputs`
# before any work starts (the command stops with the message); the others are errors-table rows.
ERROR_KINDS: dict[str, tuple[tuple[str, ...], str]] = {
    # reading (io.py)
    "not_found": (("listing", "read"), "no such file/prefix, or it was deleted after listing"),
    "not_a_file": (("listing", "read"), "a pipe, socket or device, not a regular file"),
    "read_error": (("listing", "read"), "the storage refused or failed (permissions, network)"),
    "file_too_large": (("read", "parse"), "over ReadConfig.max_file_bytes (stored) or max_decompressed_bytes (text)"),
    "member_too_large": (("read",), "a tar member over ReadConfig.max_file_bytes"),
    "decompressed_too_large": (("read", "parse"), "decompresses past ReadConfig.max_decompressed_bytes (gzip bomb)"),
    "unsafe_tar_member": (("read",), "tar member with an absolute or '..' name, a link, or a special file"),
    "truncated_tar": (("read",), "a tar shard that ends early"),
    "corrupt_tar": (("read",), "not a readable tar archive"),
    "corrupt_gzip": (("read", "parse"), "gzip data that fails to decompress or its CRC check"),
    "unsupported_compression": (("read", "parse"), "bzip2, xz, zstd or zip data: only gzip is read"),
    "no_structures_in_tar": (("read",), "a tar shard without any structure-named member"),
    # parsing (structure.py)
    "empty_file": (("parse",), "no bytes, only whitespace, or gzip of nothing"),
    "truncated_gzip": (("parse",), "a gzip stream that ends early"),
    "unknown_format": (("parse",), "neither mmCIF nor PDB by name or content, or binary content"),
    "parse_error": (("parse",), "gemmi cannot parse the mmCIF/PDB text"),
    "too_many_atoms": (("parse",), "more atom records than ReadConfig.max_atoms"),
    "no_atoms": (("parse",), "no _atom_site / ATOM records"),
    "no_ca_atoms": (("parse",), "amino-acid residues, none with a CA atom"),
    "no_protein_chain": (("parse",), "only ligands, waters or nucleic acids"),
    "bad_coordinates": (("parse",), "NaN/infinite or absurd (> 1e5 A) coordinates, or placeholder (repeated) C-alphas"),
    "bad_plddt": (("parse",), "NaN/infinite pLDDT values"),
    "no_plddt": (("parse",), "every pLDDT of a chain is 0: no confidence values (not with --whole-chains)"),
    # anything else
    "unexpected": (("read", "parse", "fragment"), "an error nobody foresaw (a bug): the message has the exception"),
}
