"""Several configs under one parent run, and sweep files that list configs and parameter grids.

A sweep file is YAML with a top-level ``sweep`` key::

    sweep: families            # the parent run's name
    configs: [configs/default.yaml, configs/minilm-head.yaml]
    grid:                      # optional: each combination becomes one more config
      - config: configs/default.yaml
        params: {model.params.C: [1.0, 4.0, 16.0]}
"""

from __future__ import annotations

import logging
import tempfile
from pathlib import Path

from sklearn.model_selection import ParameterGrid

from training.core.config import Config, PROJECT_ROOT, load_config, read_yaml
from training.core.errors import InputError

log = logging.getLogger("training")


def _slug(value) -> str:
    return str(value).replace("/", "_").replace(" ", "").replace(".", "p")


def _in_file_order(grid: ParameterGrid, keys: list[str], values: dict[str, list]) -> list[dict]:
    """The grid's combinations in the order the file lists keys and values (``ParameterGrid`` sorts the keys):
    the first key varies slowest, as the runs always came."""
    return sorted(grid, key=lambda combo: [values[k].index(combo[k]) for k in keys])


def _from_sweep(path: Path, raw: dict, overrides: list[str]) -> list[Config]:
    unknown = set(raw) - {"sweep", "configs", "grid"}
    if unknown:
        raise InputError(f"{path}: key '{sorted(unknown)[0]}': unknown key")
    configs = [load_config(PROJECT_ROOT / c, overrides) for c in raw.get("configs") or []]
    for number, entry in enumerate(raw.get("grid") or []):
        if not isinstance(entry, dict) or "config" not in entry or not isinstance(entry.get("params"), dict):
            raise InputError(f"{path}: key 'grid.{number}': needs 'config' and a 'params' mapping")
        keys = list(entry["params"])  # names and overrides keep the order the file gives
        values = {k: v if isinstance(v, list) else [v] for k, v in entry["params"].items()}
        empty = [k for k in keys if not values[k]]
        if empty:
            raise InputError(f"{path}: key 'grid.{number}.params.{empty[0]}': an empty list of values")
        base = Path(entry["config"])
        for combo in _in_file_order(ParameterGrid(values), keys, values):
            suffix = "-".join(f"{k.split('.')[-1]}{_slug(combo[k])}" for k in keys)
            assignments = [f"{k}={combo[k]}" for k in keys]
            config = load_config(PROJECT_ROOT / base, [*overrides, *assignments])
            configs.append(config.model_copy(update={"name": f"{config.name}-{suffix}"}))
    if not configs:
        raise InputError(f"{path}: a sweep needs 'configs' or 'grid'")
    return configs


def expand(paths: list[Path] | None, overrides: list[str]) -> list[Config]:
    """Config files and sweep files → the list of configs to train."""
    if not paths:
        return [load_config(None, overrides)]
    configs: list[Config] = []
    for path in paths:
        raw = read_yaml(path)
        if isinstance(raw, dict) and "sweep" in raw:
            configs.extend(_from_sweep(path, raw, overrides))
        else:
            configs.append(load_config(path, overrides))
    names = [c.name for c in configs]
    if len(set(names)) != len(names):
        raise InputError(f"two configs share the name '{next(n for n in names if names.count(n) > 1)}'")
    return configs


def _calibration_columns(calibration: dict | None) -> dict:
    """The out-of-fold ECE as the model gives it (``ece``) and after temperature scaling (``ece_T``, cross-fitted)."""
    if not calibration:
        return {"ece": "", "ece_T": ""}
    after = calibration.get("ece_calibrated", float("nan"))
    return {"ece": round(calibration["ece"], 3),
            "ece_T": round(after, 3) if calibration["method"] == "temperature" and after == after else ""}


def comparison_rows(results) -> list[dict]:
    rows = []
    for r in sorted(results, key=lambda r: r.macro_f1, reverse=True):
        m = r.metrics["model"]
        row = {"config": r.config.name, "family": r.config.model.family, "macro_f1": round(m["macro_f1"], 4),
               "fold_std": round(m["macro_f1_fold_std"], 4),
               **_calibration_columns(r.metrics.get("calibration")),
               "train_s": round(r.train_seconds, 1),
               "total_s": round(r.seconds, 1), "run_id": r.run_id}
        row.update({f"f1_{k}": round(v["f1"], 3) for k, v in m["per_class"].items()})
        rows.append(row)
    return rows


def format_rows(rows: list[dict]) -> str:
    if not rows:
        return "(no runs)"
    columns = [c for c in rows[0] if c != "run_id"]
    widths = {c: max(len(c), *(len(str(r[c])) for r in rows)) for c in columns}
    line = lambda values: "  ".join(str(values[c]).ljust(widths[c]) for c in columns)
    return "\n".join([line({c: c for c in columns}), line({c: "-" * widths[c] for c in columns}),
                      *(line(r) for r in rows)])


def run_sweep(configs: list[Config], promote: bool = True) -> str:
    """Train each config as a child run of one parent run; return the comparison table."""
    import mlflow

    from training.tracking import track
    from training.cli.job import train_one

    track.configure(configs[0])
    name = f"sweep-{len(configs)}-configs"
    results = []
    with mlflow.start_run(run_name=name, tags={"git_commit": track.git_commit(), "sweep": "true"}) as parent:
        mlflow.log_param("configs", ",".join(c.name for c in configs))
        for number, config in enumerate(configs, start=1):
            log.info("sweep %d/%d: %s (%s)", number, len(configs), config.name, config.model.family)
            results.append(train_one(config, nested=True, promote=promote))
        rows = comparison_rows(results)
        table = format_rows(rows)
        track.log_table(rows, "comparison")
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / "comparison.txt"
            path.write_text(table + "\n", encoding="utf-8")
            mlflow.log_artifact(str(path))
        best = rows[0]
        mlflow.set_tag("best_run_id", best["run_id"])
        mlflow.set_tag("best_config", best["config"])
        mlflow.log_metric("best.macro_f1", best["macro_f1"])
        mlflow.log_metric("configs", len(configs))
        parent_id = parent.info.run_id
    champions = [r.champion for r in results if r.champion]
    return "\n".join([table, "", f"parent run: {parent_id} (best: {best['config']}, run {best['run_id']})",
                      *champions])
