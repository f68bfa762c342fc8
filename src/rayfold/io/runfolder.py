"""What makes a folder (or prefix) a rayfold output, checked before any work or any write.

A command that reads a run folder (`stats`, `sample`, `report`) refuses a path that is not one
instead of printing zeros or writing a report into someone's input folder; a command that writes
one refuses an --out that is an existing file before Ray starts.
"""

from __future__ import annotations

from rayfold.io.storage import exists, filesystem_for, join_uri
from rayfold.model.errors import InputError

# tables `rayfold cluster` and `rayfold run` always write; a run folder has them
RUN_FOLDER_TABLES = ("members", "clusters")


def check_output_folder(out: str, storage_options: dict | None = None) -> None:
    """Refuse an --out that is an existing file (not a folder)."""
    fs, path = filesystem_for(out, storage_options)
    try:
        is_file = fs.isfile(path)
    except OSError:
        return  # unreachable storage: the first real read reports it
    if is_file:
        raise InputError("out_is_a_file", f"--out {out} is an existing file; give a folder (or a prefix)")


def require_run_folder(out: str, storage_options: dict | None = None) -> None:
    """Refuse a path that holds no clustering results (a typo, an input folder, a fragments-only run)."""
    missing = [t for t in RUN_FOLDER_TABLES if not exists(join_uri(out, t), storage_options)]
    if missing:
        raise InputError("not_a_run_folder", f"{out} is not a run folder (no {'/, '.join(missing)}/ there): "
                         "give the --out of `rayfold run` or `rayfold cluster`")
