"""Model folders carry no executable code: a tampered folder runs nothing when loaded (through ``load()``,
the batch scorer and the MLflow pyfunc model), even with its manifest rewritten to match; an edited, added
or missing file is one line naming it; every family round-trips with identical probabilities.

The payloads are real: :func:`test_the_payloads_run_code_where_their_format_lets_them` shows each one
writing its marker file when loaded the unsafe way, so "no marker" below means "nothing ran".
"""

from __future__ import annotations

import hashlib
import json
import os
import pickle
import re
import shutil
from pathlib import Path

import numpy as np
import pytest
import skops.io as sio
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import FunctionTransformer

from training.models import storage
from training.models.families import new_model
from training.tracking import export
from training.tracking.export import DamagedModelError, UnsafeModelError

from conftest import SAMPLE_TEXTS

LABELS = ["diplomatic_contact", "deployment", "drill", "boilerplate", "other"]
TRAIN_LABELS = ["diplomatic_contact", "boilerplate", "deployment", "drill", "other", "diplomatic_contact"] * 2
TINY = {
    "tfidf_logreg": {"ngram_max": 1},
    "minilm_head": {"max_length": 32},
    "minilm_hybrid": {"max_length": 32, "min_df": 1, "mlp_bag": 1, "mlp_hidden": 8, "tree_components": 4},
    "minilm_finetune": {"epochs": 1, "max_length": 32, "batch_size": 16},
}
DATA_SUFFIXES = {".skops", ".json", ".yaml", ".txt", ".safetensors", ".onnx"}


class RunsCodeWhenUnpickled:
    """A pickle (joblib) payload: unpickling it calls ``exec``, which writes the marker file."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return exec, (f"open({str(self.marker)!r}, 'w').write('ran')",)


class WritesMarkerWhenBuilt:
    """A skops payload: a loader that trusts this type calls ``__setstate__``, which writes the marker file."""

    def __init__(self, marker: Path) -> None:
        self.marker = str(marker)

    def __setstate__(self, state: dict) -> None:
        Path(state["marker"]).write_text("ran")


def _export(family: str, folder: Path) -> tuple[Path, np.ndarray]:
    """A tiny model of ``family`` fitted on a handful of sentences and exported to ``folder``; its probabilities."""
    model = new_model(family, TINY[family], LABELS, 0).fit(SAMPLE_TEXTS * 2, TRAIN_LABELS)
    folder.mkdir(parents=True)
    export.write(folder, model, family, LABELS, {"model": {"params": TINY[family]}, "seed": 0}, {})
    return folder, model.predict_proba(SAMPLE_TEXTS)


@pytest.fixture(scope="module")
def tfidf(tmp_path_factory):
    return _export("tfidf_logreg", tmp_path_factory.mktemp("tfidf") / "model")


@pytest.fixture(scope="module")
def hybrid(tmp_path_factory):
    return _export("minilm_hybrid", tmp_path_factory.mktemp("hybrid") / "model")


def _copy(folder: Path, tmp_path: Path) -> Path:
    return Path(shutil.copytree(folder, tmp_path / "tampered"))


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _rewrite_manifest(folder: Path) -> None:
    """What someone who tampers with a folder does next: make model.json's digests match the files again."""
    manifest = json.loads((folder / "model.json").read_text())
    manifest["files"] = {path.relative_to(folder).as_posix(): _sha256(path)
                         for path in sorted(folder.rglob("*")) if path.is_file() and path.name != "model.json"}
    (folder / "model.json").write_text(json.dumps(manifest))


def _stored_parts(folder: Path) -> list[Path]:
    """The files holding fitted scikit-learn parts, whatever the format (``*.skops`` now, ``*.joblib`` before)."""
    found = sorted(folder.glob("*.skops")) + sorted(folder.glob("*.joblib"))
    assert found, f"no stored parts in {folder}"
    return found


def _payload(kind: str, marker: Path) -> bytes:
    if kind == "pickle":
        return pickle.dumps(RunsCodeWhenUnpickled(marker))
    return sio.dumps(WritesMarkerWhenBuilt(marker))


def _replace_parts(folder: Path, kind: str, marker: Path) -> None:
    for path in _stored_parts(folder):
        path.write_bytes(_payload(kind, marker))
    _rewrite_manifest(folder)


def test_the_payloads_run_code_where_their_format_lets_them(tmp_path):
    pickled, built = tmp_path / "pickled", tmp_path / "built"
    pickle.loads(_payload("pickle", pickled))
    sio.loads(_payload("skops", built), trusted=[f"{__name__}.WritesMarkerWhenBuilt"])
    assert pickled.read_text() == "ran" and built.read_text() == "ran"


