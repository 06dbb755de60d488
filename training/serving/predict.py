"""Predict from code: pages in, pages out.

    from training.serving.predict import load, predict, predict_proba, classify_article, classify_articles
    predict(["Shoigu spoke with Austin by phone."])          # each string is a one-sentence page
    classify_article(page_text)                              # one page: its sentences, labelled
    classify_articles([page_a, page_b])                      # many pages in one batch
    clf = load("models/seeds-minilm-finetune"); clf.predict([...])
    load("models:/sentence-classifier@champion")             # any MLflow model URI

Context-aware models (the default) see a sentence's neighbours only when whole pages come in
(``classify_article(s)`` or records with ``article_id``/``index`` to ``predict_records``).
Models are cached; a retrained folder or a moved alias is loaded anew. A string (or record text)
over 4,000 characters is read as its first piece (``training.data.records.readable``), so no
single "sentence" costs more than a bounded time; pages are cut at safe points before segmentation.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Sequence, Union

import numpy as np

from training.core.config import PROJECT_ROOT
from training.data.corpus import segment_article
from training.evaluation.calibration import temper
from training.tracking.export import MANIFEST, load_family_model, temperature_of
from training.data.records import as_records

DEFAULT_MODEL = PROJECT_ROOT / "models" / "default"


class ModelNotFoundError(FileNotFoundError):
    pass


def _check_texts(texts: Sequence[str]) -> list[str]:
    if isinstance(texts, str):
        raise TypeError("texts must be a list of strings, not a single string")
    texts = list(texts)
    for index, text in enumerate(texts):
        if not isinstance(text, str):
            raise TypeError(f"texts[{index}] is {type(text).__name__}, not str")
    return texts


class SentenceClassifier:
    """A loaded model of any family with one prediction interface."""

    def __init__(self, model, manifest: dict, path: str) -> None:
        self.model = model
        self.manifest = manifest
        self.path = path
        self.labels: list[str] = list(manifest["labels"])
        self.family: str = manifest["family"]
        self.temperature: float = temperature_of(manifest, path)  # fitted out of fold when trained; 1: as is

    def __repr__(self) -> str:
        return f"SentenceClassifier(family={self.family!r}, path={self.path!r})"

    def proba_matrix(self, records) -> np.ndarray:
        """Probabilities (rows: records, columns: labels); a list of strings is one-sentence pages.

        Every served probability comes from here (``predict``, ``classify_articles``, the pyfunc, the scorer): the
        model's own, tempered by the manifest's temperature (same order in each row, so the same labels).
        """
        records = as_records(records)
        if len(records) == 0:
            return np.zeros((0, len(self.labels)))
        proba = np.asarray(self.model.predict_proba(records), dtype=float)
        return temper(proba / proba.sum(axis=1, keepdims=True), self.temperature)

    def predict(self, texts: Sequence[str]) -> list[str]:
        return [self.labels[i] for i in self.proba_matrix(texts).argmax(axis=1)]

    def predict_proba(self, texts: Sequence[str]) -> list[dict[str, float]]:
        return [dict(zip(self.labels, map(float, row))) for row in self.proba_matrix(texts)]

    def classify_articles(self, pages: Sequence[str]) -> list[list[dict]]:
        """Each page segmented and classified with its neighbours in view; one list of sentences per page.

        A sentence is ``{"index", "text", "start", "end", "label", "probability", "probabilities"}``;
        ``text == page[start:end]``. All pages go through the model in one batch.
        """
        if isinstance(pages, str):
            raise TypeError("pages must be a list of page texts, not a single string (use classify_article)")
        segmented = []
        for number, text in enumerate(pages):
            if not isinstance(text, str):
                raise TypeError(f"pages[{number}] is {type(text).__name__}, not str")
            segmented.append(segment_article(f"page-{number}", text))
        rows = iter(self.proba_matrix([s for page in segmented for s in page]))
        return [[{"index": s.index, "text": s.text, "start": s.start, "end": s.end,
                  "label": self.labels[int(row.argmax())], "probability": float(row.max()),
                  "probabilities": dict(zip(self.labels, map(float, row)))}
                 for s, row in zip(page, rows)] for page in segmented]

    def classify_article(self, text: str) -> list[dict]:
        """One record per sentence of a page: index, text, start, end, label, probability (and all probabilities)."""
        if not isinstance(text, str):
            raise TypeError(f"text is {type(text).__name__}, not str")
        return self.classify_articles([text])[0]


def is_mlflow_uri(path: str) -> bool:
    return "://" in path or path.startswith(("models:", "runs:"))


def _folder_from_mlflow(uri: str) -> Path:
    """Download a logged model and find the exported model folder inside its artifacts."""
    import mlflow

    local = Path(mlflow.artifacts.download_artifacts(artifact_uri=uri))
    found = sorted(local.rglob(MANIFEST))
    if not found:
        raise ModelNotFoundError(f"{uri}: no {MANIFEST} in the logged model's artifacts")
    return found[0].parent


@lru_cache(maxsize=8)
def _load_cached(path: str, stamp: object = None) -> SentenceClassifier:
    """``stamp`` identifies the content (a folder's manifest time, an alias's version): a new one loads anew."""
    folder = _folder_from_mlflow(path) if is_mlflow_uri(path) else Path(path)
    if not (folder / MANIFEST).is_file():
        hint = "python -m training.train" if folder == DEFAULT_MODEL else "python -m training.train --config <config>"
        raise ModelNotFoundError(f"no trained model at {folder}; train one with `{hint}`")
    model, manifest = load_family_model(folder)
    return SentenceClassifier(model, manifest, path)


def resolve_alias(uri: str) -> str:
    """``models:/name@alias`` → ``models:/name/<version>`` the alias points at now; other URIs unchanged.

    A lookup only reads: with no store where MLflow would look (no tracking URI set means ``./mlflow.db``),
    it says so instead of letting MLflow create an empty store there.
    """
    if not uri.startswith(("models:/", "runs:/")):
        return uri
    import mlflow

    from training.tracking.track import local_path

    store = mlflow.get_registry_uri() if uri.startswith("models:/") else mlflow.get_tracking_uri()
    path = local_path(store)
    if path is not None and not path.exists():
        raise ModelNotFoundError(f"no MLflow store at {path.resolve()} for {uri}: set MLFLOW_TRACKING_URI (or "
                                 "mlflow.set_tracking_uri) to the store that holds it")
    if not uri.startswith("models:/") or "@" not in uri:
        return uri
    from mlflow import MlflowClient

    name, alias = uri[len("models:/"):].rsplit("@", 1)
    return f"models:/{name}/{MlflowClient().get_model_version_by_alias(name, alias).version}"


def load(path: Union[str, Path, None] = None) -> SentenceClassifier:
    """Load a model folder or MLflow model URI; ``None`` is ``models/default``.

    Loaded models are cached, but a long-running process still sees a retrained folder (its
    ``model.json`` changed) or a moved alias (``models:/name@champion`` now names another version).
    """
    if path is not None and is_mlflow_uri(str(path)):
        return _load_cached(resolve_alias(str(path)))
    folder = Path(path or DEFAULT_MODEL).resolve()
    try:
        stamp = (folder / MANIFEST).stat().st_mtime_ns
    except OSError:
        stamp = None
    return _load_cached(str(folder), stamp)


ModelArg = Union[SentenceClassifier, str, Path, None]


def _resolve(model: ModelArg) -> SentenceClassifier:
    return model if isinstance(model, SentenceClassifier) else load(model)


def predict(texts: Sequence[str], model: ModelArg = None) -> list[str]:
    texts = _check_texts(texts)
    return _resolve(model).predict(texts) if texts else []


def predict_proba(texts: Sequence[str], model: ModelArg = None) -> list[dict[str, float]]:
    texts = _check_texts(texts)
    return _resolve(model).predict_proba(texts) if texts else []


def classify_article(text: str, model: ModelArg = None) -> list[dict]:
    return _resolve(model).classify_article(text)


def classify_articles(pages: Sequence[str], model: ModelArg = None) -> list[list[dict]]:
    return _resolve(model).classify_articles(pages)


def predict_records(records, model: ModelArg = None) -> list[str]:
    """Labels for sentence records (a DataFrame or ``datasets.Dataset`` with text, article_id, index)."""
    classifier = _resolve(model)
    return [classifier.labels[i] for i in classifier.proba_matrix(records).argmax(axis=1)]
