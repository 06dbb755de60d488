"""Model folders: ``model.json`` (family, labels, config, metrics) plus the family's own files.

Writing is staged in a hidden sibling folder and swapped in with renames at the very end, so a
failed run never leaves a half-written model and never damages the previous one.

The family's files hold data, not code (scikit-learn parts in skops files checked against an
allow-list, see :mod:`training.models.storage`; tensors in safetensors; ONNX graphs; JSON and YAML).
``model.json`` is written last and lists the sha256 of every other file; loading checks the folder
against it first, so an edited, missing or added file is one line naming it. The digests catch
accidents and naive edits, not an attacker, who can rewrite them too: safety comes from the formats.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
from pathlib import Path
from typing import Any

from training.core.errors import InputError
from training.core.system import recover_folder, staging_folder, swap_in
from training.core.targets import check_writable_folder, reason, refused, refused_writes
from training.models.families import family_module
from training.models.storage import UnreadableFileError, UntrustedTypeError

MANIFEST = "model.json"
DIGESTS = "files"  # model.json key: each other file of the folder (relative POSIX path) -> its sha256
RETRAIN = "retrain it with `python -m training.train`"
# The layout of the folders this code writes and reads (model.json "format"); bump on a change.
# 1: joblib pickles (no "format" key); 2: skops files + safetensors, every file's sha256 in model.json.
MODEL_FORMAT = 2
TEMPERATURE = "temperature"  # model.json key: served probabilities are softmax(log p / T); absent in older folders: 1
log = logging.getLogger(__name__)


def recover(dest: Path) -> list[str]:
    """Undo what a killed run left next to ``dest`` (see :func:`training.core.system.recover_folder`)."""
    return recover_folder(dest)


def check_target(dest: Path) -> None:
    """Before any work: a model can be staged beside ``dest`` and swapped in (``dest`` is no file)."""
    check_writable_folder(dest.parent, "output_dir")
    if dest.exists() and not dest.is_dir():
        raise InputError(f"output_dir {dest}: exists but is not a folder")


def stage(dest: Path) -> Path:
    """A fresh staging folder next to ``dest`` (:func:`training.core.system.staging_folder`), after cleaning up
    what a killed run left there; an unusable ``output_dir`` is one :class:`InputError` line."""
    try:
        for line in recover(dest):
            log.warning(line)
        return staging_folder(dest)
    except (FileExistsError, NotADirectoryError):
        raise InputError(f"output_dir {dest.parent}: exists but is not a folder") from None
    except OSError as exc:  # a read-only mount (EROFS) as much as a permission
        if not refused(exc):
            raise
        raise InputError(f"output_dir {dest.parent}: not writable ({reason(exc).lower()})") from None


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _files(folder: Path) -> list[str]:
    """Every file in ``folder`` but the manifest, as relative POSIX paths, sorted (symlinked folders not entered)."""
    found = []
    for root, _, names in os.walk(folder):
        found += [(Path(root) / name).relative_to(folder).as_posix() for name in names]
    return sorted(name for name in found if name != MANIFEST)


def file_digests(folder: Path) -> dict[str, str]:
    """``{relative path: sha256}`` of every file in ``folder`` but the manifest."""
    return {name: _sha256(Path(folder) / name) for name in _files(Path(folder))}


def write(folder: Path, model, family: str, labels: list[str], config: dict, metrics: dict,
          extra: dict[str, Any] | None = None, temperature: float = 1.0) -> Path:
    """Save a fitted family model into ``folder``, then its manifest with the digests of the files just written;
    a full disk is one line naming its folder.

    ``temperature``: what the served probabilities are tempered by (:func:`temperature_of`; 1: as the model gives
    them), kept in the manifest as data."""
    with refused_writes(f"output_dir {folder.parent}", "cannot write the model",
                        "no model folder was written or replaced"):
        model.save(folder)
        manifest = {"format": MODEL_FORMAT, "family": family, "labels": labels, "params": config["model"]["params"],
                    "seed": config["seed"], TEMPERATURE: float(temperature), "config": config, "metrics": metrics,
                    **(extra or {}),
                    DIGESTS: file_digests(folder)}
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


class UnsafeModelError(DamagedModelError):
    """A model folder refused because loading it could run code: joblib pickles of an older version, a type
    outside the trusted ones, or a file its manifest does not list."""


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
    if found == 1:  # joblib pickles: say so (check_files names the pickle) rather than only the number
        check_files(folder, manifest)
    if found != MODEL_FORMAT:
        raise IncompatibleModelError(f"{folder}: model folder format {found!r}, but this version of training reads "
                                     f"format {MODEL_FORMAT}; retrain the model, or load it with the version "
                                     "that wrote it")
    temperature_of(manifest, path)
    return manifest


def temperature_of(manifest: dict, where: Path | str = MANIFEST) -> float:
    """The manifest's temperature (1.0 in folders written before calibration); not a positive number: damaged."""
    import math

    value = manifest.get(TEMPERATURE, 1.0)
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value <= 0:
        raise DamagedModelError(f"{where}: damaged model manifest ('{TEMPERATURE}' is {value!r}, not a positive "
                                "number); retrain the model")
    return float(value)


def check_files(folder: Path, manifest: dict) -> None:
    """The folder's files are exactly those the manifest lists, each with its digest; else one error naming one."""
    folder = Path(folder)
    listed = manifest.get(DIGESTS)
    if not isinstance(listed, dict):
        pickles = [name for name in _files(folder) if name.endswith((".joblib", ".pkl", ".pickle"))]
        what = f"its {pickles[0]} is a pickle, which can run code when loaded" if pickles else \
            f"its {MANIFEST} lists no file digests"
        raise UnsafeModelError(f"{folder}: saved by an older version ({what}); not loaded: {RETRAIN}")
    present = _files(folder)
    added = sorted(set(present) - set(listed))
    if added:
        raise UnsafeModelError(f"{folder / added[0]}: not among the files {MANIFEST} lists (added after the "
                               f"export?); not loaded: remove it or {RETRAIN}")
    for name in sorted(listed):
        if name not in present:
            raise DamagedModelError(f"{folder / str(name)}: missing (listed in {MANIFEST}); the model folder is "
                                    f"damaged: {RETRAIN}")
        if _sha256(folder / name) != listed[name]:
            raise DamagedModelError(f"{folder / name}: edited or damaged (its sha256 differs from {MANIFEST}'s); "
                                    f"{RETRAIN}")


def load_family_model(folder: Path):
    """(family model, manifest) from an exported folder, whatever the family; damage is one clear error."""
    manifest = read_manifest(folder)
    check_files(folder, manifest)
    try:
        model = family_module(manifest["family"]).Model.load(Path(folder), manifest["params"], manifest["labels"],
                                                             manifest["seed"])
        return model, manifest
    except (FileNotFoundError, ModuleNotFoundError, InputError):  # InputError: e.g. a backend's missing runtime
        raise
    except UntrustedTypeError as exc:
        raise UnsafeModelError(str(exc)) from None
    except UnreadableFileError as exc:
        raise DamagedModelError(f"{exc}; {RETRAIN}") from None
    except Exception as exc:  # unpickling a truncated or edited file raises almost anything
        raise DamagedModelError(f"{folder}: model files are damaged or unreadable ({type(exc).__name__}: "
                                f"{str(exc)[:200] or 'no detail'}); retrain the model") from None
