"""Encoder references: an installable encoder is assembled once from its parts and checked; what cannot be
found is one line naming the key."""

from __future__ import annotations

import hashlib
import io
import zipfile
from pathlib import Path

import pytest

from training.core.errors import InputError
from training.models import encoder_sources
from training.models.encoder_sources import Installable, resolve

FILES = {"tiny/config.json": b'{"model_type": "bert"}', "tiny/vocab.txt": b"[PAD]\n[UNK]\n",
         "tiny/desktop.ini": b"junk", "tiny/sub/weights.bin": bytes(range(256)) * 64}


def _zip(files: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for name, data in files.items():
            archive.writestr(name, data)
    return buffer.getvalue()


def _parts(folder: Path, data: bytes, count: int = 3) -> list[Path]:
    """``data`` split into ``count`` part files, as the PyPI packages carry it."""
    folder.mkdir(parents=True, exist_ok=True)
    size = -(-len(data) // count)
    paths = []
    for i in range(count):
        path = folder / f"tiny.zip.{i + 1:03d}"
        path.write_bytes(data[i * size:(i + 1) * size])
        paths.append(path)
    return paths


@pytest.fixture
def installable(tmp_path, monkeypatch):
    """A registered installable encoder 'tiny' whose parts are files in tmp_path; returns its cache root."""
    data = _zip(FILES)
    parts = _parts(tmp_path / "parts", data)
    spec = Installable(parts=tuple(f"tiny-part-{i}" for i in range(3)), zip_sha256=hashlib.sha256(data).hexdigest(),
                       folder="tiny", extra="tiny")
    monkeypatch.setitem(encoder_sources.INSTALLABLE, "tiny", spec)
    monkeypatch.setattr(encoder_sources, "_part_file", lambda name, spec, part: parts[spec.parts.index(part)])
    monkeypatch.setenv("TRAINING_ENCODER_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache", parts


def test_an_installable_encoder_is_assembled_once_with_its_files_and_nothing_else(installable):
    cache, parts = installable
    folder = resolve("tiny")
    assert folder == cache / "tiny"
    found = {str(p.relative_to(folder)): p.read_bytes() for p in folder.rglob("*") if p.is_file()}
    assert found == {name.removeprefix("tiny/"): data for name, data in FILES.items() if "desktop.ini" not in name}
    assert [p.name for p in cache.iterdir()] == ["tiny"]  # no staging left behind
    for part in parts:  # a second use reads the cache, not the parts
        part.unlink()
    assert resolve("tiny") == folder


def test_parts_that_do_not_join_to_the_checked_zip_are_one_line_and_install_nothing(installable):
    cache, parts = installable
    damaged = bytearray(parts[1].read_bytes())
    damaged[10] ^= 0xFF
    parts[1].write_bytes(bytes(damaged))
    with pytest.raises(InputError) as caught:
        resolve("tiny")
    message = str(caught.value)
    assert len(message.splitlines()) == 1 and "model.params.encoder 'tiny'" in message and "SHA-256" in message
    assert not cache.exists() or list(cache.iterdir()) == []


def test_a_member_outside_the_folder_is_refused(tmp_path, monkeypatch):
    data = _zip({"tiny/config.json": b"{}", "tiny/../../escape.txt": b"x"})
    parts = _parts(tmp_path / "parts", data, 1)
    spec = Installable(parts=("p",), zip_sha256=hashlib.sha256(data).hexdigest(), folder="tiny", extra="tiny")
    monkeypatch.setitem(encoder_sources.INSTALLABLE, "tiny", spec)
    monkeypatch.setattr(encoder_sources, "_part_file", lambda name, spec, part: parts[0])
    monkeypatch.setenv("TRAINING_ENCODER_CACHE", str(tmp_path / "cache"))
    with pytest.raises(InputError, match="unexpected member 'tiny/../../escape.txt'"):
        resolve("tiny")
    assert not (tmp_path / "escape.txt").exists() and not (tmp_path / "cache" / "tiny").exists()


# A process that registers 'tiny' with the given parts, waits for a line on stdin (so two start together), installs.
INSTALL = """
import sys
from pathlib import Path
from training.models import encoder_sources
cache, digest, *parts = sys.argv[1:]
import os
os.environ["TRAINING_ENCODER_CACHE"] = cache
encoder_sources.INSTALLABLE["tiny"] = encoder_sources.Installable(parts=tuple(parts), zip_sha256=digest, folder="tiny",
                                                                  extra="x")
encoder_sources._part_file = lambda name, spec, part: Path(part)
print("ready", flush=True)
sys.stdin.readline()
print(encoder_sources.resolve("tiny"), flush=True)
"""


def test_two_processes_installing_at_once_both_get_the_one_folder(tmp_path):
    import subprocess
    import sys

    data = _zip(FILES)
    parts = [str(p) for p in _parts(tmp_path / "parts", data)]
    command = [sys.executable, "-c", INSTALL, str(tmp_path / "cache"), hashlib.sha256(data).hexdigest(), *parts]
    processes = [subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                  text=True) for _ in range(2)]
    try:
        assert all(process.stdout.readline().strip() == "ready" for process in processes)
        for process in processes:  # both are past their imports: go
            process.stdin.write("go\n")
            process.stdin.flush()
        outputs = [process.communicate(timeout=120) for process in processes]
    finally:
        for process in processes:
            process.kill()
    assert [process.returncode for process in processes] == [0, 0], [err for _, err in outputs]
    assert {out.strip() for out, _ in outputs} == {str(tmp_path / "cache" / "tiny")}
    assert sorted(p.name for p in (tmp_path / "cache").iterdir()) == ["tiny"]
    assert (tmp_path / "cache" / "tiny" / "sub" / "weights.bin").read_bytes() == FILES["tiny/sub/weights.bin"]


def test_installable_parts_not_installed_name_the_extra(monkeypatch, tmp_path):
    spec = Installable(parts=("no-such-distribution-part-001",), zip_sha256="0" * 64, folder="x", extra="tinyextra")
    monkeypatch.setitem(encoder_sources.INSTALLABLE, "tiny", spec)
    monkeypatch.setenv("TRAINING_ENCODER_CACHE", str(tmp_path / "cache"))
    with pytest.raises(InputError, match=r"model.params.encoder 'tiny': its parts are not installed; .*\[tinyextra\]"):
        resolve("tiny")


@pytest.mark.parametrize("reference, expected", [
    ("no/such/folder", "no model folder (with config.json)"),
    ("", "empty"),
    ("someone/some-model", "not in the local Hub cache"),
])
def test_an_encoder_that_cannot_be_found_is_one_line_naming_the_key(reference, expected, monkeypatch, tmp_path):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hub"))
    with pytest.raises(InputError) as caught:
        resolve(reference)
    message = str(caught.value)
    assert len(message.splitlines()) == 1 and message.startswith("model.params.encoder") and expected in message


def test_the_main_job_names_a_missing_encoder_before_any_work(tmp_path, capsys):
    from conftest import write_config
    from training.cli.train import main

    path = write_config(tmp_path, "lost", model={"family": "minilm_head",
                                                 "params": {"encoder": str(tmp_path / "nowhere")}})
    assert main(["--config", str(path)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "model.params.encoder" in err[0] and "nowhere" in err[0]
    assert not (tmp_path / "models").exists() and not (tmp_path / "mlflow.db").exists()
