"""``python -m training.plan``: forwards to :mod:`training.cli.plan`."""

import sys

from training.cli.plan import main

if __name__ == "__main__":
    sys.exit(main())