def _load_through(entry: str, folder: Path, tmp_path: Path) -> str:
    """Load ``folder`` through ``entry``; the one-line error it gives (each entry must refuse the folder)."""
    if entry == "load":
        from training.serving.predict import load

        with pytest.raises(DamagedModelError) as caught:
            load(folder)
        return str(caught.value)
    if entry == "score":
        import contextlib
        import io

        from training.cli.score import main

        pages = tmp_path / "pages"
        pages.mkdir()
        (pages / "a.txt").write_text("Shoigu held a telephone conversation with Austin.\n")
        errors = io.StringIO()
        with contextlib.redirect_stderr(errors):
            code = main([str(pages), "--model", str(folder), "--out", str(tmp_path / "out.jsonl"), "--no-progress"])
        assert code == 2 and not (tmp_path / "out.jsonl").exists()
        return errors.getvalue().strip()
    raise ValueError(entry)


def _pyfunc_error(clean: Path, kind: str, marker: Path, tmp_path: Path) -> str:
    """Save a pyfunc model around ``clean``, tamper with the saved copy of the folder, load it as MLflow serves it."""
    import mlflow.pyfunc

    from training.serving.pyfunc import SentenceClassifierModel

    saved = tmp_path / "pyfunc"
    mlflow.pyfunc.save_model(str(saved), python_model=SentenceClassifierModel(), artifacts={"model": str(clean)},
                             pip_requirements=[])
    copies = [path.parent for path in saved.rglob("model.json")]
    assert len(copies) == 1
    _replace_parts(copies[0], kind, marker)
    with pytest.raises(Exception) as caught:
        mlflow.pyfunc.load_model(str(saved))
    return str(caught.value)


def _tampered_error(model: Path, kind: str, marker: Path, tmp_path: Path, entry: str) -> str:
    """The error of loading a copy of ``model`` whose stored parts were replaced by a ``kind`` payload, through ``entry``."""
    if entry == "pyfunc":
        return _pyfunc_error(model, kind, marker, tmp_path)
    folder = _copy(model, tmp_path)
    _replace_parts(folder, kind, marker)
    return _load_through(entry, folder, tmp_path)


@pytest.mark.parametrize("entry", ["load", "score", "pyfunc"])
def test_a_pickle_in_place_of_a_stored_part_never_runs(tfidf, tmp_path, entry):
    """The issue's probe: a pickle that runs code where the fitted pipeline was, manifest rewritten to match."""
    marker = tmp_path / "ran"
    error = _tampered_error(tfidf[0], "pickle", marker, tmp_path, entry)
    assert not marker.exists()
    assert "pipeline" in error and "\n" not in error.strip()


@pytest.mark.parametrize("entry", ["load", "score", "pyfunc"])
def test_a_skops_payload_of_an_untrusted_type_is_refused_naming_it(tfidf, tmp_path, entry):
    marker = tmp_path / "ran"
    error = _tampered_error(tfidf[0], "skops", marker, tmp_path, entry)
    assert not marker.exists()
    assert "pipeline" in error and f"'{__name__}.WritesMarkerWhenBuilt'" in error and "\n" not in error.strip()


def test_an_old_joblib_folder_is_refused_not_loaded(tfidf, tmp_path):
    """A folder as older versions wrote it: model.json without digests, the pipeline as a joblib pickle."""
    folder = _copy(tfidf[0], tmp_path)
    marker = tmp_path / "ran"
    for path in _stored_parts(folder):
        path.unlink()
    (folder / "pipeline.joblib").write_bytes(_payload("pickle", marker))
    manifest = json.loads((folder / "model.json").read_text())
    manifest.pop("files", None)
    (folder / "model.json").write_text(json.dumps(manifest))
    from training.serving.predict import load

    with pytest.raises(UnsafeModelError) as caught:
        load(folder)
    assert not marker.exists()
    message = str(caught.value)
    assert message.startswith(str(folder)) and "pipeline.joblib" in message
    assert "python -m training.train" in message and "\n" not in message


