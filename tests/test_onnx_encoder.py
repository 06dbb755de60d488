"""The encoder backends: ONNX Runtime fp32 and int8 against PyTorch, self-contained model folders, clear errors.

One export per module into a temporary cache (``TRAINING_ONNX_CACHE``), so the user's cache is untouched.
"""

from __future__ import annotations

import shutil
import sys

import numpy as np
import pytest

from training.models import encoder
from training.core.config import PROJECT_ROOT, load_config
from training.data.corpus import read_folder
from training.core.errors import InputError
from training.tracking.export import write
from training.models.families import new_model

from conftest import SAMPLE_TEXTS, write_config

LABELS = ["diplomatic_contact", "deployment", "drill", "boilerplate", "other"]
TEXTS = SAMPLE_TEXTS
TRAIN_LABELS = ["diplomatic_contact", "boilerplate", "deployment", "drill", "other", "diplomatic_contact"]


@pytest.fixture(scope="module")
def onnx_cache(tmp_path_factory):
    """A fresh export cache for this module, with both graphs exported once."""
    root = tmp_path_factory.mktemp("onnx-cache")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("TRAINING_ONNX_CACHE", str(root))
        encoder.onnx_bundle(encoder.PACKAGED, "onnx-int8")  # exports fp32, then quantises
        yield root


