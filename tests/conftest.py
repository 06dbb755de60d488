"""Shared fixtures: small configs in temp folders, one tiny trained model per session, watched child processes."""

from __future__ import annotations

import os
import signal
import subprocess
import threading
from pathlib import Path
from typing import Callable

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


SLOW_FIXTURES = {  # a test that uses one of these is slow (see the marker in pyproject.toml)
    "onnx_cache": "exports the encoder to ONNX",
    "head_run": "trains the minilm_head config",
    "finetune_run": "trains the minilm_finetune config",
    "mlflow_server": "starts an MLflow tracking server",
}


@pytest.fixture(scope="session", autouse=True)
def embedding_store_root(tmp_path_factory):
    """The session's own persistent embedding cache: no test reads or fills the user's, and every session starts
    empty (tests needing an empty one of their own point ``TRAINING_EMBEDDING_CACHE`` elsewhere)."""
    with pytest.MonkeyPatch.context() as patch:
        root = tmp_path_factory.mktemp("embedding-cache")
        patch.setenv("TRAINING_EMBEDDING_CACHE", str(root))
        patch.delenv("TRAINING_EMBEDDING_CACHE_MAX_MB", raising=False)
        yield root


def pytest_collection_modifyitems(items) -> None:
    for item in items:
        if SLOW_FIXTURES.keys() & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.slow)



def write_config(folder: Path, name: str = "test", **sections) -> Path:
    """A config file in ``folder`` training on the seeds, logging to a sqlite store in ``folder``."""
    config = {
        "name": name,
        "seed": 7,
        "sources": [{"name": "seeds", "path": str(ROOT / "seeds")}],
        "gold": [{"path": str(ROOT / "data/gold/seeds.jsonl")}],
        "evaluation": {"folds": 3, "find_label_issues": False, "store": str(folder / "out_of_fold")},
        # Snorkel's label model is fitted in every labelling stage, for the rule report and the rules_label_model
        # figures only: these tests train on majority or reviewed labels (the label model has its own tests). Its
        # 500 default epochs were most of a seeds build's time, which the tests pay dozens of times; 50 give other
        # label-model figures but the same training labels.
        "labelling": {"label_model_epochs": 50},
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


def scored_by_hand(result) -> tuple[dict[str, float], float]:
    """(F1 per label, macro-F1) of a training run, counted here from the config's gold files and the run's
    table of misclassified gold sentences: an expected figure computed apart from the run's own metrics code."""
    import csv
    import json

    import mlflow

    gold: dict[str, str] = {}
    for spec in result.config.gold:
        for line in result.config.resolve(spec.path).read_text(encoding="utf-8").splitlines():
            if line.strip():
                row = json.loads(line)
                gold[row["id"]] = row["label"]
    table = mlflow.artifacts.download_artifacts(run_id=result.run_id, artifact_path="tables/misclassified_gold.csv",
                                                tracking_uri=result.config.tracking.tracking_uri)
    with open(table, encoding="utf-8", newline="") as handle:
        wrong = {row["id"]: row["predicted"] for row in csv.DictReader(handle) if row["id"]}
    assert set(wrong) <= set(gold)
    f1 = {}
    for label in dict.fromkeys(json.loads((result.model_dir / "model.json").read_text())["labels"]):
        hit = sum(1 for sid, truth in gold.items() if truth == label and sid not in wrong)
        missed = sum(1 for sid, truth in gold.items() if truth == label and sid in wrong)
        false = sum(1 for predicted in wrong.values() if predicted == label)
        f1[label] = 2 * hit / (2 * hit + missed + false) if hit + missed + false else 0.0
    return f1, sum(f1.values()) / len(f1)


class Watched:
    """A child process whose output (stdout and stderr together) a thread reads line by line.

    A test blocks in :meth:`wait_for` until a given line appears (or the output ends), instead of
    sleeping or polling against a deadline; pytest-timeout guards against a child that hangs.
    The child runs in its own session, so :meth:`stop` ends it together with anything it started.
    """

    def __init__(self, args: list[str], **kwargs) -> None:
        self.process = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                                        start_new_session=True, **kwargs)
        self.lines: list[str] = []
        self._changed = threading.Condition()
        self._ended = False
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        for line in self.process.stdout:
            with self._changed:
                self.lines.append(line)
                self._changed.notify_all()
        with self._changed:
            self._ended = True
            self._changed.notify_all()

    @property
    def output(self) -> str:
        with self._changed:
            return "".join(self.lines)

    def wait_for(self, marker: str) -> str:
        """The first output line containing ``marker``; AssertionError if the output ends without one."""
        with self._changed:
            seen = 0
            while True:
                for line in self.lines[seen:]:
                    if marker in line:
                        return line
                seen = len(self.lines)
                if self._ended:
                    raise AssertionError(f"{marker!r} never appeared (exit {self.process.wait()}):\n"
                                         f"{''.join(self.lines)[-3000:]}")
                self._changed.wait()

    def finish(self) -> int:
        """Wait until the child has exited and all its output is read; its exit code."""
        code = self.process.wait()
        self._reader.join()
        return code

    def stop(self) -> None:
        """Kill the child's session if it is still running."""
        if self.process.poll() is None:
            try:
                os.killpg(self.process.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        self.process.wait()


@pytest.fixture()
def spawn() -> Callable[..., Watched]:
    """Start watched child processes (``spawn(args, **popen_kwargs)``); those still running at teardown are killed."""
    started: list[Watched] = []

    def start(args: list[str], **kwargs) -> Watched:
        child = Watched(args, **kwargs)
        started.append(child)
        return child

    yield start
    for child in started:
        child.stop()
