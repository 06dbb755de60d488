"""The MLflow pyfunc flavour: any exported model folder served through ``mlflow.pyfunc``.

``predict`` takes a DataFrame of sentence records: ``text`` (required), ``article_id`` and
``index`` (optional: without ``article_id`` each row is a one-sentence page; without ``index``
the rows of a page are in page order). It returns a DataFrame with the predicted ``label`` and
one ``p_<label>`` probability column per label, one row per input row.
"""

from __future__ import annotations

import mlflow.pyfunc
import pandas as pd


class SentenceClassifierModel(mlflow.pyfunc.PythonModel):
    def load_context(self, context) -> None:
        from training.predict import SentenceClassifier
        from training.export import load_family_model

        model, manifest = load_family_model(context.artifacts["model"])
        self.classifier = SentenceClassifier(model, manifest, context.artifacts["model"])

    def predict(self, context, model_input: pd.DataFrame, params: dict | None = None) -> pd.DataFrame:
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
