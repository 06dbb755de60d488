"""Everything MLflow: where runs go, what a run logs, the registered model and its alias."""

from __future__ import annotations

import hashlib
import json
import logging
import os
import socket
import subprocess
import tempfile
import urllib.error
import urllib.request
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import pandas as pd

from training.core.config import PROJECT_ROOT, Config
from training.core.errors import InputError
from training.core.targets import check_writable_file, check_writable_folder, reason, refused, refused_writes

log = logging.getLogger(__name__)
CHAMPION = "champion"
PRIMARY_METRIC = "model.macro_f1"
DEFAULT_TRACKING_URI = f"sqlite:///{PROJECT_ROOT / 'mlflow.db'}"  # without a config key or $MLFLOW_TRACKING_URI


def tracking_uri(config: Config) -> str:
    """Config first, then ``$MLFLOW_TRACKING_URI``, then ``sqlite:///mlflow.db`` in the project root."""
    uri = config.tracking.tracking_uri or os.environ.get("MLFLOW_TRACKING_URI") or DEFAULT_TRACKING_URI
    if "://" not in uri and not uri.startswith("databricks"):
        where = "tracking.tracking_uri" if config.tracking.tracking_uri else "MLFLOW_TRACKING_URI"
        raise InputError(f"{where}: '{uri}' has no scheme; use http://host:port, sqlite:///path/mlflow.db "
                         "or file:///path/mlruns")
    return uri


def check_reachable(uri: str, timeout: float = 5.0) -> None:
    """Fail in seconds, not after minutes of retries, when a tracking server does not answer."""
    if not uri.startswith(("http://", "https://")):
        return
    try:
        with urllib.request.urlopen(uri.rstrip("/") + "/health", timeout=timeout) as response:
            if response.status != 200:
                raise InputError(f"MLflow tracking server {uri} answered /health with HTTP {response.status}")
        probe = uri.rstrip("/") + "/api/2.0/mlflow/experiments/search?max_results=1"
        with urllib.request.urlopen(probe, timeout=timeout) as response:
            answer = json.loads(response.read() or b"null")
        if not isinstance(answer, dict):
            raise ValueError("not a JSON object")
    except urllib.error.HTTPError as exc:
        raise InputError(f"{uri} answers HTTP but is not an MLflow tracking server ({exc.code} {exc.reason} "
                         "for its REST API); check the port") from None
    except ValueError:
        raise InputError(f"{uri} answers HTTP but is not an MLflow tracking server (its REST API does not "
                         "return JSON); check the port") from None
    except (urllib.error.URLError, OSError, TimeoutError) as exc:
        reason = getattr(exc, "reason", exc)
        raise InputError(f"MLflow tracking server {uri} is unreachable ({reason}); "
                         "start it or unset MLFLOW_TRACKING_URI / tracking.tracking_uri") from None


def store_lock(uri: str):
    """A file lock for one tracking store: beside a sqlite file, else in the temp folder, keyed by URI.

    Creating or upgrading a new sqlite store is not safe when two processes do it at once (the
    second can leave it broken for good), and neither is the champion's check-then-set.
    """
    from filelock import FileLock

    if uri.startswith("sqlite:///"):
        database = Path(uri[len("sqlite:///"):])
        path = database.with_name(database.name + ".lock")
    else:
        path = Path(tempfile.gettempdir()) / f"mlflow-store-{hashlib.sha256(uri.encode()).hexdigest()[:16]}.lock"
    return FileLock(str(path), timeout=600)


def local_path(uri: str | None) -> Path | None:
    """The local file or folder behind a store or artifact URI (sqlite file, file: URI, bare path); else None."""
    from urllib.parse import urlparse

    if not uri or uri.startswith("databricks"):
        return None
    scheme = urlparse(uri).scheme
    if scheme == "sqlite":
        from sqlalchemy.engine import make_url

        database = make_url(uri).database
        return Path(database) if database and database != ":memory:" and not database.startswith("file:") else None
    if scheme == "file":
        from mlflow.utils.file_utils import local_file_uri_to_path

        return Path(local_file_uri_to_path(uri))
    return Path(uri) if scheme == "" else None  # http(s), databricks, mlflow-artifacts:, s3: ... are not ours


