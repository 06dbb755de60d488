"""The persistent embedding cache: exact vectors across processes, concurrent writers, the size cap, and a
store that fails (damaged, unwritable, full) or is turned off never failing the embedding itself."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from training.core.errors import InputError
from training.data.corpus import read_folder
from training.models import embedding_store, encoder
from training.models.embedding_store import EmbeddingStore

ROOT = Path(__file__).resolve().parent.parent
MAX_LENGTH = 32  # short: these tests are about the store, not the encoder

# a child process: embed the texts of argv[1] (a JSON list) under both layer choices into argv[2] (.npy);
# with "refuse", encoding raises (every vector must come from the disk store); with "wait", it first loads
# the encoder, says "ready" and waits for a line on stdin, so that two children write at the same moment
CHILD = """
import json, sys
import numpy as np
from training.models import encoder

texts = json.loads(open(sys.argv[1], encoding="utf-8").read())
if "wait" in sys.argv:
    encoder.embed(texts[:1], max_length={max_length}, use_cache=False)
    print("ready", flush=True)
    sys.stdin.readline()
if "refuse" in sys.argv:
    def refuse(*args, **kwargs):
        raise AssertionError("encoded although the disk store held every vector")
    encoder._encode = refuse
vectors = np.stack([encoder.embed(texts, max_length={max_length}, layers=layers) for layers in encoder.LAYERS])
np.save(sys.argv[2], vectors)
print("encoder loaded:", encoder.load_encoder.cache_info().currsize, flush=True)
""".format(max_length=MAX_LENGTH)


@pytest.fixture(scope="module")
def texts() -> list[str]:
    return list(dict.fromkeys(s.text for s in read_folder(ROOT / "seeds")))[:40]


@pytest.fixture(scope="module")
def fresh(texts) -> dict[str, np.ndarray]:
    """Each layer choice's vectors of ``texts`` encoded with both caches bypassed."""
    return {layers: encoder.embed(texts, max_length=MAX_LENGTH, use_cache=False, layers=layers)
            for layers in encoder.LAYERS}


@pytest.fixture()
def cache_root(tmp_path, monkeypatch) -> Path:
    """An empty store of this test's own, and an empty in-process cache (so every lookup reaches the disk)."""
    root = tmp_path / "embedding-cache"
    monkeypatch.setenv(embedding_store.ROOT_ENV, str(root))
    encoder.clear_cache()
    yield root
    encoder.clear_cache()
    if embedding_store.active() is not None:
        embedding_store.active().close()


def _spaces() -> dict[str, str]:
    return encoder.store_spaces("torch", str(encoder.encoder_path(encoder.PACKAGED)), MAX_LENGTH)


def _child(tmp_path: Path, texts: list[str], name: str, *flags: str) -> tuple[list[str], Path]:
    """The command line of a :data:`CHILD` embedding ``texts``, and the file its vectors go to."""
    source, out = tmp_path / f"{name}.json", tmp_path / f"{name}.npy"
    source.write_text(json.dumps(texts), encoding="utf-8")
    return [sys.executable, "-c", CHILD, str(source), str(out), *flags], out


def _refusing_encode(monkeypatch) -> None:
    """From here on, encoding in this process raises: every vector must come from a cache."""
    def refuse(*args, **kwargs):
        raise AssertionError("encoded although the disk store held every vector")

    monkeypatch.setattr(encoder, "_encode", refuse)


