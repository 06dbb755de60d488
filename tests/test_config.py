import pytest

from training.core.config import flatten, load_config
from training.core.errors import InputError

from conftest import write_config


def test_default_config_loads_and_overrides_apply():
    config = load_config(None, ["model.params.C=8", "evaluation.folds=3", "labelling.combiner=label_model"])
    assert config.name == "default"
    assert config.model.params["C"] == 8
    assert config.evaluation.folds == 3 and config.labelling.combiner == "label_model"
    flat = config.flat()
    assert flat["model.params.C"] == 8 and flat["sources.0.name"] == "seeds"


@pytest.mark.parametrize("override, message", [
    ("modle.family=x", "key 'modle': unknown key"),
    ("evaluation.folds=three", "key 'evaluation.folds': Input should be a valid integer"),
    ("evaluation.folds=1", "key 'evaluation.folds'"),
    ("labelling.combiner=vote", "key 'labelling.combiner'"),
    ("model.family=xgboost", "key 'model.family': unknown model family 'xgboost'"),
    ("model.params.ngram=3", "key 'model.params.ngram': unknown key"),
    ("model.params.C=-1", "key 'model.params.C'"),
    ("name=a/b", "key 'name'"),
    ("novalue", "expected key=value"),
])
def test_config_errors_name_the_key(override, message):
    with pytest.raises(InputError, match=message.replace("(", r"\(")):
        load_config(None, [override])


def test_config_file_errors(tmp_path):
    with pytest.raises(InputError, match="nope.yaml: file not found"):
        load_config(tmp_path / "nope.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: x\nsources: [\n", encoding="utf-8")
    with pytest.raises(InputError, match=r"bad.yaml: line \d+"):
        load_config(bad)
    path = write_config(tmp_path, "cfg", sources=[])
    with pytest.raises(InputError, match="cfg.yaml: key 'sources'"):
        load_config(path)


def test_flatten():
    assert flatten({"a": {"b": 1, "c": [2, {"d": 3}]}, "e": {}}) == {"a.b": 1, "a.c.0": 2, "a.c.1.d": 3, "e": {}}


def test_overrides_after_config_files_are_not_taken_for_files(tmp_path, monkeypatch):
    import training.cli.train as train_cli
    from training.cli.train import main

    seen = {}

    def fake_expand(paths, overrides):
        seen.update(paths=paths, overrides=overrides)
        raise InputError("stop here")

    monkeypatch.setattr(train_cli, "expand", fake_expand)
    uri = "tracking.tracking_uri=sqlite:////tmp/store/mlflow.db"  # an absolute sqlite path keeps its four slashes
    assert main(["--config", "configs/default.yaml", "evaluation.folds=3", uri, "name=x"]) == 2
    assert [str(p) for p in seen["paths"]] == ["configs/default.yaml"]
    assert seen["overrides"] == ["evaluation.folds=3", uri, "name=x"]
