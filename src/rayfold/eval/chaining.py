"""A chaining test set from real structures: what single linkage turns into one cluster.

A ladder of nested windows of one long, well-predicted chain, each about 1.3x the one before (as a
repeat domain cut at 3, 4, 5, ... repeats grows): neighbouring windows share most of their
structure (min-TM >= 0.7), the ends of the ladder share little (min-TM ~0.2). Mixed with other
fragments, a linkage that keeps clusters neighbourhoods must not put the ends together.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from rayfold.align.alphabet import encode_fragment
from rayfold.config import FragmentConfig
from rayfold.fragment.stage import FragmentStage
from rayfold.io.storage import list_inputs
from rayfold.io.structure import read_structure_file
from rayfold.model.fragset import FragmentSet

LADDER_WINDOWS = (60, 78, 101, 131, 170, 221, 287, 373)  # residues; each ~1.3x the one before
# The other models are cut without the rod-cut veto, as rayfold cut them before it: the helical
# hairpins of F4MNX4/F4MNX8/F4MNY0 then give 8-9 near-identical slabs each, a second chain-prone
# family of fragments that the set keeps on purpose.
SLAB_CUTTING = FragmentConfig(split_max_rg_ratio=None)


def ladder_id(entry_id: str, length: int) -> str:
    return f"{entry_id}_w{length:03d}"


def chaining_set(
    ladder: Path, others: Sequence[Path], windows: Sequence[int] = LADDER_WINDOWS, config: FragmentConfig = SLAB_CUTTING
) -> FragmentSet:
    """Windows of `ladder`'s first chain centred on its middle, plus the passed fragments of `others`."""
    ids, coords, sequences, plddt, states = [], [], [], [], []
    entry = read_structure_file(ladder)
    chain = entry.chains[0]
    centre = len(chain.sequence) // 2
    for length in windows:
        index = np.arange(centre - length // 2, centre - length // 2 + length)
        ids.append(ladder_id(entry.entry_id, length))
        coords.append(np.asarray(chain.ca_coords[index], dtype=np.float64))
        sequences.append("".join(chain.sequence[k] for k in index))
        plddt.append(float(np.mean(chain.plddt[index])))
        states.append(encode_fragment(entry, chain.chain_id, index))
    table = FragmentStage(config).process(list_inputs([str(p) for p in others])).fragments
    for row in table.filter(table.column("passed")).to_pylist():
        ids.append(row["fragment_id"])
        coords.append(np.asarray(row["ca_coords"], dtype=np.float64))
        sequences.append(row["sequence"])
        plddt.append(row["mean_plddt"])
        states.append(row["states_3di"])
    return FragmentSet.from_arrays(ids, coords, sequences, np.array(plddt), states)
