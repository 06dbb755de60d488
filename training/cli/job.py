"""One training job: label, cross-validate under the plan, fit on everything, log one MLflow run, export."""

from __future__ import annotations

import itertools
import json
import logging
import tempfile
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

import numpy as np
import yaml
from sklearn.base import clone

from training.core.config import Config
from training.core.console import stop_if_terminated
from training.core.seeding import seed_everything
from training.core.errors import InputError
from training.core.targets import check_writable_folder
from training.data.records import take
from training.evaluation.calibration import plot_reliability
from training.evaluation.cv import Evaluation, evaluate, flat_metrics, plot_confusion, trainable_rows
from training.evaluation.suspects import label_issues
from training.labelling.stage import Labelled, build, to_dataset
from training.models.families import new_model
from training.serving.pyfunc import SentenceClassifierModel
from training.tracking import export, track

log = logging.getLogger("training")


@dataclass
class TrainResult:
    config: Config
    run_id: str
    model_dir: Path
    metrics: dict  # "model", "baseline", "rules_majority", "rules_label_model" → classification metrics
    seconds: float
    train_seconds: float
    champion: str = ""
    registered_version: str | None = None
    fingerprint: str = ""
    baseline_note: str = ""
    extra: dict = field(default_factory=dict)

    @property
    def macro_f1(self) -> float:
        return self.metrics["model"]["macro_f1"]


def with_tracking(estimator):
    """The estimator with the run's logger for what it reports while it trains: the fine-tuned family's epoch
    losses become one ``finetune.epoch_loss`` curve per run, which every fit (the folds, then the final
    model) continues (step = fit index * epochs + epoch)."""
    if "on_epoch_loss" not in estimator.get_params():
        return estimator
    steps = itertools.count()  # shared by the clones the folds fit: a function parameter is not copied
    return estimator.set_params(on_epoch_loss=lambda loss: track.log_metrics({"finetune.epoch_loss": loss},
                                                                              step=next(steps)))


def run_metrics(metrics: dict, labelled: Labelled, evaluation: Evaluation, train_seconds: float) -> dict[str, float]:
    """The run's metrics (at most 42): the model in detail, the baseline and the rule combiners in brief, the
    out-of-fold calibration error (before, and after cross-fitted temperature scaling when it is applied)."""
    flat = flat_metrics(metrics["model"], "model")
    if "baseline" in metrics:
        flat["baseline.macro_f1"] = metrics["baseline"]["macro_f1"]
    calibration = metrics["calibration"]
    flat["cv_ece"] = calibration["ece"]
    if calibration["method"] != "none":
        flat["cv_ece_calibrated"] = calibration["ece_calibrated"]  # NaN (not logged) with a single fold
    for key in ("rules_majority", "rules_label_model"):
        flat.update(flat_metrics(metrics[key], key, detail=False))
    return {**flat, "time.cv_seconds": evaluation.cv.seconds, "time.fit_seconds": train_seconds,
            "data.sentences": len(labelled.sentences), "data.gold": len(labelled.gold),
            "data.reviewed": len(labelled.reviewed)}


def _log_artifacts(config: Config, labelled: Labelled, evaluation: Evaluation, workdir: Path) -> None:
    from training.labelling.diagnostics import format_report

    metrics = evaluation.metrics
    for key, title in (("model", f"{config.name} ({config.model.family})"),
                       ("rules_majority", "rules, majority vote"), ("rules_label_model", "rules, label model")):
        track.log_file(plot_confusion(metrics[key], workdir / f"confusion_{key}.png", title), "plots")
    if evaluation.calibration is not None:
        track.log_file(plot_reliability(evaluation.calibration, workdir / "reliability.png",
                                        f"{config.name} ({config.model.family}), out of fold"), "plots")
    track.log_table(labelled.report, "rule_report")
    (workdir / "rule_report.txt").write_text(format_report(labelled.report), encoding="utf-8")
    track.log_file(workdir / "rule_report.txt", "tables")
    track.log_table(evaluation.misclassified or [{"id": "", "text": "", "gold": "", "predicted": ""}],
                    "misclassified_gold")
    (workdir / "metrics.json").write_text(json.dumps({**metrics, "fingerprint": evaluation.fingerprint,
                                                      "plan": evaluation.plan, "baseline": {
                                                          **metrics.get("baseline", {}),
                                                          "how": evaluation.baseline_note}}, indent=2),
                                          encoding="utf-8")
    track.log_file(workdir / "metrics.json")
    (workdir / "config.yaml").write_text(yaml.safe_dump(config.model_dump(mode="json"), sort_keys=False),
                                         encoding="utf-8")
    track.log_file(workdir / "config.yaml")
    label_model = labelled.combiners["label_model"].model
    if label_model is not None:  # Snorkel's LabelModel, fitted on this run's rule votes
        label_model.save(str(workdir / "label_model.pkl"))
        track.log_file(workdir / "label_model.pkl", "label_model")


