"""``python -m edgepack``: the same command line as the ``edgepack`` console script."""

import sys

from edgepack.cli import main

if __name__ == "__main__":
    sys.exit(main())
