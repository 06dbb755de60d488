"""``python -m training.score``: forwards to :mod:`training.cli.score`."""

import sys

from training.cli.score import main

if __name__ == "__main__":
    sys.exit(main())
