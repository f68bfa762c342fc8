"""Entry point for `ray job submit`: fragment structures on the cluster the job runs in.

    ray job submit --address http://127.0.0.1:8265 --working-dir . -- \
        python jobs/fragment.py s3://bucket/predictions/ --out s3://bucket/rayfold/run-1

Inside a submitted job RAY_ADDRESS points at the cluster, and rayfold connects to it.
"""

import sys

from rayfold.cli import main

if __name__ == "__main__":
    sys.exit(main(["fragment", *sys.argv[1:]]))
