"""Sentence classification for military and diplomatic news: weak labels, training, MLflow, predict."""

__version__ = "0.1.0"
