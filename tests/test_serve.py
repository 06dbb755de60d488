"""REST: the registered pyfunc behind `mlflow models serve` answers sentences and whole pages."""

from __future__ import annotations

import json
import os
import socket
import sys
import urllib.request
from pathlib import Path

import pytest

from training.serving.predict import classify_articles, predict_records

ROOT = Path(__file__).resolve().parent.parent
pytestmark = [pytest.mark.slow, pytest.mark.timeout(600)]


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _post(url: str, body: dict) -> dict:
    request = urllib.request.Request(url, data=json.dumps(body).encode(), method="POST",
                                     headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request) as response:
        return json.loads(response.read())


def test_served_model_answers_sentences_and_pages(trained_default, tmp_path, spawn):
    result, folder = trained_default
    uri = f"models:/{result.config.tracking.registered_model}/{result.registered_version}"
    port = _free_port()
    url = f"http://127.0.0.1:{port}"
    env = {**os.environ, "MLFLOW_TRACKING_URI": f"sqlite:///{folder / 'mlflow.db'}"}
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    server = spawn([sys.executable, "-m", "mlflow", "models", "serve", "-m", uri, "--env-manager", "local",
                    "-p", str(port), "-h", "127.0.0.1", "-w", "1"], cwd=tmp_path, env=env)
    server.wait_for(f"Uvicorn running on {url}")  # printed once the model is loaded and the port listens
    with urllib.request.urlopen(url + "/health") as response:
        assert response.status == 200, server.output
    try:
        pages = [path.read_text(encoding="utf-8") for path in sorted((ROOT / "seeds").glob("*.txt"))[:3]]

        answer = _post(url + "/invocations", {"dataframe_split": {
            "columns": ["article_id", "page"], "data": [[f"p{n}", page] for n, page in enumerate(pages)]}})
        rows = answer["predictions"]
        expected = classify_articles(pages, result.model_dir)
        assert [row["article_id"] for row in rows] == ["p0", "p1", "p2"]
        assert [row["label"] for row in rows] == [[s["label"] for s in page] for page in expected]
        assert [row["start"] for row in rows] == [[s["start"] for s in page] for page in expected]

        records = [{"text": s["text"], "article_id": "p0", "index": s["index"]} for s in expected[0]]
        answer = _post(url + "/invocations", {"dataframe_records": records})
        import pandas as pd

        assert [row["label"] for row in answer["predictions"]] == predict_records(pd.DataFrame(records),
                                                                                  result.model_dir)
        assert [row["label"] for row in answer["predictions"]] == [s["label"] for s in expected[0]]
    finally:
        server.stop()
