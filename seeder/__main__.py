"""``python -m seeder``: the ``seeder`` command line."""

import sys

from seeder.ops.cli import main

if __name__ == "__main__":
    sys.exit(main())
