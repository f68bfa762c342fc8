"""Scheduled re-clustering: submit this whenever new predictions may have been released.

    ray job submit --address http://HEAD:8265 --working-dir . \
        --submission-id "rayfold-recluster-$(date -u +%Y%m%dT%H)" -- \
        python jobs/recluster.py s3://bucket/predictions/ --out s3://bucket/rayfold/main

It is `rayfold run` over the whole input prefix: the manifest in --out makes it read and fragment
only inputs that are new or changed since the last release, then re-cluster every current fragment
as a fresh run would (TM-aligning only pairs no earlier release aligned) and append one release
record. Add --sync when models can disappear from the prefix (withdrawn or replaced under another
name): they then leave the tables too. When nothing is new it writes nothing and exits 0. A fixed
--submission-id per period makes Ray refuse a second copy of the same slot.
"""

import sys
from pathlib import Path

try:
    import rayfold  # noqa: F401
except ImportError:
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from rayfold.cli import main

if __name__ == "__main__":
    sys.exit(main(["run", "--no-progress", *sys.argv[1:]]))
