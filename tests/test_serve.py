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

import pandas as pd
import pytest

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


LIMIT = 300_000  # max_request_chars for the served model, set the way an operator would


@pytest.fixture(scope="module")
def server(trained_default, tmp_path_factory):
    """``mlflow models serve`` of the registered TF-IDF version, with MLflow's own limits set; yields its URL."""
    result, folder = trained_default
    uri = f"models:/{result.config.tracking.registered_model}/{result.registered_version}"
    port = _free_port()
    url = f"http://127.0.0.1:{port}"
    where = tmp_path_factory.mktemp("serve")
    log = where / "serve.log"
    env = {**os.environ, "MLFLOW_TRACKING_URI": f"sqlite:///{folder / 'mlflow.db'}",
           "SERVING_MODEL_CONFIG": json.dumps({"max_request_chars": LIMIT})}
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    with open(log, "wb") as output:
        process = subprocess.Popen(
            [sys.executable, "-m", "mlflow", "models", "serve", "-m", uri, "--env-manager", "local",
             "-p", str(port), "-h", "127.0.0.1", "-w", "1", "--timeout", "60"],
            cwd=where, env=env, stdout=output, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        _wait_healthy(url, process, log)
        yield url
    finally:
        try:
            os.killpg(process.pid, signal.SIGTERM)
            process.wait(timeout=20)
        except ProcessLookupError:
            pass
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=10)


@pytest.mark.slow
def test_served_model_answers_sentences_and_pages(trained_default, server):
    result, _ = trained_default
    url = server
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
    assert [row["label"] for row in answer["predictions"]] == predict_records(pd.DataFrame(records),
                                                                              result.model_dir)
    assert [row["label"] for row in answer["predictions"]] == [s["label"] for s in expected[0]]


def _post_raw(url: str, body: dict) -> tuple[int, str]:
    request = urllib.request.Request(url, data=json.dumps(body).encode(), method="POST",
                                     headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as error:
        return error.code, error.read().decode()


@pytest.mark.slow
def test_bad_requests_are_one_line_and_bad_rows_do_not_sink_the_batch(trained_default, server):
    """Issue 20, case 3, against the real server: wrong columns, null text, wrong types, too large."""
    result, _ = trained_default
    invocations = server + "/invocations"
    for body in ({"dataframe_split": {"columns": ["sentence"], "data": [["Shoigu met Austin."]]}},
                 {"dataframe_records": [{"body": "Shoigu met Austin.", "id": 3}]},
                 {"inputs": ["Shoigu met Austin."]},
                 {"dataframe_split": {"columns": ["text"], "data": [["x" * 1000]] * (LIMIT // 1000 + 1)}}):
        status, text = _post_raw(invocations, body)
        assert status == 400, text[:300]
        assert "\n" not in text and "Traceback" not in text and "stack_trace" not in text
        assert str(ROOT) not in text and "site-packages" not in text
        message = json.loads(text)["message"]
        assert message.startswith(("no column 'text' or 'page'", "request too large")), message

    good = ["Shoigu held a telephone conversation with Austin.", "Tanks moved to the border."]
    status, text = _post_raw(invocations, {"dataframe_split": {
        "columns": ["text"], "data": [[good[0]], [None], [7], [good[1]], ["1" * 64_000]]}})
    assert status == 200, text[:300]
    rows = json.loads(text)["predictions"]
    assert [rows[0]["label"], rows[3]["label"]] == predict_records(pd.DataFrame({"text": good}), result.model_dir)
    assert [row["error"] for row in rows] == [None, "'text' is missing", "'text' is int, not a string", None, None]
    assert rows[1]["label"] is None and rows[2]["p_other"] is None
    assert rows[4]["label"] == predict_records(pd.DataFrame({"text": ["1" * 2000]}), result.model_dir)[0]
    with urllib.request.urlopen(server + "/ping", timeout=10) as response:
        assert response.status == 200
