"""A text's embedding is the same whatever else is encoded with it, and whatever the cache holds."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from training.data.corpus import read_folder
from training.models import encoder

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def texts():
    return list(dict.fromkeys(s.text for s in read_folder(ROOT / "seeds")))


@pytest.mark.parametrize("layers", encoder.LAYERS)
def test_a_texts_vector_does_not_depend_on_its_batch(texts, layers):
    target = texts[7]
    alone = encoder.embed([target], use_cache=False, layers=layers)[0]
    for size in (2, 3, 5, 8, 16, 32):  # from a batch of one to full ones: every shape MKL may split differently
        companions = texts[20:20 + size - 1]
        together = encoder.embed(companions + [target], batch_size=size, use_cache=False, layers=layers)
        assert np.array_equal(together[-1], alone), size


def test_what_the_cache_holds_changes_no_vector(texts):
    """A scoring run resumed mid-way has an empty cache where the uninterrupted one held earlier chunks' texts,
    so its batches hold other texts: each text must still get the same vector."""
    encoder.clear_cache()
    encoder.embed(texts[:40])  # an earlier chunk
    mixed = encoder.embed(texts[30:90])  # ten of these come from the cache, the rest are encoded without them
    fresh = encoder.embed(texts[30:90], use_cache=False)
    assert np.array_equal(mixed, fresh)
    encoder.clear_cache()


def test_the_onnx_path_tokenizes_exactly_as_transformers_does(texts):
    """ONNX models read ``tokenizer.json`` without transformers (which would import torch): same ids, same padding."""
    from transformers import AutoTokenizer

    folder = encoder.encoder_path(encoder.PACKAGED)
    theirs, ours = AutoTokenizer.from_pretrained(str(folder)), encoder.BundleTokenizer(folder)
    odd = ["", "   ", "Ünïcödé — “quotes” 中文 😀", "word " * 400, "MoD's T-90M tanks (2nd Army) moved 40km."]
    for max_length in (16, 64, 256):
        expected = dict(theirs(texts + odd, truncation=True, max_length=max_length))
        assert ours(texts + odd, max_length=max_length) == {name: expected[name] for name in
                                                              ("input_ids", "token_type_ids", "attention_mask")}
    assert (ours.pad_token_id, ours.pad_token_type_id, ours.padding_side) == (
        theirs.pad_token_id, theirs.pad_token_type_id, theirs.padding_side)
