"""Screenshots of MLflow 3's web UI for this project's runs and registry, taken in a real headless browser.

    python tools/mlflow_screenshots.py                                  # trains two quick configs into a fresh store
    python tools/mlflow_screenshots.py --store sqlite:///mlflow.db      # an existing store
    python tools/mlflow_screenshots.py --out /tmp/shots --configs configs/tfidf.yaml configs/seeds-tfidf.yaml

Needs Debian's ``chromium`` (``apt-get install chromium``) and ``pip install playwright`` (no
``playwright install``: the system browser is used). Starts ``mlflow server`` on a free local port,
screenshots the experiment's run list, the chart view, the compare page, a run's overview, the
registered model and one version, stops the server, and prints each PNG with what it shows.
"""
from __future__ import annotations

import argparse
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.parse
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CHROMIUM = "/usr/bin/chromium"
DEFAULT_CONFIGS = ["configs/tfidf.yaml", "configs/seeds-tfidf.yaml"]
METRIC = "model.macro_f1"
VIEWPORT = {"width": 1920, "height": 1200}
# MLflow 3 opens its assistant side panel (a third of the width) on first load; start with it closed
QUIET_UI = """
localStorage.setItem("mlflow.assistant.fab.autoOpenedOnFirstLoad_v1", "true");
localStorage.setItem("mlflow.assistant.panelOpen_v1", "false");
localStorage.setItem("mlflow.workflowType_v1", JSON.stringify("machine_learning"));  // "Model training" sidebar
"""
# the UI scrolls inside its own panel, so a "full page" shot is one viewport: grow the viewport to the content
CONTENT_HEIGHT = """() => {
  let extra = 0;
  for (const el of document.querySelectorAll('*')) {
    const style = getComputedStyle(el);
    if (/(auto|scroll)/.test(style.overflowY) && el.clientHeight > 300)
      extra = Math.max(extra, el.scrollHeight - el.clientHeight);
  }
  return extra;
}"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def absolute_store(store: str) -> str:
    """``sqlite:///mlflow.db`` means ./mlflow.db here; the server runs elsewhere, so make the path absolute."""
    prefix = "sqlite:///"
    if store.startswith(prefix) and not store.startswith(prefix + "/"):
        return prefix + str(Path(store[len(prefix):]).resolve())
    return store


