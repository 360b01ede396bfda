"""``python -m gentools``: the same as the ``gentools`` command (see gentools.runner.cli)."""

import sys

from gentools.runner.cli import main

if __name__ == "__main__":
    sys.exit(main())
