"""REST input (issue 20, case 3): the pyfunc answers bad rows per row and bad requests in one line.

Fast: a tiny TF-IDF model trained here, its pyfunc called directly and through MLflow's own
scoring-server function (``mlflow.pyfunc.scoring_server.invocations``, what ``/invocations`` runs).
The served end to end version is in test_serve.py (slow).
"""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from mlflow.exceptions import MlflowException

from conftest import SAMPLE_TEXTS
from training.serving.pyfunc import SentenceClassifierModel
from training.serving.predict import load

LABELS = ["diplomatic_contact", "boilerplate", "deployment", "drill", "other", "diplomatic_contact"]
PAGE = "Shoigu held a telephone conversation with Austin.\nTanks moved to the border. Your support matters."


@pytest.fixture(scope="module")
def folder(tmp_path_factory) -> Path:
    from training.models.families import new_model
    from training.tracking import export

    out = tmp_path_factory.mktemp("tiny")
    labels = ["diplomatic_contact", "deployment", "drill", "boilerplate", "other"]
    model = new_model("tfidf_logreg", {}, labels, 0).fit(SAMPLE_TEXTS, LABELS)
    return export.write(out, model, "tfidf_logreg", labels, {"model": {"params": {}}, "seed": 0}, {})


def _context(folder: Path, model_config: dict | None = None):
    return type("Context", (), {"artifacts": {"model": str(folder)}, "model_config": model_config})()


@pytest.fixture(scope="module")
def served(folder) -> SentenceClassifierModel:
    wrapper = SentenceClassifierModel()
    wrapper.load_context(_context(folder))
    return wrapper


def _strict_json(frame: pd.DataFrame) -> list[dict]:
    """The body MLflow's server sends for ``frame``, parsed strictly (NaN is not JSON)."""
    from mlflow.pyfunc.scoring_server import predictions_to_json

    body = io.StringIO()
    predictions_to_json(frame, body)
    return json.loads(body.getvalue(), parse_constant=lambda name: pytest.fail(f"{name} in the JSON answer"))[
        "predictions"]


def test_bad_text_rows_are_reported_per_row_and_good_rows_answered(served):
    good = ["Shoigu held a telephone conversation with Austin.", "The weather was mild."]
    frame = pd.DataFrame({"text": [good[0], None, 5, good[1], float("nan")]})
    rows = _strict_json(served.predict(None, frame))
    expected = served.classifier.proba_matrix(good)
    labels = served.classifier.labels
    for row, probabilities in zip([rows[0], rows[3]], expected):
        assert row["error"] is None
        assert row["label"] == labels[int(probabilities.argmax())]
        assert np.allclose([row[f"p_{name}"] for name in labels], probabilities)
    assert [rows[n]["error"] for n in (1, 2, 4)] == ["'text' is missing", "'text' is int, not a string",
                                                     "'text' is missing"]
    assert all(rows[n][key] is None for n in (1, 2, 4) for key in ["label", *[f"p_{name}" for name in labels]])


def test_bad_rows_are_no_neighbours_of_the_good_ones(served):
    """A bad row inside a page is left out: the page's good rows get what they get without it."""
    texts = ["Shoigu met Austin.", None, "Tanks moved to the border.", "Your support matters."]
    frame = pd.DataFrame({"text": texts, "article_id": ["a"] * 4, "index": [0, 1, 2, 3]})
    answer = served.predict(None, frame)
    alone = served.predict(None, frame.drop(index=1).reset_index(drop=True))
    assert answer["label"].tolist() == [alone["label"][0], None, *alone["label"][1:]]
    assert answer["error"].tolist() == [None, "'text' is missing", None, None]


def test_bad_pages_are_reported_per_row(served):
    frame = pd.DataFrame({"article_id": ["p0", "p1", "p2", "p3"], "page": [PAGE, None, 3.5, "  \n "]})
    rows = _strict_json(served.predict(None, frame))
    expected = served.classifier.classify_articles([PAGE])[0]
    assert rows[0]["label"] == [s["label"] for s in expected] and rows[0]["error"] is None
    assert [row["error"] for row in rows[1:]] == ["'page' is missing", "'page' is float, not a string", None]
    assert all(row["label"] == [] and row["text"] == [] for row in rows[1:])
    assert [row["article_id"] for row in rows] == ["p0", "p1", "p2", "p3"]


@pytest.mark.parametrize("frame", [pd.DataFrame({"sentence": ["a"], "id": ["x"]}), pd.DataFrame(index=[0, 1])])
def test_a_request_without_text_or_page_is_one_line(served, frame):
    with pytest.raises(MlflowException) as caught:
        served.predict(None, frame)
    assert caught.value.get_http_status_code() == 400
    assert "\n" not in caught.value.message
    assert "no column 'text' or 'page'" in caught.value.message


def test_the_request_size_limit_comes_from_the_model_config(folder):
    wrapper = SentenceClassifierModel()
    wrapper.load_context(_context(folder, {"max_request_chars": 100}))
    fine = pd.DataFrame({"text": ["x" * 50, "y" * 50]})
    assert wrapper.predict(None, fine)["error"].tolist() == [None, None]
    with pytest.raises(MlflowException, match="request too large: 101 characters .* limit of 100 per request"):
        wrapper.predict(None, pd.DataFrame({"page": ["x" * 50, "y" * 51]}))
    with pytest.raises(ValueError, match="max_request_chars"):
        SentenceClassifierModel().load_context(_context(folder, {"max_request_chars": "lots"}))


def test_mlflows_scoring_server_answers_one_line_without_internals(folder, tmp_path):
    """What ``/invocations`` returns: MLflow's own request handling around our pyfunc."""
    import mlflow.pyfunc
    from mlflow.pyfunc.scoring_server import invocations

    mlflow.pyfunc.save_model(str(tmp_path / "pyfunc"), python_model=SentenceClassifierModel(),
                             artifacts={"model": str(folder)}, model_config=SentenceClassifierModel.default_config,
                             pip_requirements=[])  # nothing to infer: this process runs it
    model = mlflow.pyfunc.load_model(str(tmp_path / "pyfunc"), model_config={"max_request_chars": 1000})

    def post(body: dict):
        try:
            answer = invocations(json.dumps(body), "application/json", model, None)
        except MlflowException as error:  # the server's handler: serialize_as_json with this status
            return error.get_http_status_code(), error.serialize_as_json()
        return answer.status, answer.response

    for body, message in [
            ({"dataframe_split": {"columns": ["sentence"], "data": [["Shoigu met Austin."]]}}, "no column 'text'"),
            ({"dataframe_records": [{"id": 1, "body": "x"}]}, "no column 'text' or 'page'"),
            ({"dataframe_split": {"columns": ["page"], "data": [["x" * 600], ["y" * 401]]}},
             "request too large: 1,001 characters of text and pages, over the limit of 1,000 per request")]:
        status, text = post(body)
        assert status == 400
        assert "\n" not in text and "Traceback" not in text and "stack_trace" not in text
        assert str(Path(__file__).resolve().parent.parent) not in text and "site-packages" not in text
        assert json.loads(text)["message"].startswith(message)

    status, text = post({"dataframe_split": {"columns": ["text"], "data": [["Shoigu met Austin."], [None]]}})
    assert status == 200
    rows = json.loads(text)["predictions"]
    assert rows[0]["label"] == load(folder).predict(["Shoigu met Austin."])[0]
    assert rows[1]["label"] is None and rows[1]["error"] == "'text' is missing"
