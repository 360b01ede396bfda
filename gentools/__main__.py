"""``python -m gentools``: the same as the ``gentools`` command (see gentools.cli)."""

import sys

from gentools.cli import main

if __name__ == "__main__":
    sys.exit(main())