def check_store_writable(uri: str) -> None:
    """A local store takes writes (checked before any work, not when the run starts after minutes of labelling)."""
    path = local_path(uri)
    if path is None:
        return
    if uri.startswith("sqlite:"):
        check_writable_file(path, "MLflow store")
    else:
        check_writable_folder(path, "MLflow store")


def configure(config: Config) -> str:
    """Point MLflow at the config's store; a new store and the experiment are created under a lock.

    The store and the experiment's artifact folder must take writes: a read-only one fails here, in a second.
    """
    import mlflow
    from sqlalchemy.exc import OperationalError

    uri = tracking_uri(config)
    if uri.startswith(("http://", "https://")):
        os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "3")  # ride out a brief server hiccup ...
        os.environ.setdefault("MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR", "1")  # ... (1 + 2 + 4 s), then fail
        os.environ.setdefault("MLFLOW_HTTP_REQUEST_TIMEOUT", "20")
    check_reachable(uri)
    check_store_writable(uri)
    try:
        with store_lock(uri):
            mlflow.set_tracking_uri(uri)
            experiment = mlflow.set_experiment(config.tracking.experiment)
    except OSError as exc:
        if not refused(exc):
            raise
        raise InputError(f"MLflow store {uri}: cannot write there ({reason(exc)}: {exc.filename})") from None
    except OperationalError as exc:  # creating a store on a full disk: "database or disk is full", unwrapped
        words = (str(exc.orig or exc).strip().splitlines() or [type(exc).__name__])[0][:300]
        raise InputError(f"MLflow store {uri}: cannot create or open it ({words})") from None
    artifacts = local_path(experiment.artifact_location)
    if artifacts is not None:
        check_writable_folder(artifacts, "MLflow artifact store")
    for line in end_orphaned_runs(experiment.experiment_id):
        log.warning(line)
    return uri


def this_process() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


def end_orphaned_runs(experiment_id: str) -> list[str]:
    """Runs left RUNNING by a process of this machine that no longer exists are marked KILLED."""
    from mlflow import MlflowClient

    from training.core.system import pid_alive

    client, done = MlflowClient(), []
    host = socket.gethostname()
    for run in client.search_runs([experiment_id], filter_string="attributes.status = 'RUNNING'"):
        owner = run.data.tags.get("process", "")
        owner_host, _, pid = owner.rpartition(":")
        if owner_host == host and pid.isdigit() and not pid_alive(int(pid)):
            client.set_terminated(run.info.run_id, status="KILLED")
            done.append(f"run {run.info.run_id} ({run.info.run_name}) was left RUNNING by a stopped process; "
                        "marked KILLED")
    return done


def git_commit() -> str:
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=PROJECT_ROOT, capture_output=True, text=True,
                             timeout=5)
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=PROJECT_ROOT,
                               capture_output=True, text=True, timeout=5).stdout.strip()
        return (out.stdout.strip() or "unknown") + ("-dirty" if dirty else "")
    except (OSError, subprocess.SubprocessError):
        return "unknown"


@contextmanager
def start_run(config: Config, nested: bool = False, parent_tags: dict | None = None) -> Iterator:
    """A run with the standard name and tags; MLflow ends it FAILED if the body raises.

    A write the system refuses in the body (a full disk, a read-only folder) is one line: the model
    folder and the artifact store name themselves; any other write names its file, or where it can be.
    """
    import mlflow

    tags = {"git_commit": git_commit(), "model_family": config.model.family, "config_name": config.name,
            "process": this_process(), **(parent_tags or {})}
    with mlflow.start_run(run_name=config.name, nested=nested, tags=tags) as run:
        try:
            yield run
        except OSError as exc:
            if not refused(exc):
                raise
            where = exc.filename or (f"the out-of-fold store {config.resolve(config.evaluation.store)} or the "
                                     f"temp folder {tempfile.gettempdir()}")
            raise InputError(f"{where}: cannot write ({reason(exc)}); the MLflow run {run.info.run_id} is marked "
                             "FAILED and no model folder was written or replaced") from None


