"""Train, evaluate, track and export: ``python -m training.train [--config FILE ...] [key=value ...]``.

One config trains one run. Several configs (or a sweep file) train one child run each under a
parent run and print a comparison table sorted by macro-F1.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from training.cli.job import summary, train_one
from training.cli.sweep import expand, run_sweep
from training.core.console import Terminated, end_on_sigterm, quiet_third_parties, stop_if_terminated
from training.core.errors import InputError

def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m training.train", description=__doc__.splitlines()[0])
    parser.add_argument("--config", nargs="+", default=None,  # str, not Path: Path("k=sqlite:////x") drops slashes
                        help="config file(s) or sweep file(s) (default: configs/default.yaml)")
    parser.add_argument("--no-promote", action="store_true", help="never move the registry's champion alias")
    parser.add_argument("overrides", nargs="*", help="key=value overrides applied to every config")
    args = parser.parse_args(argv)
    if args.config:  # `--config a.yaml key=value`: nargs="+" also takes the overrides; give them back
        args.overrides = [c for c in args.config if "=" in c] + args.overrides
        args.config = [Path(c) for c in args.config if "=" not in c] or None
    quiet_third_parties()
    end_on_sigterm()
    import mlflow
    from mlflow.exceptions import MlflowException



    try:
        configs = expand(args.config, args.overrides)
        if len(configs) == 1:
            result = train_one(configs[0], promote=not args.no_promote)
            print("\n" + summary(result))
        else:
            print("\n" + run_sweep(configs, promote=not args.no_promote))
        stop_if_terminated()
    except InputError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except MlflowException as exc:  # the tracking server went away mid-run (after its retries), or refused
        first = str(exc).strip().splitlines()[0][:300] if str(exc).strip() else type(exc).__name__
        print(f"error: MLflow tracking ({mlflow.get_tracking_uri()}): {first}; no model folder was written or replaced",
              file=sys.stderr)
        return 2
    except KeyboardInterrupt as exc:
        stopped = "terminated (SIGTERM)" if isinstance(exc, Terminated) else "interrupted"
        print(f"{stopped}: the MLflow run is marked FAILED; "
              + "; ".join(getattr(exc, "__notes__", None) or ["no model folder was written or replaced"]),
              file=sys.stderr)
        return 143 if isinstance(exc, Terminated) else 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
