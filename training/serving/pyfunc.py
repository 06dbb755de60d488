"""The MLflow pyfunc flavour: any exported model folder served through ``mlflow.pyfunc``.

``predict`` takes a DataFrame of sentence records: ``text`` (required), ``article_id`` and
``index`` (optional: without ``article_id`` each row is a one-sentence page; without ``index``
the rows of a page are in page order). It returns a DataFrame with the predicted ``label`` and
one ``p_<label>`` probability column per label, one row per input row.

A DataFrame with a ``page`` column is whole pages instead (``article_id`` optional): each page is
segmented and classified exactly as ``training.predict.classify_articles`` does, and the answer
keeps one row per input page (what REST clients and ``mlflow.pyfunc.spark_udf`` need):
``article_id`` and, per sentence of the page, lists ``index``, ``start``, ``end``, ``text``,
``label`` and ``p_<label>`` (all the same length; empty for a missing or blank page). In Spark,
``arrays_zip`` + ``explode`` turns them into one row per sentence.
"""

from __future__ import annotations

import mlflow.pyfunc
import pandas as pd


class SentenceClassifierModel(mlflow.pyfunc.PythonModel):
    def load_context(self, context) -> None:
        from training.serving.predict import SentenceClassifier
        from training.tracking.export import load_family_model

        model, manifest = load_family_model(context.artifacts["model"])
        self.classifier = SentenceClassifier(model, manifest, context.artifacts["model"])

    def predict(self, context, model_input: pd.DataFrame, params: dict | None = None) -> pd.DataFrame:
        if isinstance(model_input, pd.DataFrame) and "page" in model_input.columns:
            return self.predict_pages(model_input)
        if isinstance(model_input, pd.DataFrame):
            frame = model_input if "text" in model_input.columns else model_input.rename(
                columns={model_input.columns[0]: "text"})
            frame = frame.assign(text=frame["text"].astype(str))
        else:
            frame = pd.DataFrame({"text": [str(t) for t in model_input]})
        proba = self.classifier.proba_matrix(frame)
        labels = self.classifier.labels
        out = pd.DataFrame(proba, columns=[f"p_{name}" for name in labels])
        out.insert(0, "label", [labels[i] for i in proba.argmax(axis=1)] if len(frame) else [])
        return out

    def predict_pages(self, frame: pd.DataFrame) -> pd.DataFrame:
        """One row per page: its id and, per sentence, parallel lists (see the module docstring)."""
        labels = self.classifier.labels
        pages = [page if isinstance(page, str) else "" for page in frame["page"].tolist()]
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
        return pd.DataFrame(columns)