def fill_store(tmp: Path, configs: list[str], experiment: str) -> str:
    """Train each config (one run each) into a new sqlite store under ``tmp``; return its URI."""
    import logging

    from mlflow import MlflowClient

    logging.getLogger("mlflow").setLevel(logging.WARNING)  # no "Creating initial MLflow database tables"

    store = f"sqlite:///{tmp / 'mlflow.db'}"
    # the experiment first, so artifacts land under tmp and not in ./mlruns of the working tree
    MlflowClient(store).create_experiment(experiment, artifact_location=(tmp / "artifacts").as_uri())
    env = dict(os.environ, MLFLOW_TRACKING_URI=store)  # tracking_uri: null in the configs -> this store
    for config in configs:
        print(f"training {config} into {store} ...", flush=True)
        # overrides before --config: after it, argparse's nargs="+" reads them as paths
        cmd = [sys.executable, "-m", "training.train", f"output_dir={tmp / 'models'}",
               "evaluation.find_label_issues=false", "--config", config]
        done = subprocess.run(cmd, cwd=ROOT, env=env, check=False, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        if done.returncode != 0:
            sys.exit(f"error: {' '.join(cmd)} failed ({done.returncode}):\n{done.stdout[-3000:]}")
    return store


def start_server(store: str, port: int, workdir: Path, log: Path) -> subprocess.Popen:
    env = dict(os.environ, MLFLOW_DISABLE_TELEMETRY="true", DO_NOT_TRACK="true")
    cmd = [sys.executable, "-m", "mlflow", "server", "--backend-store-uri", store, "--host", "127.0.0.1",
           "--port", str(port), "--workers", "1"]
    # cwd: the server's default artifact folder (./mlartifacts) must not appear in the working tree
    return subprocess.Popen(cmd, cwd=workdir, env=env, stdout=log.open("w"), stderr=subprocess.STDOUT,
                            start_new_session=True)


def wait_healthy(base: str, server: subprocess.Popen, log: Path, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if server.poll() is not None:
            sys.exit(f"error: mlflow server exited ({server.returncode}):\n{log.read_text()[-3000:]}")
        try:
            with urllib.request.urlopen(f"{base}/health", timeout=2) as response:
                if response.status == 200:
                    return
        except OSError:
            pass
        time.sleep(0.5)
    sys.exit(f"error: mlflow server not healthy after {timeout:.0f} s:\n{log.read_text()[-3000:]}")


def stop_server(server: subprocess.Popen) -> None:
    """SIGTERM to the server's own process group (it and its uvicorn workers), SIGKILL after 20 s."""
    import signal

    for sig, wait in ((signal.SIGTERM, 20), (signal.SIGKILL, 10)):
        try:
            os.killpg(server.pid, sig)  # start_new_session: the group is the server's, nothing else
        except ProcessLookupError:
            return
        try:
            server.wait(wait)
            return
        except subprocess.TimeoutExpired:
            continue


class Shooter:
    """One browser page on the MLflow UI; each ``shot`` writes a PNG and remembers what it shows."""

    def __init__(self, page, base: str, out: Path):
        self.page, self.base, self.out = page, base, out
        self.written: list[tuple[Path, str]] = []

    def goto(self, route: str, wait_text: str | None = None) -> None:
        self.page.goto(f"{self.base}/#{route}")
        if wait_text:
            self.page.get_by_text(wait_text, exact=False).first.wait_for(state="visible", timeout=60_000)
        self.settle()

    def settle(self) -> None:
        """Let the network go quiet and close the popups MLflow 3 opens (assistant panel, feature tips)."""
        from playwright.sync_api import TimeoutError as PlaywrightTimeout

        try:
            self.page.wait_for_load_state("networkidle", timeout=10_000)
        except PlaywrightTimeout:  # a long poll keeps it busy: the text we waited for is enough
            pass
        for name in ("Got it", "Dismiss"):
            button = self.page.get_by_role("button", name=name)
            if button.count() and button.first.is_visible():
                button.first.click()
        self.page.wait_for_timeout(500)

    def failed(self) -> Path:
        """A screenshot of whatever the page shows when a step fails (a changed UI: a button renamed)."""
        path = self.out / "error.png"
        from playwright.sync_api import Error as PlaywrightError

        try:
            self.page.screenshot(path=str(path), full_page=True)
        except PlaywrightError as exc:
            return Path(f"(no screenshot: {exc})")
        return path

    def shot(self, name: str, what: str, max_height: int = 6000) -> None:
        extra = self.page.evaluate(CONTENT_HEIGHT)
        if extra > 0:
            self.page.set_viewport_size({"width": VIEWPORT["width"], "height": min(VIEWPORT["height"] + extra, max_height)})
            self.page.wait_for_timeout(1000)
        path = self.out / name
        self.page.screenshot(path=str(path), full_page=True)
        self.page.set_viewport_size(VIEWPORT)
        self.written.append((path, what))


def take_screenshots(base: str, store: str, out: Path, experiment: str, model: str) -> list[tuple[Path, str]]:
    from mlflow import MlflowClient
    from mlflow.exceptions import MlflowException
    from playwright.sync_api import Error as PlaywrightError
    from playwright.sync_api import sync_playwright

    client = MlflowClient(base)
    exp = client.get_experiment_by_name(experiment)
    if exp is None:
        sys.exit(f"error: {store} has no experiment {experiment!r}")
    runs = client.search_runs([exp.experiment_id], filter_string="attributes.status = 'FINISHED'",
                              order_by=[f"metrics.`{METRIC}` DESC"], max_results=50)
    runs = [r for r in runs if METRIC in r.data.metrics]
    if len(runs) < 2:
        sys.exit(f"error: experiment {experiment!r} has {len(runs)} finished run(s) with {METRIC}; need 2")
    best, other = runs[0], runs[1]
    versions = client.search_model_versions(f"name = '{model}'")
    try:
        champion = client.get_model_version_by_alias(model, "champion")
    except MlflowException:  # no such model or alias
        champion = None
    version = champion or (max(versions, key=lambda v: int(v.version)) if versions else None)

    out.mkdir(parents=True, exist_ok=True)
    eid = exp.experiment_id
    runs_route = (f"/experiments/{eid}/runs?workflowType=machine_learning&orderByKey="
                  + urllib.parse.quote(f"metrics.`{METRIC}`") + "&orderByAsc=false")
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox", "--disable-dev-shm-usage"])
        page = browser.new_page(viewport=VIEWPORT)
        page.add_init_script(QUIET_UI)
        s = Shooter(page, base, out)
        try:

            # (a) run list: Model training view, sorted by macro-F1, with its column added
            s.goto(runs_route, wait_text=best.info.run_name)
            add_column(page, METRIC)
            s.shot("1-runs.png", f"run list of experiment {experiment!r} (Model training view), sorted by {METRIC}, "
                                 f"with the {METRIC} column")
            # (b) chart view, charts filtered to macro_f1
            s.goto(runs_route + "&compareRunsMode=CHART", wait_text=best.info.run_name)
            search = page.get_by_placeholder("Search metric charts")
            search.fill("macro_f1")
            page.wait_for_timeout(1500)
            s.shot("2-charts.png", "chart view searched for macro_f1: one bar chart per macro-F1 metric, a bar per run")
            # (c) compare page of the two runs
            ids = urllib.parse.quote(str([best.info.run_id, other.info.run_id]).replace("'", '"'))
            s.goto(f"/compare-runs?runs={ids}&experiments=" + urllib.parse.quote(f'["{eid}"]'),
                   wait_text=other.info.run_name)
            diff_only = page.get_by_text("Show diff only", exact=True)
            if diff_only.count():
                diff_only.first.click()  # parameters: only those that differ (name, train_sources, ...)
            artifacts = page.get_by_text("Artifacts", exact=True)
            if artifacts.count():
                artifacts.last.click()  # collapsed: an empty file browser as high as the page otherwise
            page.wait_for_timeout(1000)
            s.shot("3-compare.png", f"compare page of {best.info.run_name} and {other.info.run_name}: "
                                    "params, metrics and tags side by side")
            # (d) a run's overview with its description
            s.goto(f"/experiments/{eid}/runs/{best.info.run_id}", wait_text="Description")
            more = page.get_by_text("Show more", exact=True)
            if more.count():
                more.first.click()  # the whole summary table, not its first lines
            s.shot("4-run.png", f"overview of run {best.info.run_name}: description (summary table), "
                                "metrics, dataset inputs, registered model")
            # (e) registered model with versions, tags and the champion alias
            if version is not None:
                s.goto(f"/models/{urllib.parse.quote(model)}", wait_text="Version " + str(version.version))
                s.shot("5-model.png", f"registered model {model!r}: versions with tags config, family, macro_f1, "
                                      "macro_f1_interval, fingerprint and the champion alias")
                # (f) one version's page with its description
                s.goto(f"/models/{urllib.parse.quote(model)}/versions/{version.version}",
                       wait_text=f"Version {version.version}")
                s.shot("6-version.png", f"version {version.version} of {model!r}"
                                        + (" (the champion)" if champion else "")
                                        + ": its description, tags and source run")
            else:
                print(f"note: no registered model {model!r}: registry screenshots skipped", file=sys.stderr)
        except PlaywrightError as exc:  # timeouts included: say where the UI was when it happened
            sys.exit(f"error: {type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}\n"
                     f"the page at {page.url} is in {s.failed()}")
        finally:
            browser.close()
    return s.written


def add_column(page, metric: str) -> None:
    """Columns menu -> search the metric -> tick it (the run table shows only what is picked)."""
    page.get_by_role("button", name="Columns").click()
    page.get_by_placeholder("Search columns").fill(metric)
    page.get_by_text(metric, exact=True).first.click()
    page.keyboard.press("Escape")
    header = page.get_by_role("columnheader", name=metric).first
    header.wait_for(state="visible", timeout=10_000)
    box = header.bounding_box()  # widen it by dragging its right edge: full values, not "0.78920822..."
    if box:
        x, y = box["x"] + box["width"] - 2, box["y"] + box["height"] / 2
        page.mouse.move(x, y)
        page.mouse.down()
        page.mouse.move(x + 80, y, steps=8)
        page.mouse.up()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python tools/mlflow_screenshots.py", description=__doc__.splitlines()[0])
    parser.add_argument("--store", help="tracking store to show, e.g. sqlite:///mlflow.db "
                                        "(default: a fresh temporary sqlite store, filled by training --configs)")
    parser.add_argument("--configs", nargs="+", default=DEFAULT_CONFIGS,
                        help="configs trained (one run each) into the fresh store (default: %(default)s)")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "screenshots",
                        help="folder for the PNG files (default: benchmarks/results/screenshots)")
    parser.add_argument("--experiment", default="sentence-classifier")
    parser.add_argument("--model", default="sentence-classifier", help="registered model name")
    parser.add_argument("--port", type=int, default=0, help="server port (default: a free one)")
    parser.add_argument("--keep", action="store_true", help="keep the temporary store (its path is printed)")
    args = parser.parse_args(argv)
    if not Path(CHROMIUM).exists():
        print(f"error: {CHROMIUM} missing: apt-get install -y chromium", file=sys.stderr)
        return 2
    try:
        import playwright  # noqa: F401
    except ImportError:
        print("error: pip install playwright (no `playwright install`: the system chromium is used)", file=sys.stderr)
        return 2

    tmp = Path(tempfile.mkdtemp(prefix="mlflow-shots-"))
    server = None
    try:
        store = absolute_store(args.store) if args.store else fill_store(tmp, args.configs, args.experiment)
        port = args.port or free_port()
        base = f"http://127.0.0.1:{port}"
        log = tmp / "server.log"
        server = start_server(store, port, tmp, log)
        wait_healthy(base, server, log)
        written = take_screenshots(base, store, args.out, args.experiment, args.model)
    finally:
        if server is not None:
            stop_server(server)
        if args.keep:
            print(f"kept: {tmp}")
        else:
            shutil.rmtree(tmp, ignore_errors=True)
    for path, what in written:
        shown = path.relative_to(ROOT) if path.is_relative_to(ROOT) else path
        print(f"{shown}: {what}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
