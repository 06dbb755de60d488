"""Shared fixtures: small configs in temp folders, and one trained default model per session."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parent.parent
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("GIT_PYTHON_REFRESH", "quiet")
SAMPLE_TEXTS = [  # one or two of each label, for the families' round trips
    "Shoigu held a telephone conversation with Austin.",
    "Your support makes a difference.",
    "The brigade was redeployed to the northern border.",
    "Sailors practised anti-submarine warfare during the exercise.",
    "The weather was mild.",
    "Lavrov met his Chinese counterpart in Beijing on Tuesday to discuss regional security.",
]


def write_config(folder: Path, name: str = "test", **sections) -> Path:
    """A config file in ``folder`` training on the seeds, logging to a sqlite store in ``folder``."""
    config = {
        "name": name,
        "seed": 7,
        "sources": [{"name": "seeds", "path": str(ROOT / "seeds")}],
        "gold": [{"path": str(ROOT / "data/gold/seeds.jsonl")}],
        "evaluation": {"folds": 3, "find_label_issues": False, "store": str(folder / "out_of_fold")},
        "tracking": {"tracking_uri": f"sqlite:///{folder / 'mlflow.db'}", "experiment": "tests",
                     "registered_model": f"test-{name}"},
        "output_dir": str(folder / "models"),
    }
    for key, value in sections.items():
        if isinstance(value, dict) and isinstance(config.get(key), dict):
            config[key] = {**config[key], **value}
        else:
            config[key] = value
    path = folder / f"{name}.yaml"
    path.write_text(yaml.safe_dump(config), encoding="utf-8")
    return path


@pytest.fixture(scope="session")
def trained_default(tmp_path_factory):
    """Train the TF-IDF family once on the seeds; returns (TrainResult, folder)."""
    from training.core.config import load_config
    from training.cli.job import train_one

    folder = tmp_path_factory.mktemp("trained")
    result = train_one(load_config(write_config(folder, "tfidf")))
    return result, folder
