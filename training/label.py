"""``python -m training.label``: forwards to :mod:`training.cli.label`."""

import sys

from training.cli.label import main

if __name__ == "__main__":
    sys.exit(main())