@contextmanager
def _explained_fit_errors(config: Config) -> Iterator[None]:
    """scikit-learn's complaints about a parameter the data cannot satisfy, as one line naming the key."""
    try:
        yield
    except ValueError as exc:
        text = " ".join(str(exc).split())
        if "min_df" in text or "no terms remain" in text:
            raise InputError(f"config '{config.name}': key 'model.params.min_df' "
                             f"({config.model.params.get('min_df')}) is too large for this data: {text}") from None
        raise


def check_targets(config: Config) -> None:
    """Before any labelling or training work: where the run writes takes writes, and the plan fits the folds.

    Each of these would otherwise fail only when it is reached, after minutes of labelling and cross-validation.
    The MLflow store and its artifact folder are checked by :func:`track.configure`, called next.
    """
    from training.evaluation.plan import load_plan

    export.check_target(config.resolve(config.output_dir) / config.name)
    check_writable_folder(config.resolve(config.evaluation.store), "evaluation.store")
    if config.evaluation.plan is not None:
        load_plan(config.resolve(config.evaluation.plan), config.evaluation.folds)
    reference = config.model.params.get("encoder")
    if isinstance(reference, str):  # an encoder that cannot be found (or installed) is one line now, not later
        from training.models.encoder_sources import resolve

        resolve(reference)


def train_one(config: Config, nested: bool = False, promote: bool = True) -> TrainResult:
    """Label, cross-validate, fit on everything, log one MLflow run and export the model."""
    started = time.perf_counter()
    seed_everything(config.seed)
    check_targets(config)
    track.configure(config)
    labelled = build(config)
    if len(labelled.gold) == 0:
        raise InputError(f"config '{config.name}': no gold labels; evaluation needs at least one gold file")
    from training.labelling.diagnostics import warnings_for

    rule_warnings = warnings_for(labelled.report, config.labelling.min_rule_precision)
    if rule_warnings:
        log.warning("%d rule warning(s) (low precision on gold or never firing): see the rule report "
                    "(python -m training.label, or the run's tables/rule_report)", len(rule_warnings))
    trainable = trainable_rows(config, labelled)
    dest = config.resolve(config.output_dir) / config.name
    staging = export.stage(dest)
    version = None
    try:
        with track.start_run(config, nested=nested) as run, tempfile.TemporaryDirectory() as tmp:
            track.log_params(config)
            dataset = to_dataset(labelled)
            track.log_datasets(dataset, config)
            log.info("%d sentences, %d gold; cross-validating %s", len(labelled.sentences), len(labelled.gold),
                     config.model.family)
            with _explained_fit_errors(config):
                estimator = with_tracking(new_model(config.model.family, config.model.params, labelled.labels,
                                                    config.seed))
                evaluation = evaluate(config, labelled, estimator, progress=log.info)
                metrics = evaluation.metrics
                stop_if_terminated()
                log.info("fitting the final model on all %d sentences", int(trainable.sum()))
                fit_started = time.perf_counter()
                model = clone(estimator)
                model.fit(take(labelled.records, np.flatnonzero(trainable)),
                          [label for label, keep in zip(labelled.train_labels, trainable) if keep])
            train_seconds = time.perf_counter() - fit_started
            track.set_tags({"eval.fingerprint": evaluation.fingerprint, "eval.plan": evaluation.plan})
            track.log_metrics(run_metrics(metrics, labelled, evaluation, train_seconds))
            _log_artifacts(config, labelled, evaluation, Path(tmp))
            if config.evaluation.find_label_issues:
                log.info("searching for suspect training labels (cleanlab, on the out-of-fold predictions)")
                suspects = label_issues(labelled, evaluation.cv, trainable)
                track.log_table(suspects or [{"id": "", "text": "", "label": "", "suggested": "", "score": 0.0}],
                                "suspect_labels")
                track.log_metrics({"data.suspect_labels": len(suspects)})
            stop_if_terminated()
            export.write(staging, model, config.model.family, labelled.labels, config.model_dump(mode="json"),
                         metrics, temperature=metrics["calibration"]["temperature"],
                         extra={"mlflow_run_id": run.info.run_id, "git_commit": track.git_commit(),
                                "train_seconds": train_seconds})
            log.info("logging the model to MLflow%s", " and registering it" if config.tracking.registered_model else "")
            first_page = labelled.records["article_id"] == labelled.records["article_id"].iloc[0]
            info = track.log_model(staging, config, labelled.records[first_page].head(5), SentenceClassifierModel())
            version = getattr(info, "registered_model_version", None)
            champion = ""
            if config.tracking.registered_model and version is not None:
                track.tag_version(config, str(version), metrics["model"], evaluation.fingerprint)
                if promote and config.tracking.promote_champion:
                    _, champion = track.promote_if_better(config.tracking.registered_model, str(version),
                                                          metrics["model"], evaluation.fingerprint)
                else:
                    champion = "champion alias not considered (promotion turned off)"
            track.log_metrics({"time.total_seconds": time.perf_counter() - started})
            run_id = run.info.run_id
            result = TrainResult(config, run_id, dest, metrics, time.perf_counter() - started, train_seconds,
                                 champion, str(version) if version is not None else None, evaluation.fingerprint,
                                 evaluation.baseline_note)
            track.describe(run_id, summary(result), config, result.registered_version, metrics["model"],
                           evaluation.fingerprint, champion)
            stop_if_terminated()
        export.commit(staging, dest)
    except BaseException as exc:
        export.discard(staging)
        if isinstance(exc, KeyboardInterrupt):
            kept = f"{dest} was not replaced" + (" (the previous model is intact)" if dest.exists() else "")
            exc.add_note(kept if version is None else
                         f"{kept}; registry version {version} of '{config.tracking.registered_model}' was created")
        raise
    result.seconds = time.perf_counter() - started
    return result