def log_params(config: Config) -> None:
    import mlflow

    mlflow.log_params(config.params())


def set_tags(tags: dict[str, str]) -> None:
    import mlflow

    mlflow.set_tags(tags)


def log_metrics(metrics: dict[str, float], step: int | None = None) -> None:
    import math

    import mlflow

    # 4 decimals: what a person compares (the UI shows every digit it is given); full precision is in metrics.json
    clean = {k: round(float(v), 4) for k, v in metrics.items() if v is not None and not math.isnan(float(v))}
    mlflow.log_metrics(clean, step=step)


@contextmanager
def _artifact_writes() -> Iterator[None]:
    """A full or read-only artifact store is one line naming it (MLflow passes the OSError on as it is)."""
    import mlflow

    with refused_writes(f"MLflow artifact store {mlflow.get_artifact_uri()}"):
        yield


def log_file(path: Path, artifact_path: str | None = None) -> None:
    import mlflow

    with _artifact_writes():
        mlflow.log_artifact(str(path), artifact_path=artifact_path)


def log_table(rows: list[dict], name: str) -> None:
    """A table artifact, as CSV (readable anywhere) and as MLflow's JSON table (viewable in the UI)."""
    import mlflow

    frame = pd.DataFrame(rows)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / f"{name}.csv"
        frame.to_csv(path, index=False)
        log_file(path, "tables")
    if not frame.empty:
        with _artifact_writes():
            mlflow.log_table(frame, artifact_file=f"tables/{name}.json")


def log_datasets(dataset, config: Config) -> None:
    """One MLflow dataset input per corpus source actually read, each with its local path as source.

    ``dataset`` is the labelled ``datasets.Dataset`` (one row per sentence, with its ``source``).
    """
    import warnings

    import mlflow

    frame = dataset.to_pandas()
    frame["label"] = dataset.features["label"].int2str(frame["label"].tolist())
    paths = {spec.name: str(config.resolve(spec.path).resolve()) for spec in config.sources}
    inputs = []
    for name, rows in frame.groupby("source", sort=False):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # MLflow's notice about inferring the schema
            ds = mlflow.data.from_pandas(rows.reset_index(drop=True), source=paths.get(name, name),
                                         targets="label", name=f"{config.name}:{name}")
        trains = config.train_sources is None or name in config.train_sources
        inputs.append((ds, "training" if trains else "evaluation"))  # evaluation: read for scoring only
    # MLflow looks a dataset up and inserts it when missing: two runs doing that at once on a new store
    # both insert it (UNIQUE constraint failed: datasets...). The lock serialises runs of this machine;
    # for runs elsewhere the loser logs again, and finds the winner's row.
    with store_lock(mlflow.get_tracking_uri()):
        for ds, context in inputs:
            _log_input(ds, context)


def _log_input(ds, context: str) -> None:
    import mlflow
    from mlflow.exceptions import MlflowException

    try:
        mlflow.log_input(ds, context=context)
    except MlflowException as exc:
        text = str(exc)
        if "datasets" not in text or not any(word in text for word in ("UNIQUE constraint", "IntegrityError",
                                                                       "duplicate key", "Duplicate entry")):
            raise
        mlflow.log_input(ds, context=context)


