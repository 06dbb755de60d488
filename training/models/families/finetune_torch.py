"""The torch side of :mod:`training.families.minilm_finetune`: MiniLM fine-tuned end to end for sequence classification (plain PyTorch loop, CPU-deterministic).

Starts from the same encoder as :mod:`training.families.minilm_head` with a fresh classification
layer (``label2id``/``id2label`` from the labels), trains with AdamW and a linear warmup schedule and
saves the whole model plus tokenizer as safetensors under ``<folder>/hf``.
"""

from __future__ import annotations

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

import random
from collections import defaultdict
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

import numpy as np
import torch
from transformers import AutoModelForSequenceClassification, AutoTokenizer, get_linear_schedule_with_warmup
from transformers.utils import logging as hf_logging

from training.models.encoder import encoder_path, length_batches
from training.models.families.minilm_finetune import Params
from training.data.records import as_records, texts_of

PREDICT_BATCH = 64
_fits_per_run: defaultdict[str, int] = defaultdict(int)  # MLflow run id → fits logged so far


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


@contextmanager
def deterministic() -> Iterator[None]:
    """Deterministic torch kernels inside the block; the process-wide setting is restored after."""
    before = torch.are_deterministic_algorithms_enabled()
    warn_only = torch.is_deterministic_algorithms_warn_only_enabled()
    torch.use_deterministic_algorithms(True, warn_only=True)
    try:
        yield
    finally:
        torch.use_deterministic_algorithms(before, warn_only=warn_only)


class Model:
    FOLDER = "hf"

    def __init__(self, params: Params, labels: list[str], seed: int) -> None:
        self.params, self.labels, self.seed = params, labels, seed
        self.metric_prefix = "finetune"  # MLflow metric: <prefix>.epoch_loss
        self.tokenizer = None
        self.model = None

    def _init_model(self) -> None:
        path = encoder_path(self.params.encoder)
        seed_everything(self.seed)  # the new classification layer's initial weights
        self.tokenizer = AutoTokenizer.from_pretrained(path)
        verbosity = hf_logging.get_verbosity()
        hf_logging.set_verbosity_error()  # not the expected "classifier.* newly initialised" report each fit
        try:
            self.model = AutoModelForSequenceClassification.from_pretrained(
                path, num_labels=len(self.labels), id2label=dict(enumerate(self.labels)),
                label2id={name: i for i, name in enumerate(self.labels)})
        finally:
            hf_logging.set_verbosity(verbosity)

    def _encode(self, texts: list[str]) -> dict[str, torch.Tensor]:
        return self.tokenizer(texts, padding=True, truncation=True, max_length=self.params.max_length,
                              return_tensors="pt")

    def _class_weights(self, targets: torch.Tensor) -> torch.Tensor | None:
        if not self.params.class_weighting:
            return None
        counts = torch.bincount(targets, minlength=len(self.labels)).float()
        present = counts > 0
        weights = torch.ones(len(self.labels))
        weights[present] = len(targets) / (int(present.sum()) * counts[present])
        return weights

    def _optimizer(self) -> torch.optim.Optimizer:
        decay, no_decay = [], []
        for name, param in self.model.named_parameters():
            (no_decay if name.endswith("bias") or "LayerNorm" in name else decay).append(param)
        return torch.optim.AdamW([{"params": decay, "weight_decay": self.params.weight_decay},
                                  {"params": no_decay, "weight_decay": 0.0}], lr=self.params.learning_rate)

    def fit(self, records, labels) -> "Model":
        with deterministic():
            self._init_model()
            losses = self._train(texts_of(as_records(records)), list(labels))
        self._log_losses(losses)
        return self

    def _train(self, texts: list[str], labels: list[str]) -> list[float]:
        """The training loop; returns the mean loss of each epoch."""
        from tqdm.auto import tqdm

        targets = torch.tensor([self.labels.index(label) for label in labels])
        loss_fn = torch.nn.CrossEntropyLoss(weight=self._class_weights(targets))
        optimizer = self._optimizer()
        per_epoch = -(-len(texts) // self.params.batch_size)
        total = per_epoch * self.params.epochs
        schedule = get_linear_schedule_with_warmup(optimizer, int(self.params.warmup_ratio * total), total)
        generator = torch.Generator().manual_seed(self.seed)
        losses = []
        self.model.train()
        with tqdm(total=total, desc="fine-tuning", unit="step", disable=None) as bar:
            for _ in range(self.params.epochs):
                order = torch.randperm(len(texts), generator=generator).tolist()
                running = 0.0
                for start in range(0, len(order), self.params.batch_size):
                    batch = order[start:start + self.params.batch_size]
                    logits = self.model(**self._encode([texts[i] for i in batch])).logits
                    loss = loss_fn(logits, targets[batch])
                    loss.backward()
                    torch.nn.utils.clip_grad_norm_(self.model.parameters(), 1.0)
                    optimizer.step()
                    schedule.step()
                    optimizer.zero_grad()
                    running += loss.item() * len(batch)
                    bar.update(1)
                    bar.set_postfix(loss=f"{loss.item():.3f}")
                losses.append(running / len(texts))
        self.model.eval()
        return losses

    def _log_losses(self, losses: list[float]) -> None:
        """Per-epoch mean loss into the active MLflow run as one ``<prefix>.epoch_loss`` curve.

        Each fit in the run (the cross-validation folds, then the final model) continues the
        curve, so the step is ``fit index * epochs + epoch`` and every run has the same metric key.
        """
        import mlflow

        run = mlflow.active_run()
        if run is None:
            return
        fit = _fits_per_run[run.info.run_id]
        _fits_per_run[run.info.run_id] += 1
        for epoch, value in enumerate(losses):
            mlflow.log_metric(f"{self.metric_prefix}.epoch_loss", value, step=fit * self.params.epochs + epoch)

    def predict_proba(self, records) -> np.ndarray:
        texts = texts_of(as_records(records)) if len(records) else []
        out = np.zeros((len(texts), len(self.labels)))
        if not texts:
            return out
        self.model.eval()
        with torch.inference_mode():
            for batch in length_batches(texts, PREDICT_BATCH):
                logits = self.model(**self._encode([texts[i] for i in batch])).logits
                out[batch] = torch.softmax(logits.double(), dim=-1).numpy()
        return out

    def save(self, folder: Path) -> None:
        target = Path(folder) / self.FOLDER
        self.model.save_pretrained(target)  # transformers 5 always writes model.safetensors
        self.tokenizer.save_pretrained(target)

    @classmethod
    def load(cls, folder: Path, params: Params, labels: list[str], seed: int) -> "Model":
        model = cls(params, labels, seed)
        source = Path(folder) / cls.FOLDER
        model.tokenizer = AutoTokenizer.from_pretrained(source)
        model.model = AutoModelForSequenceClassification.from_pretrained(source).eval()
        saved = [model.model.config.id2label[i] for i in range(len(labels))]
        if saved != list(labels):
            raise ValueError(f"{source}: saved labels {saved} differ from the manifest's {list(labels)}")
        return model
