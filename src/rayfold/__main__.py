"""`python -m rayfold ...`: the same CLI as the `rayfold` command."""

import sys

from rayfold.cli import main

sys.exit(main())
