"""The MLflow pyfunc flavour: any exported model folder served through ``mlflow.pyfunc``.

``predict`` takes a DataFrame of sentence records: ``text`` (required), ``article_id`` and
``index`` (optional: without ``article_id`` each row is a one-sentence page; without ``index``
the rows of a page are in page order). It returns a DataFrame with the predicted ``label``, one
``p_<label>`` probability column per label and ``error``, one row per input row.

A DataFrame with a ``page`` column is whole pages instead (``article_id`` optional): each page is
segmented and classified exactly as ``training.predict.classify_articles`` does, and the answer
keeps one row per input page (what REST clients and ``mlflow.pyfunc.spark_udf`` need):
``article_id``, ``error`` and, per sentence of the page, lists ``index``, ``start``, ``end``,
``text``, ``label`` and ``p_<label>`` (all the same length; empty for a blank or bad page). In
Spark, ``arrays_zip`` + ``explode`` turns them into one row per sentence.

Bad input, in two kinds:

* a bad row (``text`` or ``page`` missing or not a string) is answered in its own row: ``error``
  says what is wrong, ``label`` and the probabilities are null; the other rows are answered as
  if it were not there (it is no neighbour of theirs);
* a bad request (no ``text`` or ``page`` column, more than ``max_request_chars`` characters of
  text and pages) raises :class:`RequestError`: MLflow's scoring server answers HTTP 400 with one
  line of JSON, ``{"error_code": "BAD_REQUEST", "message": ...}``.

``max_request_chars`` (default :data:`MAX_REQUEST_CHARS`) is MLflow's ``model_config``, logged with
the model and overridden by ``mlflow.pyfunc.load_model(uri, model_config={...})``, or by
``SERVING_MODEL_CONFIG='{"max_request_chars": ...}'`` in the environment of ``mlflow models serve``. A text over 4,000 characters is read as its first piece
(``training.data.records.readable``), so one row costs bounded time however long it is.
"""

from __future__ import annotations

from typing import Any

import mlflow.pyfunc
import numpy as np
import pandas as pd
from mlflow.exceptions import MlflowException
from mlflow.protos.databricks_pb2 import BAD_REQUEST

# text and page characters per request: about 1,200 sentences, ~60 s (MLflow's default timeout) for the
# default model (all-mpnet-base-v2, ~20 sentences/s encoded on 2 CPU cores, unseen sentences); a MiniLM
# model answers in a fraction of that and may raise it through model_config
MAX_REQUEST_CHARS = 150_000
_COLUMNS = "'text' (sentences) or 'page' (whole pages), with optional 'article_id' and 'index'"


class RequestError(MlflowException):
    """A bad request, answered by MLflow's scoring server as HTTP 400 with this one line as message.

    The server replaces the message of any exception raised in ``predict`` by "Failed to predict
    data '<a dump of the input>'. Error: <message>" (several lines, the client's data echoed);
    this exception keeps its own line: the first message set (in ``__init__``) is the one kept.
    """

    def __init__(self, message: str) -> None:
        super().__init__(" ".join(message.split()), error_code=BAD_REQUEST)

    @property
    def message(self) -> str:
        return self._line

    @message.setter
    def message(self, value: str) -> None:
        if not hasattr(self, "_line"):
            self._line = value


def _problem(value: Any, column: str) -> str | None:
    """Why a ``text``/``page`` cell cannot be read, or None when it is a string."""
    if isinstance(value, str):
        return None
    if value is None or (isinstance(value, float) and np.isnan(value)) or value is pd.NA or value is pd.NaT:
        return f"'{column}' is missing"
    return f"'{column}' is {type(value).__name__}, not a string"


