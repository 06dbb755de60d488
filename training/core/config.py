"""Typed training config: schema, YAML loading, ``key=value`` overrides, validation.

Every section is a pydantic model with ``extra="forbid"`` so an unknown or mistyped key is an
error naming the key. Family-specific model parameters are validated by the family's own
``Params`` model (see :mod:`training.families`), so a new family needs no change here.
Relative paths in a config resolve against the project root (the folder holding ``configs/``).

Configs are layered: ``extends: base.yaml`` (relative to the config's own folder) starts from
another config and applies this file's keys on top (sections merge key by key, lists replace;
a config that names another ``model.family`` starts that family's ``params`` afresh).
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any, Literal, Optional

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from training.core.errors import InputError
from training.core.registry import validate_params

PROJECT_ROOT = Path(__file__).resolve().parents[2]
DEFAULT_CONFIG = PROJECT_ROOT / "configs" / "default.yaml"


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class SourceConfig(_Strict):
    """One corpus source: a folder of .txt articles or a table with one article per row."""

    name: str
    kind: Literal["folder", "jsonl", "csv", "parquet", "hf_disk"] = "folder"
    path: Path
    text_column: str = "text"
    id_column: Optional[str] = None
    optional: bool = False  # a missing optional source is skipped with a notice


class GoldConfig(_Strict):
    """One gold file; ``optional`` gold (e.g. on ../shared/corpus) is skipped if its source is absent."""

    path: Path
    optional: bool = False


class LabellingConfig(_Strict):
    rules: Path = Path("configs/rules/default.yaml")
    combiner: Literal["majority", "label_model"] = "majority"
    label_model_epochs: int = Field(500, ge=1)
    use_reviewed: bool = False  # reviewed labels override rule labels in training (never in evaluation)
    reviewed: list[Path] = Field(default_factory=lambda: [Path("data/review/reviewed.jsonl")])  # later files win
    min_rule_precision: float = Field(0.6, ge=0, le=1)


class ModelConfig(_Strict):
    family: str = "tfidf_logreg"
    params: dict[str, Any] = Field(default_factory=dict)


class EvaluationConfig(_Strict):
    folds: int = Field(5, ge=2)
    plan: Optional[Path] = None  # frozen fold of each gold page (training.plan); None: folds from a hash of page ids
    bootstrap: int = Field(1000, ge=0)  # resamples of whole pages for macro-F1's 95% interval (0 = none)
    baseline: bool = True  # also score the same family trained on gold labels alone
    find_label_issues: bool = True
    store: Path = Path("data/cache/out_of_fold")  # where a run keeps its out-of-fold predictions (review reads them)
    calibration: Literal["none", "temperature"] = "temperature"  # temperature: the exported model's probabilities
    # are tempered by one T fitted on the out-of-fold probabilities (labels unchanged)
    ece_bins: int = Field(15, ge=1, le=1000)  # equal-width confidence bins of the calibration error and diagram


class TrackingConfig(_Strict):
    tracking_uri: Optional[str] = None  # None: $MLFLOW_TRACKING_URI, else sqlite:///mlflow.db
    experiment: str = "sentence-classifier"
    registered_model: Optional[str] = "sentence-classifier"
    promote_champion: bool = True  # move the `champion` alias if this run beats it


class Config(_Strict):
    name: str = "default"
    seed: int = Field(13, ge=0, le=2**32 - 1)  # numpy and torch take seeds in this range
    sources: list[SourceConfig] = Field(min_length=1)
    train_sources: Optional[list[str]] = None  # names of the sources that train the model; None: all of them
    gold: list[GoldConfig] = Field(default_factory=list)
    labelling: LabellingConfig = LabellingConfig()
    model: ModelConfig = ModelConfig()
    evaluation: EvaluationConfig = EvaluationConfig()
    tracking: TrackingConfig = TrackingConfig()
    output_dir: Path = Path("models")

    @field_validator("name")
    @classmethod
    def _safe_name(cls, value: str) -> str:
        if not value or any(c in value for c in "/\\ ") or value.startswith("."):
            raise ValueError("must be a plain folder name (no spaces or slashes)")
        return value

    def resolve(self, path: Path) -> Path:
        """A config path made absolute against the project root."""
        return path if path.is_absolute() else PROJECT_ROOT / path

    def flat(self) -> dict[str, Any]:
        """The config flattened to dotted keys (lists by index: ``sources.0.path``)."""
        return flatten(self.model_dump(mode="json"))

    def params(self) -> dict[str, str]:
        """MLflow params: sections flattened to dotted keys, lists kept whole as one JSON value
        (``sources``, ``gold``), so no param name carries a list index."""
        import json

        return {key: json.dumps(value) if isinstance(value, (list, dict)) else value
                for key, value in flatten(self.model_dump(mode="json"), lists=False).items()}


def flatten(tree: Any, prefix: str = "", lists: bool = True) -> dict[str, Any]:
    """Nested dicts/lists → {"a.b.0.c": value}; with ``lists=False`` a list is one value."""
    if isinstance(tree, dict):
        items = tree.items()
    elif isinstance(tree, list) and lists:
        items = ((str(i), v) for i, v in enumerate(tree))
    else:
        return {prefix: tree}
    out: dict[str, Any] = {}
    for key, value in items:
        out.update(flatten(value, f"{prefix}.{key}" if prefix else str(key), lists))
    if not out and prefix:
        out[prefix] = tree
    return out


def read_yaml(path: Path) -> Any:
    """Parse a YAML file; syntax errors name the file and line."""
    if not path.is_file():
        raise InputError(f"{path}: file not found")
    try:
        with path.open(encoding="utf-8") as handle:
            return yaml.safe_load(handle)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark
        where = f"line {mark.line + 1}" if mark else "?"
        raise InputError(f"{path}: {where}: {exc.problem}") from None
    except UnicodeDecodeError:
        raise InputError(f"{path}: not UTF-8 text") from None


def apply_override(tree: dict, assignment: str) -> None:
    """Apply ``a.b.c=value`` (value parsed as YAML) to a nested dict in place."""
    if "=" not in assignment:
        raise InputError(f"override '{assignment}': expected key=value")
    key, raw = assignment.split("=", 1)
    parts = key.strip().split(".")
    if not all(parts):
        raise InputError(f"override '{assignment}': empty key segment")
    node = tree
    for depth, part in enumerate(parts):
        last = depth == len(parts) - 1
        if isinstance(node, list):  # sources.0.path=...: a list item by its index
            if not part.isdigit() or int(part) >= len(node):
                raise InputError(f"override '{assignment}': '{'.'.join(parts[:depth])}' has no item {part} "
                                 f"(items 0..{len(node) - 1})")
            key = int(part)
        elif isinstance(node, dict):
            key = part
        else:
            raise InputError(f"override '{assignment}': '{'.'.join(parts[:depth])}' is not a section")
        if last:
            try:
                node[key] = yaml.safe_load(raw)
            except yaml.YAMLError:
                node[key] = raw
            return
        child = node[key] if isinstance(node, list) else node.get(key)
        if child is None:
            child = node[key] = {}
        node = child


def _describe(error: ValidationError, path: Path, overrides: list[str] | None = None, prefix: str = "") -> str:
    """One line naming the key at fault, and the override that set it when one did (else the file)."""
    first = error.errors()[0]
    key = prefix + (".".join(str(p) for p in first["loc"]) or "(top level)")
    message = first["msg"]
    if first["type"] == "extra_forbidden":
        message = "unknown key"
    more = f" (and {error.error_count() - 1} more)" if error.error_count() > 1 else ""
    for assignment in reversed(overrides or []):
        assigned = assignment.split("=", 1)[0].strip()
        if key == assigned or key.startswith(assigned + ".") or assigned.startswith(key + "."):
            return f"override '{assignment}': key '{key}': {message}{more}"
    return f"{path}: key '{key}': {message}{more}"


def merge(base: dict, delta: dict) -> dict:
    """``delta`` applied on ``base``: mappings merge key by key, anything else replaces."""
    out = copy.deepcopy(base)
    for key, value in delta.items():
        if key == "model" and isinstance(value, dict) and isinstance(out.get(key), dict) \
                and "family" in value and value["family"] != out[key].get("family"):
            out[key] = {"params": {}, **copy.deepcopy(value)}  # another family: its own params only
        elif isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def read_layered(path: Path, _seen: tuple[Path, ...] = ()) -> dict:
    """A config file's keys with its ``extends`` chain resolved (base first)."""
    raw = read_yaml(path)
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise InputError(f"{path}: expected a mapping of keys at the top level")
    parent = raw.pop("extends", None)
    if parent is None:
        return raw
    if not isinstance(parent, str):
        raise InputError(f"{path}: key 'extends': expected a config file name")
    base_path = (path.parent / parent).resolve()
    if base_path in _seen:
        raise InputError(f"{path}: key 'extends': '{parent}' extends itself (a cycle)")
    inherited = read_layered(base_path, (*_seen, path.resolve()))
    inherited.pop("name", None)  # a config's name is its own (default: its file name)
    return merge(inherited, raw)


def load_config(path: Path | str | None = None, overrides: list[str] | None = None) -> Config:
    """Load, override and validate a config file; any problem is one :class:`InputError` line."""
    path = Path(path) if path else DEFAULT_CONFIG
    raw = read_layered(path)
    raw.setdefault("name", path.stem)
    for assignment in overrides or []:
        apply_override(raw, assignment)
    try:
        config = Config.model_validate(raw)
    except ValidationError as exc:
        raise InputError(_describe(exc, path, overrides)) from None
    try:
        params = validate_params(config.model.family, config.model.params)
    except ValidationError as exc:
        raise InputError(_describe(exc, path, overrides, prefix="model.params.")) from None
    except KeyError as exc:
        raise InputError(f"{path}: key 'model.family': {exc.args[0]}") from None
    names = [source.name for source in config.sources]
    for name in config.train_sources or []:
        if name not in names:
            raise InputError(f"{path}: key 'train_sources': no source named '{name}' (sources: {', '.join(names)})")
    # store every family parameter, defaults included, so all runs log the same param names
    model = config.model.model_copy(update={"params": params.model_dump(mode="json")})
    return config.model_copy(update={"model": model})
