"""Train, evaluate, track and export: ``python -m training.train [--config FILE ...] [key=value ...]``.

One config trains one run. Several configs (or a sweep file) train one child run each under a
parent run and print a comparison table sorted by macro-F1.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from training.cli.guard import first_line, guarded
from training.cli.job import summary, train_one
from training.cli.sweep import expand, run_sweep
from training.core.console import quiet_third_parties
from training.models import embedding_store


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m training.train", description=__doc__.splitlines()[0])
    parser.add_argument("--config", nargs="+", default=None,  # str, not Path: Path("k=sqlite:////x") drops slashes
                        help="config file(s) or sweep file(s) (default: configs/default.yaml)")
    parser.add_argument("--no-promote", action="store_true", help="never move the registry's champion alias")
    parser.add_argument("--no-cache", action="store_true",
                        help="neither read nor write the persistent embedding cache (TRAINING_EMBEDDING_CACHE)")
    parser.add_argument("overrides", nargs="*", help="key=value overrides applied to every config")
    args = parser.parse_args(argv)
    if args.no_cache:
        embedding_store.disable()
    if args.config:  # `--config a.yaml key=value`: nargs="+" also takes the overrides; give them back
        args.overrides = [c for c in args.config if "=" in c] + args.overrides
        args.config = [Path(c) for c in args.config if "=" not in c] or None
    quiet_third_parties()
    import mlflow
    from mlflow.exceptions import MlflowException

    def work() -> None:
        configs = expand(args.config, args.overrides)
        if len(configs) == 1:
            print("\n" + summary(train_one(configs[0], promote=not args.no_promote)))
        else:
            print("\n" + run_sweep(configs, promote=not args.no_promote))

    def tracking_failed(exc: Exception) -> str:  # the tracking server went away mid-run (after its retries), or refused
        return (f"MLflow tracking ({mlflow.get_tracking_uri()}): {first_line(exc)}; "
                "no model folder was written or replaced")

    def stopped(exc: KeyboardInterrupt) -> str:
        return "the MLflow run is marked FAILED; " + "; ".join(
            getattr(exc, "__notes__", None) or ["no model folder was written or replaced"])

    return guarded(work, stopped=stopped, failures={MlflowException: tracking_failed})


if __name__ == "__main__":
    sys.exit(main())
