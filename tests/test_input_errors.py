"""Bad input anywhere is one line naming the file, key or line, exit 2, and nothing written."""

from __future__ import annotations

import http.server
import json
import shutil
import threading

import pytest

from training.tracking.export import DamagedModelError
from training.serving.predict import load
from training.cli.train import main

from conftest import write_config


def _one_line_error(capsys, argv: list[str]) -> str:
    assert main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: "), err
    return err[0]


@pytest.mark.parametrize("overrides, expected", [
    (["seed=-1"], "override 'seed=-1': key 'seed': Input should be greater than or equal to 0"),
    (["seed=99999999999"], "key 'seed': Input should be less than or equal to 4294967295"),
    (["model.params.min_df=500"], "key 'model.params.min_df' (500) is too large for this data"),
    (["model.params.Cx=3"], "override 'model.params.Cx=3': key 'model.params.Cx': unknown key"),
    (["evaluation.foldz=3"], "override 'evaluation.foldz=3': key 'evaluation.foldz': unknown key"),
    (["sources.4.path=x"], "override 'sources.4.path=x': 'sources' has no item 4 (items 0..0)"),
    (["tracking.tracking_uri=localhost:5000"], "tracking.tracking_uri: 'localhost:5000' has no scheme"),
])
def test_bad_values_and_overrides(tmp_path, capsys, overrides, expected):
    path = write_config(tmp_path, "bad")
    assert expected in _one_line_error(capsys, ["--config", str(path), *overrides])
    assert not (tmp_path / "models" / "bad").exists()


def test_list_items_can_be_overridden(tmp_path):
    from training.core.config import load_config

    config = load_config(write_config(tmp_path, "lists"), [f"sources.0.path={tmp_path}", "sources.0.optional=true"])
    assert str(config.sources[0].path) == str(tmp_path) and config.sources[0].optional


def test_output_dir_that_is_a_file(tmp_path, capsys):
    (tmp_path / "taken").write_text("not a folder")
    path = write_config(tmp_path, "out", output_dir=str(tmp_path / "taken"))
    assert "exists but is not a folder" in _one_line_error(capsys, ["--config", str(path)])


@pytest.mark.parametrize("kind, content", [("parquet", b"PAR1 this is not parquet"),
                                           ("csv", b"text,id\n\"unclosed quote,1\n"),
                                           ("jsonl", b'{"text": "fine"}\n{"text": \n')])
def test_corrupt_tabular_sources(tmp_path, capsys, kind, content):
    source = tmp_path / f"pages.{kind}"
    source.write_bytes(content)
    path = write_config(tmp_path, "corrupt", sources=[{"name": "pages", "kind": kind, "path": str(source)}])
    line = _one_line_error(capsys, ["--config", str(path)])
    assert str(source) in line


def test_a_server_that_is_not_mlflow(tmp_path, capsys):
    (tmp_path / "www").mkdir()
    (tmp_path / "www" / "health").write_text("OK")  # answers /health, but has no MLflow REST API

    class Quiet(http.server.SimpleHTTPRequestHandler):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, directory=str(tmp_path / "www"), **kwargs)

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Quiet)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        path = write_config(tmp_path, "wrong", tracking={"tracking_uri": f"http://127.0.0.1:{server.server_port}",
                                                          "experiment": "tests", "registered_model": None})
        assert "is not an MLflow tracking server" in _one_line_error(capsys, ["--config", str(path)])
    finally:
        server.shutdown()


@pytest.mark.parametrize("damage", ["manifest_json", "manifest_key", "truncated_pickle", "empty_pickle"])
def test_damaged_model_files_are_one_clear_error(trained_default, tmp_path, damage):
    result, _ = trained_default
    folder = tmp_path / "damaged"
    shutil.copytree(result.model_dir, folder)
    manifest = folder / "model.json"
    pickle = folder / "pipeline.skops"
    if damage == "manifest_json":
        manifest.write_text(manifest.read_text()[:40])
    elif damage == "manifest_key":
        data = json.loads(manifest.read_text())
        del data["labels"]
        manifest.write_text(json.dumps(data))
    elif damage == "truncated_pickle":
        pickle.write_bytes(pickle.read_bytes()[:251])
    else:
        pickle.write_bytes(b"")
    with pytest.raises(DamagedModelError, match=f"{folder}.*(damaged|unreadable).*retrain"):
        load(folder)


def test_a_read_only_project_folder(tmp_path, capsys, monkeypatch):
    """As root chmod cannot make a folder read-only, so the OS refusal is simulated where it would come."""
    import training.core.system as system_module
    import training.tracking.track as track_module

    def refuse(*args, **kwargs):
        raise PermissionError(13, "Permission denied", str(tmp_path / "models"))

    path = write_config(tmp_path, "readonly")
    monkeypatch.setattr(system_module.tempfile, "mkdtemp", refuse)
    assert "not writable (permission denied)" in _one_line_error(capsys, ["--config", str(path)])
    monkeypatch.setattr(track_module, "store_lock", refuse)
    assert "cannot write there (Permission denied" in _one_line_error(capsys, ["--config", str(path)])
