import numpy as np
import pandas as pd
import pytest

from training.evaluate import classification_metrics, cross_validate, grouped_folds


def test_grouped_folds_never_share_an_article():
    articles = [f"a{i // 7}" for i in range(70)] + [f"u{i}" for i in range(5)]  # u*: no gold
    gold_index = np.arange(0, 70, 2)
    folds = grouped_folds(articles, gold_index, 4)
    assert len(folds) == 4
    tested = np.concatenate([f.test for f in folds])
    assert sorted(tested) == sorted(gold_index)  # every gold sentence tested exactly once
    for fold in folds:
        train_articles = {articles[i] for i in fold.train}
        test_articles = {articles[i] for i in fold.test}
        assert not train_articles & test_articles
        assert {f"u{i}" for i in range(5)} <= train_articles  # unlabelled articles always train
        # every sentence of a held-out article is out of training, gold or not
        assert not any(articles[i] in test_articles for i in fold.train)


def test_too_few_gold_articles():
    with pytest.raises(ValueError, match="at least 2 articles"):
        grouped_folds(["a", "a", "b"], np.array([0, 1]), 5)


def test_metrics_per_class_and_confusion():
    labels = ["x", "y", "z"]
    m = classification_metrics(["x", "x", "y", "z"], ["x", "y", "y", "y"], labels)
    assert m["per_class"]["x"] == {"precision": 1.0, "recall": 0.5, "f1": pytest.approx(2 / 3), "support": 2}
    assert m["per_class"]["z"]["f1"] == 0.0
    assert m["confusion"] == [[1, 1, 0], [0, 1, 0], [0, 1, 0]]
    assert m["macro_f1"] == pytest.approx((2 / 3 + 0.5 + 0) / 3)


class Memorise:
    """A model that records what it was trained on (to check no test text leaks into training)."""

    seen: list = []

    def fit(self, records, labels):
        Memorise.seen.append(set(records["text"]))
        return self

    def predict_proba(self, records):
        return np.tile([1.0, 0.0], (len(records), 1))


def test_cross_validate_trains_without_test_articles():
    texts = [f"t{i}" for i in range(30)]
    articles = [f"a{i // 5}" for i in range(30)]
    gold_index = np.arange(30)
    Memorise.seen = []
    records = pd.DataFrame({"text": texts, "article_id": articles, "index": [i % 5 for i in range(30)]})
    cv = cross_validate(records, ["x"] * 30, gold_index, ["x"] * 30, ["x", "y"], 3, Memorise)
    assert len(Memorise.seen) == 3
    for number, seen in enumerate(Memorise.seen):
        tested = {texts[i] for i in gold_index[cv.fold_of == number]}
        assert tested and not seen & tested
    assert list(cv.predictions) == ["x"] * 30