SERVING_PACKAGES = ("mlflow", "scikit-learn", "skops", "pandas", "numpy", "pyyaml", "pydantic", "pysbd")
ENCODER_PACKAGES = {  # what embedding needs when serving, by encoder backend
    "torch": ("torch", "transformers", "tqdm"),
    "onnx": ("onnxruntime", "tokenizers", "tqdm"),  # the graph and tokenizer files are in the model folder
    "onnx-int8": ("onnxruntime", "tokenizers", "tqdm"),
}


def serving_packages(family: str, params: dict) -> list[str]:
    """The distributions a model folder of ``family`` with ``params`` needs to load and predict.

    Every family needs the package's own dependencies (``training`` travels as code). Families whose params
    are :class:`~training.models.encoder.EncoderParams` embed through the encoder service when serving: the
    runtime of their backend (ONNX Runtime for a graph, torch otherwise), and the packaged encoder when they
    reference it (the torch backend does not copy it). A family with an encoder of its own (fine-tuned,
    saved in the folder) needs torch and transformers. The TF-IDF family needs neither.
    """
    from training.core.registry import family_module
    from training.models.encoder import PACKAGED, EncoderParams

    resolved = family_module(family).Params.model_validate(params)
    names = list(SERVING_PACKAGES)
    if isinstance(resolved, EncoderParams):
        names += ENCODER_PACKAGES[resolved.backend]
        if resolved.backend == "torch" and resolved.encoder == PACKAGED:
            names.append(PACKAGED)
    elif getattr(resolved, "encoder", None):
        names += ENCODER_PACKAGES["torch"]
    return list(dict.fromkeys(names))


def pip_requirements(family: str, params: dict) -> list[str]:
    """``name==version`` of each of :func:`serving_packages`, versions as installed here (where training ran)."""
    from importlib.metadata import PackageNotFoundError, version

    out = []
    for name in serving_packages(family, params):
        try:
            out.append(f"{name}=={version(name)}")
        except PackageNotFoundError:  # cannot be: training with this family imported it; keep the name unpinned
            out.append(name)
    return out


def log_model(model_folder: Path, config: Config, example: pd.DataFrame, wrapper):
    """Log the exported folder as a pyfunc model with signature and example; register it.

    ``wrapper``: the serving layer's ``mlflow.pyfunc.PythonModel`` (tracking does not import serving).

    ``example``: a few records (text, article_id, index); the signature makes ``text`` required
    and ``article_id``/``index`` optional, so callers may send bare sentences or whole pages.
    """
    import mlflow
    from mlflow.models import ModelSignature, infer_signature
    from mlflow.types import ColSpec, Schema

    wrapper.load_context(type("Ctx", (), {"artifacts": {"model": str(model_folder)}})())
    example = example[["text", "article_id", "index"]].reset_index(drop=True)
    inputs = Schema([ColSpec("string", "text", required=False), ColSpec("string", "article_id", required=False),
                     ColSpec("long", "index", required=False),
                     ColSpec("string", "page", required=False)])  # whole pages instead of text: see pyfunc.py
    outputs = infer_signature(example, wrapper.predict(None, example)).outputs
    signature = ModelSignature(inputs=inputs, outputs=outputs)
    with _artifact_writes():
        return mlflow.pyfunc.log_model(
            name=config.name, python_model=wrapper, artifacts={"model": str(model_folder)},
            code_paths=[str(PROJECT_ROOT / "training")], signature=signature, input_example=example,
            registered_model_name=config.tracking.registered_model,
            pip_requirements=pip_requirements(config.model.family, config.model.params),
            model_config=getattr(wrapper, "default_config", None),  # serve-time overrides need the keys logged
        )


@dataclass(frozen=True)
class Standing:
    """A registered version's score: macro-F1, its 95% interval and the evaluation plan it was scored on."""

    version: str
    macro_f1: float | None
    interval: str  # "0.850–0.872", or "" when unknown
    fingerprint: str  # "" when unknown

    def describe(self) -> str:
        within = f" (95% interval {self.interval})" if self.interval else ""
        return f"version {self.version}: macro-F1 {self.macro_f1:.4f}{within} on plan {self.fingerprint or '?'}"


