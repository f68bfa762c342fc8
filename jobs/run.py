"""Entry point for `ray job submit`: one release of the whole job on the cluster it runs in.

    ray job submit --address http://127.0.0.1:8265 --working-dir . -- \
        python jobs/run.py s3://bucket/predictions/ --out s3://bucket/rayfold/main

Inside a submitted job RAY_ADDRESS points at the cluster and rayfold connects to it. Arguments are
those of `rayfold run` (see `rayfold run --help`).
"""

import sys
from pathlib import Path

try:
    import rayfold  # noqa: F401
except ImportError:  # a cluster without rayfold installed: use the uploaded working directory
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from rayfold.cli import main

if __name__ == "__main__":
    sys.exit(main(["run", *sys.argv[1:]]))
