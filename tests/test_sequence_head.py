"""The page-sequence head: it reads a page's order, is deterministic, scores a page the same alone or in a
batch, keeps the input's row order, survives storage and sklearn's clone; the hybrid wires it in only when on."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch
from sklearn.base import clone
from sklearn.exceptions import NotFittedError
from sklearn.linear_model import LogisticRegression

from training.models import storage
from training.models.blocks import PageOrder
from training.models.families import family_module, new_model
from training.models.heads import PageSequenceHead

from conftest import SAMPLE_TEXTS

SMALL = dict(hidden=16, epochs=15, learning_rate=1e-2, batch_pages=8)  # a tiny GRU that learns the task in seconds
CLASSES = np.array(["first", "after_low", "after_high"])


def _pages(count: int, seed: int, width: int = 6) -> tuple[np.ndarray, np.ndarray]:
    """Synthetic pages, rows shuffled across pages: columns page code, position, features. A row's label is
    ``first`` on a page's first row, else whether the previous row's first feature was high: nothing in the
    row itself tells the last two apart, the page's order does."""
    rng = np.random.default_rng(seed)
    rows, labels = [], []
    for page in range(count):
        length = int(rng.integers(3, 15))
        features = rng.normal(size=(length, width))
        label = np.r_[0, np.where(features[:-1, 0] > 0, 2, 1)]
        rows.append(np.column_stack([np.full(length, 10 * page + 7), np.arange(length), features]))
        labels.append(CLASSES[label])
    X, y = np.vstack(rows), np.concatenate(labels)
    shuffle = rng.permutation(len(X))
    return X[shuffle], y[shuffle]


@pytest.fixture(scope="module")
def fitted() -> PageSequenceHead:
    return PageSequenceHead(**SMALL, random_state=0).fit(*_pages(80, seed=0))


@pytest.fixture(scope="module")
def unseen() -> tuple[np.ndarray, np.ndarray]:
    return _pages(40, seed=1)


def test_it_learns_from_the_previous_row_where_a_per_row_classifier_cannot(fitted, unseen):
    X, y = unseen
    train_X, train_y = _pages(80, seed=0)
    per_row = LogisticRegression(max_iter=1000).fit(train_X[:, 1:], train_y)  # position + features, no page order
    sequence_accuracy = (fitted.predict(X) == y).mean()
    per_row_accuracy = (per_row.predict(X[:, 1:]) == y).mean()
    assert sequence_accuracy > 0.9
    assert sequence_accuracy > per_row_accuracy + 0.25
    assert set(fitted.classes_) == set(CLASSES)


def test_same_seed_same_probabilities_bit_for_bit_and_torch_global_state_untouched(unseen):
    X, y = _pages(20, seed=2)
    before = torch.random.get_rng_state()
    first = PageSequenceHead(**{**SMALL, "epochs": 3}, random_state=5).fit(X, y).predict_proba(unseen[0])
    assert torch.equal(torch.random.get_rng_state(), before)
    again = PageSequenceHead(**{**SMALL, "epochs": 3}, random_state=5).fit(X, y).predict_proba(unseen[0])
    other = PageSequenceHead(**{**SMALL, "epochs": 3}, random_state=6).fit(X, y).predict_proba(unseen[0])
    assert np.array_equal(first, again)
    assert not np.array_equal(first, other)


def test_it_runs_on_one_thread_whatever_torch_is_set_to_and_leaves_the_setting_alone(unseen):
    X, y = _pages(20, seed=2)
    before = torch.get_num_threads()
    results = []
    try:
        for threads in (2, 1):
            torch.set_num_threads(threads)
            head = PageSequenceHead(**{**SMALL, "epochs": 2}, random_state=5).fit(X, y)
            assert torch.get_num_threads() == threads
            results.append(head.predict_proba(unseen[0]))
            assert torch.get_num_threads() == threads
    finally:
        torch.set_num_threads(before)
    assert np.array_equal(*results)