class SentenceClassifierModel(mlflow.pyfunc.PythonModel):
    # logged with the model (track.log_model): MLflow lets a serve- or load-time model_config
    # override only the keys the model was logged with
    default_config = {"max_request_chars": MAX_REQUEST_CHARS}

    def load_context(self, context) -> None:
        from training.serving.predict import SentenceClassifier
        from training.tracking.export import load_family_model

        model, manifest = load_family_model(context.artifacts["model"])
        self.classifier = SentenceClassifier(model, manifest, context.artifacts["model"])
        config = getattr(context, "model_config", None) or {}
        limit = config.get("max_request_chars", MAX_REQUEST_CHARS)
        if isinstance(limit, bool) or not isinstance(limit, int) or limit < 1:
            raise ValueError(f"model_config max_request_chars: expected a positive whole number, got {limit!r}")
        self.max_request_chars = limit

    def predict(self, context, model_input: pd.DataFrame, params: dict | None = None) -> pd.DataFrame:
        frame = self._frame(model_input)
        self._check_size(frame)
        if "page" in frame.columns:
            return self.predict_pages(frame)
        return self.predict_texts(frame)

    @staticmethod
    def _frame(model_input) -> pd.DataFrame:
        """The request as a DataFrame with a ``text`` or ``page`` column, or a :class:`RequestError`."""
        if not isinstance(model_input, pd.DataFrame):
            try:
                return pd.DataFrame({"text": list(model_input)})
            except TypeError:
                raise RequestError(f"expected a table with a column {_COLUMNS}") from None
        if "page" in model_input.columns or "text" in model_input.columns:
            return model_input
        if list(model_input.columns) == [0]:  # one unnamed column (a bare list of sentences): the texts
            return model_input.rename(columns={0: "text"})
        named = ", ".join(f"'{c}'" for c in model_input.columns[:10])  # MLflow drops those not in the signature
        detail = f"columns: {named}" if named else "none of its columns is one the model knows"
        raise RequestError(f"no column 'text' or 'page' ({detail}); send {_COLUMNS}")

    def _check_size(self, frame: pd.DataFrame) -> None:
        size = sum(len(value) for column in ("text", "page") if column in frame.columns
                   for value in frame[column].tolist() if isinstance(value, str))
        if size > self.max_request_chars:
            raise RequestError(f"request too large: {size:,} characters of text and pages, over the limit of "
                               f"{self.max_request_chars:,} per request; send fewer rows per request")

    def predict_texts(self, frame: pd.DataFrame) -> pd.DataFrame:
        """One row per sentence: label, p_<label> and error (null label and probabilities on a bad row)."""
        labels = self.classifier.labels
        errors = [_problem(value, "text") for value in frame["text"].tolist()]
        good = [row for row, error in enumerate(errors) if error is None]
        records = frame.iloc[good][[c for c in ("text", "article_id", "index") if c in frame.columns]]
        proba = self.classifier.proba_matrix(records.reset_index(drop=True))
        if len(good) == len(frame):  # every row readable: plain float columns
            out = pd.DataFrame(proba, columns=[f"p_{name}" for name in labels])
            out.insert(0, "label", [labels[i] for i in proba.argmax(axis=1)] if len(frame) else [])
            out["error"] = pd.Series([None] * len(frame), dtype=object)
            return out
        # object columns, so that a bad row's label and probabilities stay None (JSON null), not NaN
        columns: dict[str, list] = {"label": [None] * len(frame), **{f"p_{name}": [None] * len(frame)
                                                                     for name in labels}}
        for row, probabilities in zip(good, proba):
            columns["label"][row] = labels[int(probabilities.argmax())]
            for name, p in zip(labels, probabilities):
                columns[f"p_{name}"][row] = float(p)
        columns["error"] = errors
        return pd.DataFrame({key: pd.Series(values, dtype=object) for key, values in columns.items()})

    def predict_pages(self, frame: pd.DataFrame) -> pd.DataFrame:
        """One row per page: its id, error and, per sentence, parallel lists (see the module docstring)."""
        labels = self.classifier.labels
        values = frame["page"].tolist()
        errors = [_problem(page, "page") for page in values]
        pages = [page if error is None else "" for page, error in zip(values, errors)]
        if "article_id" in frame.columns:
            ids = [str(a) if isinstance(a, str) or (a is not None and a == a) else str(n)
                   for n, a in enumerate(frame["article_id"].tolist())]
        else:
            ids = [str(n) for n in range(len(pages))]
        keys = ["index", "start", "end", "text", "label"]
        columns: dict[str, list] = {"article_id": ids, **{key: [] for key in keys},
                                    **{f"p_{name}": [] for name in labels}}
        for sentences in self.classifier.classify_articles(pages) if pages else []:
            for key in keys:
                columns[key].append([s[key] for s in sentences])
            for name in labels:
                columns[f"p_{name}"].append([s["probabilities"][name] for s in sentences])
        columns["error"] = pd.Series(errors, dtype=object)
        return pd.DataFrame(columns)
