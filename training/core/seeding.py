"""Seeding the process-wide random generators, and deterministic torch kernels; torch is imported only when used."""

from __future__ import annotations

import random
import sys
from contextlib import contextmanager
from typing import Iterator

import numpy as np


def seed_everything(seed: int) -> None:
    """Seed Python's ``random``, NumPy's global generator and, when it is already imported, torch.

    torch is never imported here: a process that has not loaded it (the TF-IDF family) stays torch-free.
    """
    random.seed(seed)
    np.random.seed(seed)
    if "torch" in sys.modules:
        import torch

        torch.manual_seed(seed)


@contextmanager
def torch_deterministic() -> Iterator[None]:
    """Deterministic torch kernels inside the block (warnings only where torch has none); the process-wide
    setting is restored after. Imports torch: call it only where torch is needed anyway."""
    import torch

    before = torch.are_deterministic_algorithms_enabled()
    warn_only = torch.is_deterministic_algorithms_warn_only_enabled()
    torch.use_deterministic_algorithms(True, warn_only=True)
    try:
        yield
    finally:
        torch.use_deterministic_algorithms(before, warn_only=warn_only)