def test_a_new_process_reads_exact_vectors_back_without_encoding(cache_root, tmp_path, texts, fresh):
    encoder.embed(texts, max_length=MAX_LENGTH)  # this process encodes and stores both layer choices
    args, out = _child(tmp_path, texts, "reader", "refuse")
    result = subprocess.run(args, capture_output=True, text=True, cwd=ROOT, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "encoder loaded: 0" in result.stdout  # not even loaded
    vectors = np.load(out)
    for row, layers in enumerate(encoder.LAYERS):
        assert vectors[row].dtype == np.float32
        assert np.array_equal(vectors[row], fresh[layers]), layers  # bit for bit


def test_two_processes_writing_at_once_both_succeed_and_store_each_text_once(cache_root, tmp_path, texts, fresh):
    first, second = texts[:28], texts[12:]  # 16 texts in both
    children = []
    for name, part in (("first", first), ("second", second)):
        args, out = _child(tmp_path, part, name, "wait")
        children.append((subprocess.Popen(args, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                          text=True, cwd=ROOT), out, part))
    for child, _, _ in children:  # both have loaded the encoder: start them together
        assert child.stdout.readline().strip() == "ready", child.communicate()[1][-3000:]
    for child, _, _ in children:
        child.stdin.write("go\n")
        child.stdin.flush()
    for child, out, part in children:
        stdout, stderr = child.communicate(timeout=600)
        assert child.returncode == 0, stderr[-3000:]
        assert "embedding cache" not in stderr  # no write was skipped as busy, nothing was found damaged
        vectors = np.load(out)
        for row, layers in enumerate(encoder.LAYERS):
            assert np.array_equal(vectors[row], fresh[layers][[texts.index(t) for t in part]])
    store = embedding_store.active()
    assert len(store) == len(encoder.LAYERS) * len(texts)  # every text once per layer choice, nothing else
    for layers, space in _spaces().items():
        stored = store.get(space, texts)
        assert np.array_equal(np.stack([stored[t] for t in texts]), fresh[layers])


def test_the_size_cap_evicts_the_least_recently_used_rows(tmp_path):
    now = [0.0]
    store = EmbeddingStore(tmp_path / "cap.sqlite", max_bytes=1 << 20, clock=lambda: now[0])
    rng = np.random.default_rng(0)
    vectors = {name: rng.standard_normal((200, 384)).astype(np.float32) for name in "abc"}
    names = {name: [f"{name}{i}" for i in range(200)] for name in "abc"}
    store.put("space", names["a"], vectors["a"])
    store.put("space", names["b"], vectors["b"])
    assert len(store) == 400 and store.used_bytes() < store.max_bytes
    now[0] = 2 * embedding_store.TOUCH_SECONDS
    assert len(store.get("space", names["a"])) == 200  # a is used again, b is not
    now[0] = 3 * embedding_store.TOUCH_SECONDS
    store.put("space", names["c"], vectors["c"])  # 600 rows of ~1.6 kB: past the 1 MiB cap
    kept = {name: store.get("space", names[name]) for name in "abc"}
    assert len(kept["a"]) == len(kept["c"]) == 200
    assert 0 < len(kept["b"]) < 200  # only the least recently used rows went, and only as many as needed
    assert store.used_bytes() <= store.max_bytes and (tmp_path / "cap.sqlite").stat().st_size <= store.max_bytes
    for name in "abc":
        for text, vector in kept[name].items():
            assert np.array_equal(vector, vectors[name][names[name].index(text)])
    store.close()


def test_the_cap_comes_from_the_environment(monkeypatch, tmp_path):
    monkeypatch.setenv(embedding_store.ROOT_ENV, str(tmp_path))
    monkeypatch.setenv(embedding_store.MAX_MB_ENV, "0.5")
    assert embedding_store.active().max_bytes == 1 << 19
    monkeypatch.setenv(embedding_store.MAX_MB_ENV, "lots")
    with pytest.raises(InputError, match=f"^{embedding_store.MAX_MB_ENV}: expected a positive number"):
        embedding_store.active()


def _damage(path: Path, how: str) -> None:
    if how == "garbage":
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(os.urandom(64 << 10))
    else:  # a real store whose pages after the first (the schema) were overwritten
        store = EmbeddingStore(path, 1 << 30)
        store.put("space", [f"t{i}" for i in range(300)], np.ones((300, 384), dtype=np.float32))
        store.close()
        with open(path, "r+b") as handle:
            handle.seek(embedding_store.PAGE_SIZE)
            handle.write(os.urandom(path.stat().st_size - embedding_store.PAGE_SIZE))


@pytest.mark.parametrize("how", ["garbage", "damaged pages"])
def test_a_damaged_store_warns_once_and_embeds(cache_root, texts, fresh, caplog, how):
    path = cache_root / embedding_store.DB_NAME
    _damage(path, how)
    before = path.read_bytes()
    with caplog.at_level(logging.WARNING, logger=embedding_store.__name__):
        assert np.array_equal(encoder.embed(texts[:20], max_length=MAX_LENGTH), fresh["last"][:20])
        assert np.array_equal(encoder.embed(texts[20:], max_length=MAX_LENGTH), fresh["last"][20:])
    warnings = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    assert len(warnings) == 1 and str(path) in warnings[0] and "damaged" in warnings[0], warnings
    assert path.read_bytes() == before  # the user's file is left for them to look at or delete


def test_an_unusable_cache_location_warns_and_embeds(tmp_path, monkeypatch, texts, fresh, caplog):
    (tmp_path / "a-file").write_text("not a folder")
    monkeypatch.setenv(embedding_store.ROOT_ENV, str(tmp_path / "a-file" / "cache"))
    encoder.clear_cache()
    with caplog.at_level(logging.WARNING, logger=embedding_store.__name__):
        assert np.array_equal(encoder.embed(texts, max_length=MAX_LENGTH), fresh["last"])
    warnings = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    assert len(warnings) == 1 and "cannot be used" in warnings[0], warnings
    encoder.clear_cache()


def test_a_read_only_cache_folder_does_not_fail_embedding(cache_root, texts, fresh, caplog):
    encoder.embed(texts[:20], max_length=MAX_LENGTH)  # a store with rows in it
    embedding_store.active().close()
    encoder.clear_cache()
    for path in [cache_root, *cache_root.iterdir()]:
        path.chmod(0o555 if path.is_dir() else 0o444)
    try:
        probe = cache_root / "probe"
        try:
            probe.touch()
        except PermissionError:
            pass
        else:
            probe.unlink()
            pytest.skip("this user (root?) writes to read-only folders anyway")
        with caplog.at_level(logging.WARNING, logger=embedding_store.__name__):
            assert np.array_equal(encoder.embed(texts, max_length=MAX_LENGTH), fresh["last"])
            assert np.array_equal(encoder.embed(texts, max_length=MAX_LENGTH, layers="inner"), fresh["inner"])
        warnings = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
        assert len(warnings) == 1 and str(cache_root) in warnings[0], warnings
    finally:
        for path in [cache_root, *cache_root.iterdir()]:
            path.chmod(0o755 if path.is_dir() else 0o644)


def test_a_full_disk_stops_writing_once_and_keeps_reading(cache_root, texts, fresh, caplog, monkeypatch):
    encoder.embed(texts[:20], max_length=MAX_LENGTH)
    store = embedding_store.active()
    connection = store._connect()
    pages = connection.execute("PRAGMA page_count").fetchone()[0]
    connection.execute(f"PRAGMA max_page_count = {pages}")  # sqlite's own "database or disk is full" from here on
    with caplog.at_level(logging.WARNING, logger=embedding_store.__name__):
        assert np.array_equal(encoder.embed(texts[20:30], max_length=MAX_LENGTH), fresh["last"][20:30])
        assert np.array_equal(encoder.embed(texts[30:], max_length=MAX_LENGTH), fresh["last"][30:])
    warnings = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    assert len(warnings) == 1 and "cannot write" in warnings[0] and "full" in warnings[0], warnings
    assert len(store) == 2 * 20  # nothing was added
    encoder.clear_cache()
    _refusing_encode(monkeypatch)
    assert np.array_equal(encoder.embed(texts[:20], max_length=MAX_LENGTH), fresh["last"][:20])  # still read


def _fake_train(texts):
    def train_one(config, promote=True):
        encoder.embed(texts, max_length=MAX_LENGTH)
        return "trained"

    return train_one


@pytest.mark.parametrize("flags", [[], ["--no-cache"]])
def test_no_cache_leaves_the_store_untouched_in_training(cache_root, monkeypatch, texts, flags):
    from training.cli import train

    monkeypatch.setattr(train, "expand", lambda configs, overrides: ["one config"])
    monkeypatch.setattr(train, "train_one", _fake_train(texts))
    monkeypatch.setattr(train, "summary", str)
    assert train.main(flags) == 0
    path = cache_root / embedding_store.DB_NAME
    if flags:
        assert not path.exists() and embedding_store.active() is None
    else:  # the same run without the flag fills the store
        assert len(EmbeddingStore(path, 1 << 30)) == len(encoder.LAYERS) * len(texts)


@pytest.mark.parametrize("flags", [[], ["--no-cache"]])
def test_no_cache_leaves_the_store_untouched_in_scoring(cache_root, monkeypatch, tmp_path, texts, flags):
    from training.cli import score

    def fake_score(*args, **kwargs):
        encoder.embed(texts, max_length=MAX_LENGTH)
        return SimpleNamespace(bad=[], repeated_ids=0, resumed_chunks=0, pages=1, sentences=len(texts),
                               out=tmp_path / "out.parquet", seconds=1.0, pages_per_second=1.0)

    monkeypatch.setattr(score, "score", fake_score)
    assert score.main([str(tmp_path), "--model", "m", "--out", str(tmp_path / "out.parquet"), *flags]) == 0
    path = cache_root / embedding_store.DB_NAME
    assert path.exists() != bool(flags)