def summary(result: TrainResult) -> str:
    m = result.metrics
    columns = [("model", "model"), ("gold only", "baseline"), ("rules(maj)", "rules_majority"),
               ("rules(LM)", "rules_label_model")]
    columns = [(title, key) for title, key in columns if key in m]
    model = m["model"]
    lines = [f"config {result.config.name} ({result.config.model.family}) — grouped {model['folds']}-fold CV "
             f"on {sum(v['support'] for v in model['per_class'].values())} gold sentences, "
             f"plan {result.fingerprint}",
             f"{'':22}" + "".join(f" {title:>10}" for title, _ in columns),
             f"{'macro-F1':22}" + "".join(f" {m[key]['macro_f1']:10.3f}" for _, key in columns)]
    for label in model["per_class"]:
        lines.append(f"{'F1 ' + label:22}" + "".join(f" {m[key]['per_class'][label]['f1']:10.3f}"
                                                      for _, key in columns))
    if np.isfinite(model.get("macro_f1_ci_low", np.nan)):
        lines.append(f"model macro-F1 95% interval (pages resampled) {model['macro_f1_ci_low']:.3f}–"
                     f"{model['macro_f1_ci_high']:.3f}; folds {model['macro_f1_fold_mean']:.3f} "
                     f"± {model['macro_f1_fold_std']:.3f}")
    calibration = m.get("calibration")
    if calibration:
        line = (f"model calibration error (top-label ECE, {calibration['bins']} bins, out of fold) "
                f"{calibration['ece']:.3f}")
        if calibration["method"] == "temperature":
            after = calibration["ece_calibrated"]
            line += (f"; with temperature {calibration['temperature']:.2f} (applied by the exported model) "
                     + (f"{after:.3f}, cross-fitted over the folds" if np.isfinite(after)
                        else "(one fold: not measured)"))
        lines.append(line)
    if result.baseline_note:
        lines.append(f"gold only: {result.baseline_note}")
    lines += [f"model:   {result.model_dir}", f"run id:  {result.run_id}",
              f"time:    {result.seconds:.1f} s (final fit {result.train_seconds:.1f} s)"]
    if result.champion:
        lines.append(f"registry: {result.champion}")
    lines.append(f"MLflow UI: mlflow ui --backend-store-uri {track.tracking_uri(result.config)}")
    return "\n".join(lines)
