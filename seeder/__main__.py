"""``python -m seeder``: the ``seeder`` command line."""

import sys

from seeder.cli import main

if __name__ == "__main__":
    sys.exit(main())