def test_a_foreign_type_is_refused_by_the_allow_list(tfidf, tmp_path):
    """A pipeline that would call ``os.system`` on every prediction: skops stores it, the loader refuses it."""
    dangerous = Pipeline([("run", FunctionTransformer(os.system))])
    stored = tmp_path / "pipeline.skops"
    sio.dump(dangerous, stored)
    with pytest.raises(storage.UntrustedTypeError, match=r"pipeline\.skops: .*'posix\.system'"):
        storage.load(stored)
    folder = _copy(tfidf[0], tmp_path)
    for path in _stored_parts(folder):
        sio.dump(dangerous, path)
    _rewrite_manifest(folder)
    with pytest.raises(UnsafeModelError, match=r"pipeline\.(skops|joblib): .*'posix\.system'"):
        export.load_family_model(folder)


def test_the_allow_list_names_classes_only(hybrid):
    """Each trusted name is a class that exists (no module-wide trust, no functions), and the default
    family's stored pipeline needs nothing beyond skops's defaults and the list."""
    import importlib

    for name in storage.TRUSTED:
        module, _, attribute = name.rpartition(".")
        assert isinstance(getattr(importlib.import_module(module), attribute), type), name
    (stored,) = _stored_parts(hybrid[0])
    needed = set(sio.get_untrusted_types(file=stored))
    assert needed <= storage.TRUSTED
    assert not {name for name in needed if "rules" in name or "pathlib" in name}  # rules and paths stored as text


@pytest.mark.parametrize("which", ["tfidf", "hybrid"])
def test_an_edited_byte_in_any_file_is_one_line_naming_it(request, tmp_path, which):
    source = request.getfixturevalue(which)[0]
    names = [path.relative_to(source) for path in sorted(source.rglob("*"))
             if path.is_file() and path.name != "model.json"]
    assert names
    for name in names:
        folder = Path(shutil.copytree(source, tmp_path / f"edited-{len(list(tmp_path.iterdir()))}"))
        data = bytearray((folder / name).read_bytes())
        data[len(data) // 2] ^= 0x01  # one bit, mid-file
        (folder / name).write_bytes(bytes(data))
        with pytest.raises(DamagedModelError) as caught:
            export.load_family_model(folder)
        message = str(caught.value)
        assert message.startswith(str(folder / name)) and "edited or damaged" in message and "\n" not in message


def test_an_added_or_a_missing_file_is_one_line_naming_it(tfidf, tmp_path):
    folder = _copy(tfidf[0], tmp_path)
    (folder / "extra.bin").write_bytes(b"\0")
    with pytest.raises(UnsafeModelError, match=f"^{re.escape(str(folder / 'extra.bin'))}: not among the files"):
        export.load_family_model(folder)
    (folder / "extra.bin").unlink()
    (stored,) = _stored_parts(folder)
    stored.unlink()
    with pytest.raises(DamagedModelError, match=f"^{re.escape(str(stored))}: missing"):
        export.load_family_model(folder)


def _check_round_trip(folder: Path, expected: np.ndarray) -> None:
    """The folder is data only, model.json lists every file's digest, and loading gives the same probabilities."""
    from training.serving.predict import load

    files = [path for path in sorted(folder.rglob("*")) if path.is_file()]
    assert {path.suffix for path in files} <= DATA_SUFFIXES
    assert not [path for path in files if path.read_bytes()[:1] == b"\x80"]  # no pickle (protocol 2+) anywhere
    manifest = json.loads((folder / "model.json").read_text())
    assert manifest["files"] == {path.relative_to(folder).as_posix(): _sha256(path)
                                 for path in files if path.name != "model.json"}
    assert np.array_equal(load(folder).model.predict_proba(SAMPLE_TEXTS), expected)


def test_tfidf_round_trip(tfidf):
    _check_round_trip(*tfidf)


def test_hybrid_round_trip(hybrid):
    _check_round_trip(*hybrid)


def test_head_round_trip(tmp_path):
    _check_round_trip(*_export("minilm_head", tmp_path / "model"))


@pytest.mark.slow
def test_finetune_round_trip_and_no_pickled_weights(tmp_path):
    folder, expected = _export("minilm_finetune", tmp_path / "model")
    assert (folder / "hf" / "model.safetensors").is_file()
    _check_round_trip(folder, expected)
    # weights as a pickle instead of safetensors, manifest rewritten: never unpickled
    tampered = _copy(folder, tmp_path)
    marker = tmp_path / "ran"
    (tampered / "hf" / "model.safetensors").unlink()
    (tampered / "hf" / "pytorch_model.bin").write_bytes(_payload("pickle", marker))
    _rewrite_manifest(tampered)
    with pytest.raises(DamagedModelError):
        export.load_family_model(tampered)
    assert not marker.exists()
