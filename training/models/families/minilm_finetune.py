"""MiniLM fine-tuned end to end for sequence classification (plain PyTorch loop, CPU-deterministic).

``Params`` imports without torch; ``Model`` (in :mod:`training.families.finetune_torch`) loads
torch and transformers on first use.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

from training.models.encoder import PACKAGED


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


def __getattr__(name: str):
    if name == "Model":
        from training.models.families.finetune_torch import Model

        return Model
    raise AttributeError(name)
