import pandas as pd
import pytest

from training.serving import predict as predict_module
from training.serving.predict import ModelNotFoundError, classify_article, load, predict, predict_proba, predict_records


def test_empty_and_bad_inputs(trained_default):
    result, _ = trained_default
    clf = load(result.model_dir)
    assert predict([], model=clf) == [] and predict_proba([], model=clf) == []
    assert predict([]) == []  # empty input never needs a model
    with pytest.raises(TypeError, match=r"texts\[1\] is int"):
        predict(["fine", 3], model=clf)
    with pytest.raises(TypeError, match="not a single string"):
        predict("a sentence", model=clf)


def test_model_is_loaded_once(trained_default):
    result, _ = trained_default
    assert load(result.model_dir) is load(str(result.model_dir))
    assert predict(["Troops arrived."], model=str(result.model_dir)) == load(result.model_dir).predict(["Troops arrived."])


def test_missing_model_says_how_to_train(tmp_path, monkeypatch):
    with pytest.raises(ModelNotFoundError, match="python -m training.train"):
        load(tmp_path / "nothing")
    monkeypatch.setattr(predict_module, "DEFAULT_MODEL", tmp_path / "default")
    predict_module._load_cached.cache_clear()
    with pytest.raises(ModelNotFoundError, match="no trained model"):
        predict(["x"])


def test_classify_article_offsets(trained_default):
    result, _ = trained_default
    text = "Support The Moscow Times!\n\nRussia rolled its tanks across Belarus for drills. Talks began."
    records = classify_article(text, model=load(result.model_dir))
    assert [r["text"] for r in records] == ["Support The Moscow Times!",
                                            "Russia rolled its tanks across Belarus for drills.", "Talks began."]
    for r in records:
        assert text[r["start"]:r["end"]] == r["text"]
    assert [r["label"] for r in records[:2]] == ["boilerplate", "drill"]  # as on the seed pages it learnt from
    # the drill sentence rewritten as talks: its answer changes, the others' do not (this family reads one sentence)
    edited = text.replace("rolled its tanks across Belarus for drills", "held talks with Belarus")
    talks = classify_article(edited, model=load(result.model_dir))
    assert talks[1]["label"] == "diplomatic_contact"
    assert talks[1]["probabilities"]["drill"] < records[1]["probabilities"]["drill"]
    assert [r["probabilities"] for r in talks[::2]] == [r["probabilities"] for r in records[::2]]
    # a page's sentences as records give the same labels as the page itself
    frame = pd.DataFrame({"text": [r["text"] for r in records], "article_id": "p", "index": [0, 1, 2]})
    assert predict_records(frame, model=load(result.model_dir)) == [r["label"] for r in records]
