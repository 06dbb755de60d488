"""``python -m training.train``: forwards to :mod:`training.cli.train`."""

import sys

from training.cli.train import main

if __name__ == "__main__":
    sys.exit(main())
