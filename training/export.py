"""Model folders: ``model.json`` (family, labels, config, metrics) plus the family's own files.

Writing is staged in a hidden sibling folder and swapped in with renames at the very end, so a
failed run never leaves a half-written model and never damages the previous one.
"""

from __future__ import annotations

import json
import shutil
import tempfile
from pathlib import Path
from typing import Any

from training.families import family_module

MANIFEST = "model.json"


def stage(dest: Path) -> Path:
    """A fresh staging folder next to ``dest`` (same filesystem, so the final rename is atomic)."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    return Path(tempfile.mkdtemp(prefix=f".{dest.name}-staging-", dir=dest.parent))


def write(folder: Path, model, family: str, labels: list[str], config: dict, metrics: dict,
          extra: dict[str, Any] | None = None) -> Path:
    """Save a fitted family model and its manifest into ``folder``."""
    model.save(folder)
    manifest = {"family": family, "labels": labels, "params": config["model"]["params"],
                "seed": config["seed"], "config": config, "metrics": metrics, **(extra or {})}
    (folder / MANIFEST).write_text(json.dumps(manifest, indent=2, default=str), encoding="utf-8")
    return folder


def commit(staging: Path, dest: Path) -> Path:
    """Swap the staged folder into ``dest``; the old model is removed only after the swap."""
    backup = None
    if dest.exists():
        backup = dest.with_name(f".{dest.name}-old-{staging.name.rsplit('-', 1)[-1]}")
        dest.rename(backup)
    try:
        staging.rename(dest)
    except OSError:
        if backup is not None:
            backup.rename(dest)
        raise
    if backup is not None:
        shutil.rmtree(backup, ignore_errors=True)
    return dest


def discard(staging: Path) -> None:
    shutil.rmtree(staging, ignore_errors=True)


def read_manifest(folder: Path) -> dict:
    path = Path(folder) / MANIFEST
    if not path.is_file():
        raise FileNotFoundError(f"{folder}: no {MANIFEST}; not a model folder")
    return json.loads(path.read_text(encoding="utf-8"))


def load_family_model(folder: Path):
    """(family model, manifest) from an exported folder, whatever the family."""
    manifest = read_manifest(folder)
    module = family_module(manifest["family"])
    params = module.Params.model_validate(manifest["params"])
    return module.Model.load(Path(folder), params, manifest["labels"], manifest["seed"]), manifest
