"""Score pages at scale: ``python -m training.score INPUT --model MODEL --out OUTPUT`` (see :mod:`training.serving.score`)."""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from training.core.console import Terminated, end_on_sigterm, quiet_third_parties
from training.core.errors import InputError
from training.serving.score import score, staging_folder


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m training.score", description=__doc__.splitlines()[0])
    parser.add_argument("input", type=Path, help="folder of .txt pages, .jsonl/.csv/.parquet file, or saved dataset")
    parser.add_argument("--model", required=True, help="model folder or MLflow URI (models:/name@alias)")
    parser.add_argument("--out", required=True, type=Path, help="output .parquet or .jsonl (one row per sentence)")
    parser.add_argument("--text-column", default="text", help="column holding the page text (default: text)")
    parser.add_argument("--id-column", default=None, help="column holding the page id (default: <input stem>-<row>)")
    parser.add_argument("--chunk-size", type=int, default=500, help="pages per chunk (default: 500)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    args = parser.parse_args(argv)
    quiet_third_parties(logging.WARNING)
    end_on_sigterm()
    try:
        result = score(args.input, args.model, args.out, args.text_column, args.id_column, args.chunk_size,
                       progress=False if args.no_progress else None)
    except InputError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt as exc:
        print(f"{'terminated' if isinstance(exc, Terminated) else 'interrupted'}: finished chunks are kept in "
              f"{staging_folder(args.out)}; run the same command again to continue", file=sys.stderr)
        return 143 if isinstance(exc, Terminated) else 130
    skipped = f"; {len(result.bad)} bad row(s) skipped, listed in {result.report}" if result.bad else ""
    resumed = f" ({result.resumed_chunks} chunk(s) from an earlier run)" if result.resumed_chunks else ""
    print(f"scored {result.pages} pages, {result.sentences} sentences into {result.out} in {result.seconds:.1f} s "
          f"({result.pages_per_second:.1f} pages/s){resumed}{skipped}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
