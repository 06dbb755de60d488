"""Fitted scikit-learn parts on disk with ``skops.io``: a format that stores data, not code.

A pickle (joblib) file names any callable and calls it while loading, so loading one runs whatever
it says. A skops file is a zip of JSON and numpy arrays that skops rebuilds node by node, and only
from types it is told to trust: its own defaults (builtins, numpy and scipy containers, the
scikit-learn estimators) plus :data:`TRUSTED` below, the few other types this project's models are
made of. :func:`load` lists the file's types with ``skops.io.get_untrusted_types`` first and refuses
the file, naming the type, when any of them is not on that list; it never trusts a file as a whole.
The project's own parts keep only plain data in their state (see their ``__getstate__``), so
nothing else needs trusting.
"""

from __future__ import annotations

import importlib.abc
import sys
from functools import cache
from pathlib import Path
from types import ModuleType
from typing import Any

# Beyond skops's defaults, exactly the types the families' fitted parts are made of (by full name, so
# this module imports none of them; a test checks that each name still is a class).
TRUSTED: frozenset[str] = frozenset({
    # scikit-learn internals that skops does not trust by default
    "sklearn.ensemble._hist_gradient_boosting.predictor.TreePredictor",  # the trees head's fitted trees
    # this project's blocks and heads (training.models.blocks, training.models.heads)
    "training.models.blocks.SentenceEmbedding",
    "training.models.blocks.InnerLayersEmbedding",
    "training.models.blocks.WholeSentenceEmbedding",
    "training.models.blocks.PageCoherence",
    "training.models.blocks.PageEmbedding",
    "training.models.blocks.PrincipalComponents",
    "training.models.blocks.WordNgrams",
    "training.models.blocks.RuleVotes",
    "training.models.blocks.PagePosition",
    "training.models.blocks.LineShape",
    "training.models.blocks.Recurrence",
    "training.models.blocks.PageOrder",
    "training.models.heads.BlendedClassifier",
    "training.models.heads.PerceptronBag",
    "training.models.heads.PageSequenceHead",
})


class _NoTorch(importlib.abc.MetaPathFinder):
    """An import finder under which ``import torch`` fails, as if torch were not installed."""

    def find_spec(self, name: str, path: Any = None, target: Any = None) -> None:
        if name == "torch" or name.startswith("torch."):
            raise ModuleNotFoundError(f"No module named '{name}' (not imported while skops loads)", name=name)
        return None


@cache
def _skops_io() -> ModuleType:
    """``skops.io``, imported without importing torch.

    On import skops lists scikit-learn's estimators by walking every sklearn package, and that walk
    imports ``sklearn.externals.array_api_compat.torch``, which imports torch whenever it is installed:
    seconds of start-up and gigabytes of memory for a TF-IDF or ONNX model that never touches torch.
    For the length of that import torch cannot be imported (the walk skips packages that fail to
    import); a torch imported before is left alone.
    """
    if "torch" in sys.modules:
        import skops.io
        return skops.io
    blocker = _NoTorch()
    sys.meta_path.insert(0, blocker)
    try:
        import skops.io
    finally:
        sys.meta_path.remove(blocker)
    return skops.io


class StoredFileError(ValueError):
    """A stored file that was not loaded; the message is one line naming it."""


class UntrustedTypeError(StoredFileError):
    """The file holds a type outside the trusted ones."""


class UnreadableFileError(StoredFileError):
    """The file is no skops file (another format, truncated, edited) or does not rebuild."""


def dump(obj: Any, path: Path) -> None:
    """Store ``obj`` (a fitted scikit-learn estimator or one of the project's blocks and heads) at ``path``."""
    _skops_io().dump(obj, Path(path))


def load(path: Path) -> Any:
    """What :func:`dump` stored at ``path``, or :class:`UntrustedTypeError` naming a type it may not build.

    The bytes are read once, so the file checked is the file loaded.
    """
    data = Path(path).read_bytes()
    sio = _skops_io()
    try:
        beyond_defaults = set(sio.get_untrusted_types(data=data))
    except Exception as exc:  # not a zip, no schema, a schema skops cannot read: reading it says nothing more
        raise UnreadableFileError(f"{path}: damaged or not a skops file ({_brief(exc)})") from None
    refused = sorted(beyond_defaults - TRUSTED)
    if refused:
        more = f" (and {len(refused) - 1} more)" if len(refused) > 1 else ""
        raise UntrustedTypeError(f"{path}: not loaded: it holds type '{refused[0]}'{more}, which is not among the "
                                 "trusted model parts (scikit-learn, numpy, scipy, training.models)")
    try:
        return sio.loads(data, trusted=sorted(beyond_defaults))
    except Exception as exc:  # trusted types with broken contents (a truncated array, an edited schema)
        raise UnreadableFileError(f"{path}: damaged, does not rebuild ({_brief(exc)})") from None


def _brief(exc: Exception) -> str:
    return f"{type(exc).__name__}: {' '.join(str(exc).split())[:200] or 'no detail'}"