def test_a_page_gets_the_same_probabilities_alone_or_in_a_batch(fitted, unseen):
    X, _ = unseen
    batch = fitted.predict_proba(X)
    assert np.allclose(batch.sum(axis=1), 1)
    for code in np.unique(X[:, 0])[:5]:
        rows = np.flatnonzero(X[:, 0] == code)
        alone = X[rows].copy()
        alone[:, 0] = -1  # another code: only which rows share one matters
        assert np.array_equal(fitted.predict_proba(alone), batch[rows])


def test_rows_come_back_in_the_order_given(fitted, unseen):
    X, _ = unseen
    proba = fitted.predict_proba(X)
    order = np.random.default_rng(3).permutation(len(X))
    assert np.array_equal(fitted.predict_proba(X[order]), proba[order])
    # the page's order comes from the position column, not from the rows' order
    page = X[X[:, 0] == X[0, 0]]
    reversed_positions = page.copy()
    reversed_positions[:, 1] = reversed_positions[:, 1].max() - reversed_positions[:, 1]
    assert not np.allclose(fitted.predict_proba(reversed_positions), fitted.predict_proba(page))


def test_stored_and_loaded_it_gives_identical_probabilities(fitted, unseen, tmp_path):
    storage.dump(fitted, tmp_path / "head.skops")
    loaded = storage.load(tmp_path / "head.skops")
    assert "_network" not in vars(loaded)  # plain arrays stored; the torch network is rebuilt on first use
    assert np.array_equal(loaded.predict_proba(unseen[0]), fitted.predict_proba(unseen[0]))


def test_clone_keeps_the_parameters_and_drops_what_was_learned(fitted, unseen):
    copy = clone(fitted)
    assert copy.get_params() == fitted.get_params() and copy.get_params()["hidden"] == SMALL["hidden"]
    with pytest.raises(NotFittedError):
        copy.predict_proba(unseen[0])


def test_page_order_numbers_pages_and_orders_by_index():
    records = pd.DataFrame({"text": list("abcdef"), "article_id": ["q", "p", "q", "p", "r", "q"],
                            "index": [7, 0, 2, 1, 0, 5]})
    codes, positions = PageOrder().fit_transform(records).T
    assert codes.tolist() == [0, 1, 0, 1, 2, 0]
    assert positions.tolist() == [2, 0, 0, 1, 0, 1]


def _heads(params: dict) -> dict:
    module = family_module("minilm_hybrid")
    pipeline = module.build_pipeline(module.Params.model_validate(params), 0)
    return {name: reads for name, _, reads in getattr(pipeline, "heads", [])}


def test_the_hybrid_adds_the_head_only_when_it_has_a_weight():
    assert "sequence" not in _heads({})  # the default: no sequence head, the blend as before
    assert _heads({"sequence_weight": 0.5})["sequence"] == ["page_order", "sentence_vector", "inner_layers",
                                                            "position", "shape"]
    assert _heads({"sequence_weight": 0.5, "neighbour_embeddings": 0, "inner_layers": False, "shape": False,
                   "mlp_weight": 0, "tree_weight": 0})["sequence"] == ["page_order", "embedding", "position"]


def test_a_hybrid_with_the_head_on_is_identical_after_save_and_load(tmp_path):
    pages = [SAMPLE_TEXTS[i:] + SAMPLE_TEXTS[:i] for i in range(4)]  # the same sentences in four orders
    records = pd.DataFrame({"text": [t for page in pages for t in page],
                            "article_id": [f"p{n}" for n, page in enumerate(pages) for _ in page],
                            "index": [i for page in pages for i in range(len(page))]})
    labels = ["first" if i == 0 else "later" for i in records["index"]]
    params = {"max_length": 32, "rules": "", "ngram_max": 0, "char_ngram_max": 0, "inner_layers": False,
              "page_embedding": False, "whole_sentence": False, "coherence": False, "recurrence": False,
              "mlp_weight": 0, "tree_weight": 0, "sequence_weight": 1.0, "sequence_hidden": 8, "sequence_epochs": 3}
    model = new_model("minilm_hybrid", params, ["first", "later"], 0).fit(records, labels)
    model.save(tmp_path)
    loaded = type(model).load(tmp_path, model._params().model_dump(), ["first", "later"], 0)
    assert np.array_equal(loaded.predict_proba(records), model.predict_proba(records))
