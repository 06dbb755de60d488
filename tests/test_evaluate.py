import numpy as np
import pandas as pd
import pytest

from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.metrics import f1_score

from training.core.errors import InputError
from training.core.metrics import classification_metrics
from training.evaluation.cv import cross_validate, macro_f1_interval
from training.evaluation.plan import Plan, fingerprint, freeze, load_plan


def test_plan_folds_never_share_a_page_and_unlisted_pages_get_a_stable_fold():
    pages = [f"a{i // 7}" for i in range(70)]
    labels = ["x" if i % 3 else "y" for i in range(70)]
    frozen = freeze(pages, labels, 4, seed=1)
    assert sorted(set(frozen.values())) == [0, 1, 2, 3] and set(frozen) == set(pages)
    plan = Plan(4, frozen, "test")
    folds = plan.assign(pages + ["new-page"])
    assert all(folds[i] == frozen[p] for i, p in enumerate(pages))
    assert folds[-1] == Plan(4).fold_of("new-page") == Plan(4, {}, "other").fold_of("new-page")  # hash, stable
    same = fingerprint([f"s{i}" for i in range(70)], labels, folds[:70])
    assert same == fingerprint([f"s{i}" for i in range(70)][::-1], labels[::-1], folds[:70][::-1])  # order-free
    moved = folds[:70].copy()
    moved[0] = (moved[0] + 1) % 4
    relabelled = ["x" if labels[0] == "y" else "y"] + labels[1:]
    assert len({same, fingerprint([f"s{i}" for i in range(70)], labels, moved),
                fingerprint([f"s{i}" for i in range(70)], relabelled, folds[:70])}) == 3


def test_a_plan_file_with_other_folds_or_damage_is_one_clear_error(tmp_path):
    path = tmp_path / "folds.json"
    path.write_text('{"folds": 5, "articles": {"a": 1}}')
    with pytest.raises(InputError, match="the plan has 5 folds but key 'evaluation.folds' is 3"):
        load_plan(path, 3)
    path.write_text('{"folds": 5, "articles": {"a": 7}}')
    with pytest.raises(InputError, match="outside 0..4"):
        load_plan(path, 5)
    path.write_text("[1, 2]")
    with pytest.raises(InputError, match="not an evaluation plan"):
        load_plan(path, 5)


def test_metrics_per_class_and_confusion():
    labels = ["x", "y", "z"]
    m = classification_metrics(["x", "x", "y", "z"], ["x", "y", "y", "y"], labels)
    assert m["per_class"]["x"] == {"precision": 1.0, "recall": 0.5, "f1": pytest.approx(2 / 3), "support": 2}
    assert m["per_class"]["z"]["f1"] == 0.0
    assert m["confusion"] == [[1, 1, 0], [0, 1, 0], [0, 1, 0]]
    assert m["macro_f1"] == pytest.approx((2 / 3 + 0.5 + 0) / 3)


class Memorise(ClassifierMixin, BaseEstimator):
    """A model that records what it was trained on (to check no test text leaks into training)."""

    seen: list = []

    def fit(self, records, labels):
        Memorise.seen.append(set(records["text"]))
        self.classes_ = np.array(["x", "y"])
        return self

    def predict_proba(self, records):
        return np.tile([1.0, 0.0], (len(records), 1))


def test_cross_validate_trains_without_test_pages_and_predicts_every_sentence_once():
    texts = [f"t{i}" for i in range(30)]
    articles = [f"a{i // 5}" for i in range(30)]
    fold_of = np.array([int(a[1:]) % 3 for a in articles])
    gold_index = np.arange(0, 30, 2)  # every other sentence is gold; all are predicted out of fold
    trainable = np.array([i < 25 for i in range(30)])  # page a5 is read for evaluation only
    Memorise.seen = []
    records = pd.DataFrame({"text": texts, "article_id": articles, "index": [i % 5 for i in range(30)]})
    labels = ["x", "y"] * 15
    cv = cross_validate(records, labels, fold_of, trainable, gold_index, [labels[i] for i in gold_index],
                        ["x", "y"], Memorise())
    assert len(Memorise.seen) == 3 and len(cv.fold_macro_f1) == 3
    for number, seen in enumerate(Memorise.seen):
        held_out = {texts[i] for i in range(30) if fold_of[i] == number}
        assert held_out and not seen & held_out
        assert not seen & set(texts[25:])  # never trained on, though predicted
    assert not np.isnan(cv.probabilities).any()
    assert cv.gold_predictions(["x", "y"]) == ["x"] * 15


def test_macro_f1_interval_resamples_pages_and_covers_the_score():
    rng = np.random.default_rng(0)
    truth = rng.choice(["a", "b", "c"], 600)
    predicted = np.where(rng.random(600) < 0.8, truth, rng.choice(["a", "b", "c"], 600))
    pages = [f"p{i // 12}" for i in range(600)]
    score = f1_score(truth, predicted, average="macro")
    low, high = macro_f1_interval(truth, predicted, pages, ["a", "b", "c"], 500, seed=1)
    assert low < score < high and 0.02 < high - low < 0.2
    sentence_pages = [f"s{i}" for i in range(600)]  # pages of one sentence: narrower than pages of twelve
    low2, high2 = macro_f1_interval(truth, predicted, sentence_pages, ["a", "b", "c"], 500, seed=1)
    assert high2 - low2 < high - low
    assert macro_f1_interval(truth, truth, pages, ["a", "b", "c"], 200, seed=1) == (1.0, 1.0)
