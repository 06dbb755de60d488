"""MiniLM fine-tuned end to end for sequence classification (plain PyTorch loop, CPU-deterministic).

This module imports without torch (``Params``, and the estimator, which can be built, cloned and
configured anywhere); the torch work lives in :mod:`training.models.families.finetune_torch`,
loaded on the first fit or load. The fitted model is saved as safetensors plus tokenizer under
``<folder>/hf``.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from training.data.records import texts_of
from training.models.encoder import PACKAGED, encoder_path
from training.models.families.base import FamilyEstimator


class Params(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    encoder: str = PACKAGED  # the packaged all-MiniLM-L6-v2, or a local model folder
    epochs: int = Field(4, ge=1)
    learning_rate: float = Field(5e-5, gt=0)
    batch_size: int = Field(16, ge=1)
    max_length: int = Field(64, ge=8, le=512)  # tokens per sentence (longer ones are truncated)
    weight_decay: float = Field(0.01, ge=0)
    warmup_ratio: float = Field(0.1, ge=0, lt=1)  # share of steps with a linearly rising learning rate
    class_weighting: bool = True  # inverse-frequency class weights in the cross-entropy


class MiniLMFinetune(FamilyEstimator):
    """The encoder with a fresh classification layer (one output per class of ``classes_``, in that order),
    trained with AdamW and a linear warmup. Learned state: ``tokenizer_``, ``model_`` (the transformers
    model in eval mode), ``classes_``.

    ``on_epoch_loss``, when set, is called with each epoch's mean training loss (the training job logs
    them to MLflow; the model itself knows nothing of tracking).
    """

    Params = Params
    hooks = {"on_epoch_loss": None}
    FOLDER = "hf"

    def _fit(self, records, y, params: Params) -> None:
        from training.models.families import finetune_torch

        seed = self.random_state if self.random_state is not None else int(np.random.default_rng().integers(2**31))
        classes = self.classes_.tolist()
        self.tokenizer_, self.model_ = finetune_torch.fine_tune(
            encoder_path(params.encoder), texts_of(records), [classes.index(label) for label in y], classes,
            params, seed, self.on_epoch_loss)

    def _class_proba(self, records):
        from training.models.families import finetune_torch

        proba = finetune_torch.predict_proba(self.tokenizer_, self.model_, texts_of(records),
                                             self._params().max_length)
        return proba, self.classes_

    def save(self, folder: Path) -> None:
        from training.models.families import finetune_torch

        finetune_torch.save(self.tokenizer_, self.model_, Path(folder) / self.FOLDER)

    def _load(self, folder: Path) -> None:
        from training.models.families import finetune_torch

        source = folder / self.FOLDER
        self.tokenizer_, self.model_ = finetune_torch.load(source)
        saved = [self.model_.config.id2label[i] for i in range(self.model_.config.num_labels)]
        if saved != [str(name) for name in self.classes_]:
            raise ValueError(f"{source}: saved labels {saved} differ from the manifest's {self.classes_.tolist()}")


Model = MiniLMFinetune
