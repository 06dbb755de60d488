"""Score pages at scale: ``python -m training.score INPUT --model MODEL --out OUTPUT`` (see :mod:`training.serving.score`)."""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from training.cli.guard import guarded
from training.core.console import quiet_third_parties
from training.models import embedding_store
from training.serving.score import DUPLICATE_POLICIES, score, staging_folder


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m training.score", description=__doc__.splitlines()[0])
    parser.add_argument("input", type=Path, help="folder of .txt pages, .jsonl/.csv/.parquet file, or saved dataset")
    parser.add_argument("--model", required=True, help="model folder or MLflow URI (models:/name@alias)")
    parser.add_argument("--out", required=True, type=Path, help="output .parquet or .jsonl (one row per sentence)")
    parser.add_argument("--text-column", default="text", help="column holding the page text (default: text)")
    parser.add_argument("--id-column", default=None, help="column holding the page id (default: <source name>-<row>)")
    parser.add_argument("--source-name", default=None,
                        help="name for ids of rows without one, <name>-<row>, as training names a source's rows "
                             "(default: the input's file stem)")
    parser.add_argument("--duplicate-ids", choices=DUPLICATE_POLICIES, default="refuse",
                        help="a page id that occurs more than once: refuse the input (default), or score the "
                             "later occurrences as <id>~2, <id>~3, ... (suffix); both list them in "
                             "<out>.duplicates.jsonl")
    parser.add_argument("--chunk-size", type=int, default=500, help="pages per chunk (default: 500)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    parser.add_argument("--no-cache", action="store_true",
                        help="neither read nor write the persistent embedding cache (TRAINING_EMBEDDING_CACHE)")
    args = parser.parse_args(argv)
    if args.no_cache:
        embedding_store.disable()
    quiet_third_parties(logging.WARNING)

    def work() -> None:
        result = score(args.input, args.model, args.out, args.text_column, args.id_column, args.chunk_size,
                       progress=False if args.no_progress else None, source_name=args.source_name,
                       duplicate_ids=args.duplicate_ids)
        skipped = f"; {len(result.bad)} bad row(s) skipped, listed in {result.report}" if result.bad else ""
        repeated = (f"; {result.repeated_ids} repeated page id(s) made unique, listed in {result.duplicates}"
                    if result.repeated_ids else "")
        resumed = f" ({result.resumed_chunks} chunk(s) from an earlier run)" if result.resumed_chunks else ""
        print(f"scored {result.pages} pages, {result.sentences} sentences into {result.out} in {result.seconds:.1f} s "
              f"({result.pages_per_second:.1f} pages/s){resumed}{skipped}{repeated}", file=sys.stderr)

    def stopped(exc: KeyboardInterrupt) -> str:
        return (f"finished chunks are kept in {staging_folder(args.out)}; "
                "run the same command again to continue")

    return guarded(work, stopped=stopped)


if __name__ == "__main__":
    sys.exit(main())
