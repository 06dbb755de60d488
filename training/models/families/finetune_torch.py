"""The torch side of :mod:`training.models.families.minilm_finetune`: MiniLM fine-tuned end to end for sequence
classification (plain PyTorch loop, CPU-deterministic).

Starts from the same encoder as :mod:`training.models.families.minilm_head` with a fresh classification
layer (``label2id``/``id2label`` from the labels), trains with AdamW and a linear warmup schedule and
saves the whole model plus tokenizer as safetensors. Functions of plain values: this module knows
nothing of the estimator that calls it, nor of tracking (per-epoch losses go to a callback).
"""

from __future__ import annotations

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

from pathlib import Path
from typing import Callable, Optional

import numpy as np
import torch
from pydantic import BaseModel
from transformers import AutoModelForSequenceClassification, AutoTokenizer, get_linear_schedule_with_warmup
from transformers.utils import logging as hf_logging

from training.core.seeding import seed_everything, torch_deterministic
from training.models.encoder import length_batches, torch_device

PREDICT_BATCH = 64


def _new_classifier(path: Path, labels: list[str]):
    """(tokenizer, model): the encoder at ``path`` with a fresh classification layer, one output per label."""
    tokenizer = AutoTokenizer.from_pretrained(path)
    verbosity = hf_logging.get_verbosity()
    hf_logging.set_verbosity_error()  # not the expected "classifier.* newly initialised" report each fit
    try:
        model = AutoModelForSequenceClassification.from_pretrained(
            path, num_labels=len(labels), id2label={i: str(name) for i, name in enumerate(labels)},
            label2id={str(name): i for i, name in enumerate(labels)})
    finally:
        hf_logging.set_verbosity(verbosity)
    return tokenizer, model


def _encode(tokenizer, texts: list[str], max_length: int) -> dict[str, torch.Tensor]:
    return tokenizer(texts, padding=True, truncation=True, max_length=max_length, return_tensors="pt")


def _class_weights(targets: torch.Tensor, n_labels: int) -> torch.Tensor:
    counts = torch.bincount(targets, minlength=n_labels).float()
    present = counts > 0
    weights = torch.ones(n_labels, device=targets.device)
    weights[present] = len(targets) / (int(present.sum()) * counts[present])
    return weights


def _optimizer(model, params: BaseModel) -> torch.optim.Optimizer:
    decay, no_decay = [], []
    for name, param in model.named_parameters():
        (no_decay if name.endswith("bias") or "LayerNorm" in name else decay).append(param)
    return torch.optim.AdamW([{"params": decay, "weight_decay": params.weight_decay},
                              {"params": no_decay, "weight_decay": 0.0}], lr=params.learning_rate)


def fine_tune(path: Path, texts: list[str], targets: list[int], labels: list[str], params: BaseModel, seed: int,
              on_epoch_loss: Optional[Callable[[float], None]] = None):
    """(tokenizer, model in eval mode) fine-tuned on ``texts`` with ``targets`` (indices into ``labels``).

    ``params`` is the family's validated ``Params``; ``on_epoch_loss`` receives each epoch's mean loss.
    """
    from tqdm.auto import tqdm

    with torch_deterministic():
        seed_everything(seed)  # the new classification layer's initial weights
        tokenizer, model = _new_classifier(path, labels)
        device = torch_device()
        model.to(device)
        targets = torch.tensor(targets, device=device)
        loss_fn = torch.nn.CrossEntropyLoss(weight=_class_weights(targets, len(labels)) if params.class_weighting
                                            else None)
        optimizer = _optimizer(model, params)
        per_epoch = -(-len(texts) // params.batch_size)
        total = per_epoch * params.epochs
        schedule = get_linear_schedule_with_warmup(optimizer, int(params.warmup_ratio * total), total)
        generator = torch.Generator().manual_seed(seed)
        model.train()
        with tqdm(total=total, desc="fine-tuning", unit="step", disable=None) as bar:
            for _ in range(params.epochs):
                order = torch.randperm(len(texts), generator=generator).tolist()
                running = 0.0
                for start in range(0, len(order), params.batch_size):
                    batch = order[start:start + params.batch_size]
                    logits = model(**_encode(tokenizer, [texts[i] for i in batch], params.max_length).to(device)).logits
                    loss = loss_fn(logits, targets[batch])
                    loss.backward()
                    torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
                    optimizer.step()
                    schedule.step()
                    optimizer.zero_grad()
                    running += loss.item() * len(batch)
                    bar.update(1)
                    bar.set_postfix(loss=f"{loss.item():.3f}")
                if on_epoch_loss is not None:
                    on_epoch_loss(running / len(texts))
        model.eval()
    return tokenizer, model


def predict_proba(tokenizer, model, texts: list[str], max_length: int) -> np.ndarray:
    """Softmax probabilities (rows: texts, columns: the model's labels), batched by length."""
    out = np.zeros((len(texts), model.config.num_labels))
    model.eval()
    device = next(model.parameters()).device
    with torch.inference_mode():
        for batch in length_batches(texts, PREDICT_BATCH):
            logits = model(**_encode(tokenizer, [texts[i] for i in batch], max_length).to(device)).logits
            out[batch] = torch.softmax(logits.double(), dim=-1).cpu().numpy()
    return out


def save(tokenizer, model, target: Path) -> None:
    model.save_pretrained(target)  # transformers 5 always writes model.safetensors
    tokenizer.save_pretrained(target)


def load(source: Path):
    """(tokenizer, model in eval mode) saved by :func:`save`: weights from safetensors only (never a pickled
    ``pytorch_model.bin``), local files only, no code from the folder."""
    tokenizer = AutoTokenizer.from_pretrained(source, local_files_only=True, trust_remote_code=False)
    model = AutoModelForSequenceClassification.from_pretrained(source, use_safetensors=True, local_files_only=True,
                                                               trust_remote_code=False)
    return tokenizer, model.eval().to(torch_device())