@pytest.fixture(scope="module")
def seed_sentences():
    """~50 real sentences from the seed pages, short and long."""
    texts = [s.text for s in read_folder(PROJECT_ROOT / "seeds")]
    step = max(1, len(texts) // 50)
    return texts[::step][:50]


def _cosines(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return (a * b).sum(1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))


def test_onnx_fp32_matches_torch(onnx_cache, seed_sentences, record_property):
    reference = encoder.embed(seed_sentences, use_cache=False)
    onnx = encoder.embed(seed_sentences, backend="onnx", use_cache=False)
    cosines = _cosines(reference, onnx)
    record_property("onnx_fp32_cosine_min", float(cosines.min()))
    print(f"onnx fp32 vs torch on {len(seed_sentences)} sentences: cosine min {cosines.min():.6f}")
    assert len(seed_sentences) >= 40 and onnx.shape == reference.shape == (len(seed_sentences), 384)
    assert cosines.min() >= 0.99
    assert np.allclose(np.linalg.norm(onnx, axis=1), 1, atol=1e-4)  # same pooling and normalisation


def test_onnx_int8_close_to_torch(onnx_cache, seed_sentences, record_property):
    reference = encoder.embed(seed_sentences, use_cache=False)
    int8 = encoder.embed(seed_sentences, backend="onnx-int8", use_cache=False)
    cosines = _cosines(reference, int8)
    record_property("onnx_int8_cosine_min", float(cosines.min()))
    record_property("onnx_int8_cosine_mean", float(cosines.mean()))
    print(f"onnx int8 vs torch on {len(seed_sentences)} sentences: cosine min {cosines.min():.4f}, "
          f"mean {cosines.mean():.4f}")
    assert cosines.mean() >= 0.97 and cosines.min() >= 0.90
    assert not np.allclose(int8, reference, atol=1e-4)  # it really is the quantised graph


def test_inner_layers_pooled_in_the_graph_as_in_torch(onnx_cache, seed_sentences):
    last = encoder.embed(seed_sentences, use_cache=False)
    inner = encoder.embed(seed_sentences, use_cache=False, layers="inner")
    onnx_inner = encoder.embed(seed_sentences, backend="onnx", use_cache=False, layers="inner")
    assert inner.shape == last.shape and _cosines(inner, last).mean() < 0.9  # another view of the sentence
    assert _cosines(inner, onnx_inner).min() >= 0.99
    assert np.allclose(np.linalg.norm(onnx_inner, axis=1), 1, atol=1e-4)


def test_a_graph_without_inner_layers_is_one_clear_error(onnx_cache, tmp_path):
    import onnx

    folder = encoder.copy_bundle(encoder.PACKAGED, "onnx", tmp_path / "old-bundle")
    graph = onnx.load(str(folder / "model.onnx"))  # as exported before inner layers existed: one output
    kept = [output for output in graph.graph.output if output.name == "sentence_embedding"]
    del graph.graph.output[:]
    graph.graph.output.extend(kept)
    onnx.save(graph, str(folder / "model.onnx"))
    assert encoder.embed(TEXTS, backend="onnx", bundle=folder, use_cache=False).shape == (len(TEXTS), 384)
    with pytest.raises(InputError, match="no 'inner_embedding' output"):
        encoder.embed(TEXTS, backend="onnx", bundle=folder, use_cache=False, layers="inner")


def test_batches_cache_and_backend_keys(onnx_cache):
    texts = sorted(TEXTS, key=len, reverse=True)[:2] + TEXTS
    batched = encoder.embed(texts, max_length=64, batch_size=3, backend="onnx", use_cache=False)
    one_by_one = np.vstack([encoder.embed([t], max_length=64, batch_size=1, backend="onnx", use_cache=False)
                            for t in texts])
    assert np.allclose(batched, one_by_one, atol=1e-5)
    encoder.clear_cache()
    rows = {backend: encoder.embed(TEXTS, backend=backend) for backend in encoder.BACKENDS}
    # the same text under another backend is another cache entry, not the first backend's row
    assert not np.array_equal(rows["onnx-int8"], rows["torch"])
    assert np.array_equal(encoder.embed(TEXTS, backend="onnx-int8"), rows["onnx-int8"])
    assert {key[0][0] for key in encoder._cache if isinstance(key[0], tuple)} == {"onnx", "onnx-int8"}


@pytest.mark.slow
@pytest.mark.parametrize("backend", ["onnx", "onnx-int8"])
def test_a_texts_vector_does_not_depend_on_its_batch_or_the_cache(onnx_cache, seed_sentences, backend):
    """The int8 graph scales each batch by its own range (a text beside others was up to 0.02 off), the fp32
    graph split its sums by batch shape (4e-8): each text must get one vector, whatever is encoded with it."""
    target = seed_sentences[7]
    alone = encoder.embed([target], backend=backend, use_cache=False)[0]
    for size in (3, 16, 32):
        together = encoder.embed(seed_sentences[20:20 + size - 1] + [target], batch_size=size, backend=backend,
                                 use_cache=False)
        assert np.array_equal(together[-1], alone), size
    encoder.clear_cache()
    encoder.embed(seed_sentences[:20], backend=backend)
    assert np.array_equal(encoder.embed(seed_sentences[10:40], backend=backend),
                          encoder.embed(seed_sentences[10:40], backend=backend, use_cache=False))


def test_the_disk_store_serves_each_graphs_vectors_bit_for_bit(onnx_cache, seed_sentences, tmp_path, monkeypatch):
    monkeypatch.setenv("TRAINING_EMBEDDING_CACHE", str(tmp_path / "store"))
    encoder.clear_cache()
    onnx = ("onnx", "onnx-int8")
    fresh = {backend: encoder.embed(seed_sentences, backend=backend, use_cache=False) for backend in onnx}
    for backend in onnx:
        encoder.embed(seed_sentences, backend=backend)  # encoded and stored
    copy = encoder.copy_bundle(encoder.PACKAGED, "onnx-int8", tmp_path / "model" / encoder.MODEL_BUNDLE)
    encoder.clear_cache()

    def refuse(*args, **kwargs):
        raise AssertionError("encoded")

    monkeypatch.setattr(encoder, "_encode", refuse)
    for backend in onnx:
        assert np.array_equal(encoder.embed(seed_sentences, backend=backend), fresh[backend])
    # a model folder's copy of the graph reads the rows its original stored; torch has rows of its own
    assert np.array_equal(encoder.embed(seed_sentences, backend="onnx-int8", bundle=copy), fresh["onnx-int8"])
    with pytest.raises(AssertionError, match="encoded"):
        encoder.embed(seed_sentences)
    encoder.clear_cache()


def test_export_is_reused_and_leaves_no_partial_files(onnx_cache, monkeypatch):
    def no_export(*args, **kwargs):
        raise AssertionError("exported again")

    monkeypatch.setattr(encoder, "_export_fp32", no_export)
    monkeypatch.setattr(encoder, "_quantize", no_export)
    folder = encoder.onnx_bundle(encoder.PACKAGED, "onnx-int8")
    assert folder.parent == onnx_cache
    assert sorted(p.name for p in onnx_cache.iterdir()) == [folder.name]  # no staging folder left
    assert {"model.onnx", "model-int8.onnx", "tokenizer.json"} <= {p.name for p in folder.iterdir()}
    assert not [p for p in folder.iterdir() if p.name.startswith(".")]


def _export(model, family: str, params: dict, dest):
    dest.mkdir(parents=True)
    config = {"model": {"family": family, "params": params}, "seed": 0}
    return write(dest, model, family, LABELS, config, {})


def _forbid_export(monkeypatch, tmp_path):
    """From here on, embedding may use only a model folder's own graph: an empty cache that cannot be filled."""
    def no_export(*args, **kwargs):
        raise AssertionError("the model folder's own graph was not used")

    monkeypatch.setenv("TRAINING_ONNX_CACHE", str(tmp_path / "empty-cache"))
    monkeypatch.setattr(encoder, "_export_fp32", no_export)
    monkeypatch.setattr(encoder, "_quantize", no_export)
    encoder.clear_cache()


def test_head_int8_model_folder_is_self_contained(onnx_cache, tmp_path, monkeypatch):
    from training.serving.predict import load

    params = {"max_length": 64, "backend": "onnx-int8"}
    model = new_model("minilm_head", params, LABELS, seed=0).fit(TEXTS * 2, TRAIN_LABELS * 2)
    in_memory = model.predict_proba(TEXTS)
    folder = _export(model, "minilm_head", params, tmp_path / "models" / "head")
    assert (folder / "encoder-onnx" / "model-int8.onnx").is_file()
    assert not (folder / "encoder-onnx" / "model.onnx").exists()  # only the graph the model runs
    loaded = load(folder)
    assert np.array_equal(loaded.model.predict_proba(TEXTS), in_memory)
    before = loaded.proba_matrix(TEXTS)

    moved = tmp_path / "elsewhere" / "head"
    moved.parent.mkdir()
    shutil.move(str(folder), str(moved))
    _forbid_export(monkeypatch, tmp_path)
    clf = load(moved)
    assert clf.model.bundle_ == moved / "encoder-onnx"
    after = clf.proba_matrix(TEXTS)
    assert np.array_equal(after, before)
    assert [row["label"] for row in clf.classify_article(" ".join(TEXTS))]  # whole pages work too


def test_hybrid_onnx_model_folder_is_self_contained(onnx_cache, tmp_path, monkeypatch):
    from training.tracking.export import load_family_model

    params = {"max_length": 32, "min_df": 1, "backend": "onnx"}
    model = new_model("minilm_hybrid", params, LABELS, seed=0).fit(TEXTS * 2, TRAIN_LABELS * 2)
    before = model.predict_proba(TEXTS)
    folder = _export(model, "minilm_hybrid", params, tmp_path / "hybrid")
    assert (folder / "encoder-onnx" / "model.onnx").is_file()
    moved = tmp_path / "moved-hybrid"
    shutil.move(str(folder), str(moved))
    _forbid_export(monkeypatch, tmp_path)
    loaded, manifest = load_family_model(moved)
    assert manifest["params"]["backend"] == "onnx"
    assert np.array_equal(loaded.predict_proba(TEXTS), before)


def test_unknown_backend_is_one_input_error(tmp_path):
    path = write_config(tmp_path, "head", model={"family": "minilm_head", "params": {}})
    with pytest.raises(InputError, match=r"key 'model\.params\.backend': unknown encoder backend 'tensorrt' "
                                         r"\(known: torch, onnx, onnx-int8\)"):
        load_config(path, ["model.params.backend=tensorrt"])
    with pytest.raises(InputError, match=r"model\.params\.backend: unknown encoder backend 'int4'"):
        encoder.embed(["x"], backend="int4")
    assert load_config(path, ["model.params.backend=onnx-int8"]).model.params["backend"] == "onnx-int8"
    assert load_config(path).model.params["backend"] == "torch"


def test_missing_onnxruntime_is_one_input_error(onnx_cache, tmp_path, monkeypatch):
    from training.tracking.export import load_family_model

    params = {"max_length": 64, "backend": "onnx"}
    model = new_model("minilm_head", params, LABELS, seed=0).fit(TEXTS * 2, TRAIN_LABELS * 2)
    folder = _export(model, "minilm_head", params, tmp_path / "head")
    monkeypatch.setitem(sys.modules, "onnxruntime", None)  # import onnxruntime now fails
    message = r"^model\.params\.backend: backend 'onnx' needs onnxruntime, which is not installed"
    path = write_config(tmp_path, "head", model={"family": "minilm_head", "params": {"backend": "onnx"}})
    with pytest.raises(InputError, match=message) as caught:
        load_config(path)
    assert "\n" not in str(caught.value)
    with pytest.raises(InputError, match=message):
        load_family_model(folder)  # not reported as a damaged model
    with pytest.raises(InputError, match=message):
        encoder.embed(["x"], backend="onnx")
    assert load_config(path, ["model.params.backend=torch"]).model.params["backend"] == "torch"