def _interval(metrics: dict) -> str:
    low, high = metrics.get("macro_f1_ci_low"), metrics.get("macro_f1_ci_high")
    return f"{low:.3f}–{high:.3f}" if low is not None and high is not None and low == low else ""


def champion_standing(name: str) -> Standing | None:
    """The standing of the version holding the champion alias (its tags, else its run), or None."""
    from mlflow import MlflowClient
    from mlflow.exceptions import MlflowException

    client = MlflowClient()
    try:
        version = client.get_model_version_by_alias(name, CHAMPION)
    except MlflowException:
        return None
    tags = version.tags or {}
    score = float(tags["macro_f1"]) if "macro_f1" in tags else None
    fingerprint, interval = tags.get("fingerprint", ""), tags.get("macro_f1_interval", "")
    if version.run_id and (score is None or not fingerprint):
        run = client.get_run(version.run_id)
        score = run.data.metrics.get(PRIMARY_METRIC) if score is None else score
        fingerprint = fingerprint or run.data.tags.get("eval.fingerprint", "")
    return Standing(version.version, score, interval, fingerprint)


def promote_if_better(name: str, version: str, metrics: dict, fingerprint: str) -> tuple[bool, str]:
    """Give ``version`` the champion alias if it beats the champion on the same evaluation plan; say why."""
    import mlflow

    with store_lock(mlflow.get_tracking_uri()):  # compare-and-set: no other run moves the alias in between
        return _promote_locked(name, Standing(version, metrics["macro_f1"], _interval(metrics), fingerprint))


def _promote_locked(name: str, new: Standing) -> tuple[bool, str]:
    from mlflow import MlflowClient

    current = champion_standing(name)
    if current is not None and current.macro_f1 is not None:
        if current.fingerprint != new.fingerprint:
            return False, (f"champion stays on version {current.version}: it was scored on plan "
                           f"{current.fingerprint or '?'}, this run on plan {new.fingerprint} (other gold or "
                           f"folds: the scores do not compare)")
        if round(new.macro_f1, 4) <= round(current.macro_f1, 4):  # as tagged and shown: a tie keeps the holder
            return False, f"champion stays on {current.describe()}, not below this run's {new.describe()}"
    MlflowClient().set_registered_model_alias(name, CHAMPION, new.version)
    before = "no champion before" if current is None or current.macro_f1 is None else \
        f"it beats the previous champion, {current.describe()}"
    return True, f"{new.describe()} is now '{CHAMPION}': {before}"


def tag_version(config: Config, version: str, metrics: dict, fingerprint: str) -> None:
    """Tag a registered version with what it is and how it scored (read back when the champion is compared)."""
    from mlflow import MlflowClient

    tags = {"config": config.name, "family": config.model.family, "macro_f1": f"{metrics['macro_f1']:.4f}",
            "macro_f1_interval": _interval(metrics), "fingerprint": fingerprint}
    for key, value in tags.items():
        MlflowClient().set_model_version_tag(config.tracking.registered_model, version, key, value)


def describe(run_id: str, summary: str, config: Config, version: str | None, metrics: dict, fingerprint: str,
             champion: str = "") -> None:
    """The run's description (its summary table) and, when registered, the version's description."""
    from mlflow import MlflowClient

    client = MlflowClient()
    client.set_tag(run_id, "mlflow.note.content", f"```\n{summary}\n```")
    if version is None or not config.tracking.registered_model:
        return
    standing = Standing(version, metrics["macro_f1"], _interval(metrics), fingerprint)
    client.update_model_version(config.tracking.registered_model, version, description=(
        f"config {config.name} ({config.model.family}); grouped-CV {standing.describe()}; run {run_id}."
        + (f" {champion[0].upper()}{champion[1:]}." if champion else "")))
