"""Model folders: ``model.json`` (family, labels, config, metrics) plus the family's own files.

Writing is staged in a hidden sibling folder and swapped in with renames at the very end, so a
failed run never leaves a half-written model and never damages the previous one.
"""

from __future__ import annotations

import json
import logging
import shutil
from pathlib import Path
from typing import Any

from training.core.errors import InputError
from training.models.families import family_module
from training.core.system import recover_folder, staging_folder, swap_in

MANIFEST = "model.json"
MODEL_FORMAT = 1  # the layout of the folders this code writes and reads (model.json "format"); bump on a change
log = logging.getLogger(__name__)


def recover(dest: Path) -> list[str]:
    """Undo what a killed run left next to ``dest`` (see :func:`training.core.system.recover_folder`)."""
    return recover_folder(dest)


def stage(dest: Path) -> Path:
    """A fresh staging folder next to ``dest`` (:func:`training.core.system.staging_folder`), after cleaning up
    what a killed run left there; an unusable ``output_dir`` is one :class:`InputError` line."""
    try:
        for line in recover(dest):
            log.warning(line)
        return staging_folder(dest)
    except (FileExistsError, NotADirectoryError):
        raise InputError(f"output_dir {dest.parent}: exists but is not a folder") from None
    except PermissionError:
        raise InputError(f"output_dir {dest.parent}: not writable (permission denied)") from None


def write(folder: Path, model, family: str, labels: list[str], config: dict, metrics: dict,
          extra: dict[str, Any] | None = None) -> Path:
    """Save a fitted family model and its manifest into ``folder``."""
    model.save(folder)
    manifest = {"format": MODEL_FORMAT, "family": family, "labels": labels, "params": config["model"]["params"],
                "seed": config["seed"], "config": config, "metrics": metrics, **(extra or {})}
    (folder / MANIFEST).write_text(json.dumps(manifest, indent=2, default=str), encoding="utf-8")
    return folder


def commit(staging: Path, dest: Path) -> Path:
    """Swap the staged folder into ``dest``; the old model is removed only after the swap."""
    return swap_in(staging, dest)


def discard(staging: Path) -> None:
    shutil.rmtree(staging, ignore_errors=True)


class DamagedModelError(ValueError):
    """A model folder whose files cannot be read back (truncated, edited, or from an incompatible version)."""


class IncompatibleModelError(DamagedModelError):
    """A model folder in another format than this code reads (written by an older or newer version)."""


def read_manifest(folder: Path) -> dict:
    path = Path(folder) / MANIFEST
    if not path.is_file():
        raise FileNotFoundError(f"{folder}: no {MANIFEST}; not a model folder")
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise DamagedModelError(f"{path}: damaged model manifest ({type(exc).__name__}: {exc}); "
                                "retrain the model") from None
    missing = [key for key in ("family", "labels", "params", "seed") if key not in manifest] \
        if isinstance(manifest, dict) else ["(not an object)"]
    if missing:
        raise DamagedModelError(f"{path}: damaged model manifest (no '{missing[0]}'); retrain the model")
    found = manifest.get("format", 1)  # folders from before the key have format 1's layout
    if found != MODEL_FORMAT:
        raise IncompatibleModelError(f"{folder}: model folder format {found!r}, but this version of training reads "
                                     f"format {MODEL_FORMAT}; retrain the model, or load it with the version "
                                     "that wrote it")
    return manifest


def load_family_model(folder: Path):
    """(family model, manifest) from an exported folder, whatever the family; damage is one clear error."""
    manifest = read_manifest(folder)
    try:
        module = family_module(manifest["family"])
        params = module.Params.model_validate(manifest["params"])
        return module.Model.load(Path(folder), params, manifest["labels"], manifest["seed"]), manifest
    except (FileNotFoundError, ModuleNotFoundError, InputError):  # InputError: e.g. a backend's missing runtime
        raise
    except Exception as exc:  # unpickling a truncated or edited file raises almost anything
        raise DamagedModelError(f"{folder}: model files are damaged or unreadable ({type(exc).__name__}: "
                                f"{str(exc)[:200] or 'no detail'}); retrain the model") from None
