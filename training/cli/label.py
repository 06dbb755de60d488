"""Label the corpus with the rules: ``python -m training.label [--config FILE] [--out DIR] [key=value ...]``."""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from training.cli.guard import guarded
from training.core.config import PROJECT_ROOT, load_config
from training.labelling.stage import build, save_dataset, summary


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m training.label", description=__doc__.splitlines()[0])
    parser.add_argument("--config", type=Path, default=None, help="config file (default: configs/default.yaml)")
    parser.add_argument("--out", type=Path, default=None, help="dataset folder (default: data/labelled/<name>)")
    parser.add_argument("overrides", nargs="*", help="key=value overrides, e.g. labelling.combiner=label_model")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(message)s")

    def work() -> None:
        config = load_config(args.config, args.overrides)
        labelled = build(config)
        out = save_dataset(labelled, args.out or PROJECT_ROOT / "data" / "labelled" / config.name)
        print(summary(labelled, config.labelling.min_rule_precision))
        print(f"\nlabelled dataset written to {out}")

    return guarded(work)


if __name__ == "__main__":
    sys.exit(main())
