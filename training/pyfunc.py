"""The MLflow pyfunc flavour: any exported model folder served through ``mlflow.pyfunc``.

``predict`` takes a DataFrame with a ``text`` column (or a list of strings) and returns a
DataFrame with the predicted ``label`` and one ``p_<label>`` probability column per label.
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

    def predict(self, context, model_input, params=None) -> pd.DataFrame:
        if isinstance(model_input, pd.DataFrame):
            column = "text" if "text" in model_input.columns else model_input.columns[0]
            texts = model_input[column].astype(str).tolist()
        else:
            texts = [str(t) for t in model_input]
        proba = self.classifier.proba_matrix(texts)
        labels = self.classifier.labels
        frame = pd.DataFrame(proba, columns=[f"p_{name}" for name in labels])
        frame.insert(0, "label", [labels[i] for i in proba.argmax(axis=1)] if len(texts) else [])
        return frame
