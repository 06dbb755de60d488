"""Model folders: ``model.json`` (family, labels, config, metrics) plus the family's own files.

Writing is staged in a hidden sibling folder and swapped in with renames at the very end, so a
failed run never leaves a half-written model and never damages the previous one.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

from training.core.errors import InputError
from training.core.targets import check_writable_folder, reason, refused, refused_writes
from training.models.families import family_module
from training.core.system import current_umask, pid_alive

MANIFEST = "model.json"
log = logging.getLogger(__name__)


def recover(dest: Path) -> list[str]:
    """Undo what a killed run left next to ``dest``; returns what was done, one phrase each.

    A staging folder of a process that is gone is removed; a previous model stranded as
    ``.<name>-old-*`` by a kill between the two renames of :func:`commit` is put back.
    """
    done = []
    for staging in sorted(dest.parent.glob(f".{dest.name}-staging-*")):
        pid = staging.name[len(f".{dest.name}-staging-"):].split("-", 1)[0]
        if pid.isdigit() and not pid_alive(int(pid)):
            shutil.rmtree(staging, ignore_errors=True)
            done.append(f"removed {staging.name} left by a stopped run")
    for old in sorted(dest.parent.glob(f".{dest.name}-old-*")):
        if not dest.exists() and (old / MANIFEST).is_file():
            old.rename(dest)
            done.append(f"restored {dest.name} from {old.name} (a run was stopped while swapping it in)")
        elif dest.exists():
            shutil.rmtree(old, ignore_errors=True)
    return done


def check_target(dest: Path) -> None:
    """Before any work: a model can be staged beside ``dest`` and swapped in (``dest`` is no file)."""
    check_writable_folder(dest.parent, "output_dir")
    if dest.exists() and not dest.is_dir():
        raise InputError(f"output_dir {dest}: exists but is not a folder")


def stage(dest: Path) -> Path:
    """A fresh staging folder next to ``dest`` (same filesystem, so the final rename is atomic).

    Its name carries this process id, so a later run can tell a dead run's leftovers from a live one's.
    Created with the user's umask (``mkdtemp`` alone would make it 0700, unreadable to a serving account).
    """
    from training.core.errors import InputError

    try:
        dest.parent.mkdir(parents=True, exist_ok=True)
        for line in recover(dest):
            log.warning(line)
        folder = Path(tempfile.mkdtemp(prefix=f".{dest.name}-staging-{os.getpid()}-", dir=dest.parent))
    except (FileExistsError, NotADirectoryError):
        raise InputError(f"output_dir {dest.parent}: exists but is not a folder") from None
    except OSError as exc:  # a read-only mount (EROFS) as much as a permission
        if not refused(exc):
            raise
        raise InputError(f"output_dir {dest.parent}: not writable ({reason(exc).lower()})") from None
    folder.chmod(0o777 & ~current_umask())
    return folder


def write(folder: Path, model, family: str, labels: list[str], config: dict, metrics: dict,
          extra: dict[str, Any] | None = None) -> Path:
    """Save a fitted family model and its manifest into ``folder``; a full disk is one line naming its folder."""
    manifest = {"family": family, "labels": labels, "params": config["model"]["params"],
                "seed": config["seed"], "config": config, "metrics": metrics, **(extra or {})}
    with refused_writes(f"output_dir {folder.parent}", "cannot write the model",
                        "no model folder was written or replaced"):
        model.save(folder)
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


class DamagedModelError(ValueError):
    """A model folder whose files cannot be read back (truncated, edited, or from an incompatible version)."""


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
