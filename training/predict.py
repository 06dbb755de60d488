"""The public prediction interface (``from training.predict import ...``): forwards to :mod:`training.serving.predict`.

    from training.predict import load, predict, predict_proba, classify_article, classify_articles
"""

from training.serving.predict import (DEFAULT_MODEL, ModelNotFoundError, SentenceClassifier,  # noqa: F401
                                      classify_article, classify_articles, load, predict, predict_proba,
                                      predict_records)

__all__ = ["DEFAULT_MODEL", "ModelNotFoundError", "SentenceClassifier", "classify_article", "classify_articles",
           "load", "predict", "predict_proba", "predict_records"]
