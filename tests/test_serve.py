"""REST: the registered pyfunc behind `mlflow models serve` answers sentences and whole pages."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

from training.serving.predict import classify_articles, predict_records

ROOT = Path(__file__).resolve().parent.parent


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _post(url: str, body: dict) -> dict:
    request = urllib.request.Request(url, data=json.dumps(body).encode(), method="POST",
                                     headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=60) as response:
        return json.loads(response.read())


def _wait_healthy(url: str, server: subprocess.Popen, log: Path, seconds: float = 60) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise AssertionError(f"server exited with {server.returncode}: {log.read_text()[-2000:]}")
        try:
            with urllib.request.urlopen(url + "/health", timeout=2) as response:
                if response.status == 200:
                    return
        except (urllib.error.URLError, OSError):
            pass
        time.sleep(0.5)
    raise AssertionError(f"no /health answer within {seconds:.0f} s: {log.read_text()[-2000:]}")


def test_served_model_answers_sentences_and_pages(trained_default, tmp_path):
    result, folder = trained_default
    uri = f"models:/{result.config.tracking.registered_model}/{result.registered_version}"
    port = _free_port()
    url = f"http://127.0.0.1:{port}"
    log = tmp_path / "serve.log"
    env = {**os.environ, "MLFLOW_TRACKING_URI": f"sqlite:///{folder / 'mlflow.db'}"}
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    with open(log, "wb") as output:
        server = subprocess.Popen(
            [sys.executable, "-m", "mlflow", "models", "serve", "-m", uri, "--env-manager", "local",
             "-p", str(port), "-h", "127.0.0.1", "-w", "1"],
            cwd=tmp_path, env=env, stdout=output, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        _wait_healthy(url, server, log)
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
        try:
            os.killpg(server.pid, signal.SIGTERM)
            server.wait(timeout=20)
        except ProcessLookupError:
            pass
        except subprocess.TimeoutExpired:
            os.killpg(server.pid, signal.SIGKILL)
            server.wait(timeout=10)
