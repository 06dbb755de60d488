"""``python -m training.review``: forwards to :mod:`training.cli.review`."""

import sys

from training.cli.review import main

if __name__ == "__main__":
    sys.exit(main())
