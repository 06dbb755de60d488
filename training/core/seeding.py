"""One seeding function for the process-wide random generators."""

from __future__ import annotations

import random
import sys

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
