"""Freeze the evaluation plan: ``python -m training.plan [--config FILE] [--out FILE] [key=value ...]``."""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from training.cli.guard import guarded
from training.core.errors import InputError
from training.core.config import load_config
from training.evaluation.plan import freeze, write_plan
from training.labelling.stage import build


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m training.plan", description=__doc__.splitlines()[0])
    parser.add_argument("--config", type=Path, default=None, help="config whose gold is planned (default: default)")
    parser.add_argument("--out", type=Path, default=None, help="plan file (default: the config's evaluation.plan)")
    parser.add_argument("overrides", nargs="*", help="key=value overrides")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(message)s")

    def work() -> None:
        config = load_config(args.config, args.overrides)
        out = args.out or (config.resolve(config.evaluation.plan) if config.evaluation.plan else None)
        if out is None:
            raise InputError("no plan file: give --out or set key 'evaluation.plan'")
        labelled = build(config)
        articles = [labelled.sentences[row].article_id for row in labelled.gold_index]
        assigned = freeze(articles, labelled.gold_labels, config.evaluation.folds, config.seed)
        write_plan(out, assigned, config.evaluation.folds, config.seed)
        print(f"{out}: {len(assigned)} pages in {config.evaluation.folds} folds")

    return guarded(work)


if __name__ == "__main__":
    sys.exit(main())
