"""What the operating system says (the current umask, whether a process lives), and the one way files and
folders are replaced: written under a temporary sibling name, then renamed into place.

A rename within one folder is atomic, so a reader (or a run killed at any moment) sees the old file or
folder or the new one, never half of either. Temporary names start with ``.<name>-`` beside the target;
staging folders carry the writing process's id so a later run can tell a dead run's leftovers from a
live one's (:func:`recover_folder`).
"""

from __future__ import annotations

import os
import shutil
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator


def current_umask() -> int:
    """The process umask (reading it means setting it, so it is set straight back)."""
    umask = os.umask(0)
    os.umask(umask)
    return umask


def pid_alive(pid: int) -> bool:
    """Whether a process with this id exists on this machine."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # it exists, but belongs to someone else
        return True
    return True


@contextmanager
def replacing(path: Path) -> Iterator[Path]:
    """A temporary sibling of ``path`` for the block to write; when the block ends without error it replaces
    ``path`` in one rename, else it is removed and ``path`` is untouched.

    The result keeps ``path``'s mode; a new file gets the umask's default (not ``mkstemp``'s 0600).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    mode = path.stat().st_mode & 0o777 if path.exists() else 0o666 & ~current_umask()
    handle, name = tempfile.mkstemp(prefix=f".{path.name}-", suffix=".partial", dir=path.parent)
    os.close(handle)
    tmp = Path(name)
    try:
        yield tmp
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def atomic_write(path: Path, content: str | bytes) -> None:
    """Replace ``path`` with ``content`` (text as UTF-8, line endings as given) in one rename."""
    with replacing(path) as tmp:
        if isinstance(content, bytes):
            tmp.write_bytes(content)
        else:
            with open(tmp, "w", encoding="utf-8", newline="") as out:
                out.write(content)


def staging_folder(dest: Path) -> Path:
    """A fresh, empty folder beside ``dest`` (same filesystem, so the final rename is atomic) to build it in.

    Named ``.<dest name>-staging-<pid>-<random>``; created with the umask's permissions (``mkdtemp`` alone
    makes it 0700, unreadable to a serving account). Raises the OS error when ``dest``'s parent cannot be made
    or written.
    """
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    folder = Path(tempfile.mkdtemp(prefix=f".{dest.name}-staging-{os.getpid()}-", dir=dest.parent))
    folder.chmod(0o777 & ~current_umask())
    return folder


def swap_in(staging: Path, dest: Path) -> Path:
    """Make the finished ``staging`` folder ``dest``; an existing ``dest`` is set aside first and removed only
    after the swap (a failed rename puts it back). A kill between the two renames leaves the old folder as
    ``.<name>-old-*``, which :func:`recover_folder` puts back."""
    backup = None
    if dest.exists():
        backup = dest.with_name(f".{dest.name}-old-{staging.name.rsplit('-', 1)[-1]}")
        dest.rename(backup)
    try:
        staging.rename(dest)
    except OSError:
        if backup is not None:
            backup.rename(dest)
        raise
    if backup is not None:
        shutil.rmtree(backup, ignore_errors=True)
    return dest


def publish_once(staging: Path, dest: Path) -> bool:
    """Rename the finished ``staging`` folder to ``dest`` unless another process got there first (then
    ``staging`` is removed); True when this call published it. For caches whose content depends only on the
    name, where any complete copy will do."""
    try:
        staging.rename(dest)
        return True
    except OSError:
        if not dest.is_dir():
            raise
        shutil.rmtree(staging, ignore_errors=True)
        return False


def recover_folder(dest: Path) -> list[str]:
    """Undo what a killed writer left beside ``dest``; returns what was done, one phrase each.

    A staging folder of a process that is gone is removed; an old ``dest`` stranded as ``.<name>-old-*`` by a
    kill between the two renames of :func:`swap_in` is put back (or removed when ``dest`` is there).
    """
    done = []
    for staging in sorted(dest.parent.glob(f".{dest.name}-staging-*")):
        pid = staging.name[len(f".{dest.name}-staging-"):].split("-", 1)[0]
        if pid.isdigit() and not pid_alive(int(pid)):
            shutil.rmtree(staging, ignore_errors=True)
            done.append(f"removed {staging.name} left by a stopped run")
    for old in sorted(dest.parent.glob(f".{dest.name}-old-*")):
        if not dest.exists() and old.is_dir():
            old.rename(dest)
            done.append(f"restored {dest.name} from {old.name} (a run was stopped while swapping it in)")
        elif dest.exists():
            shutil.rmtree(old, ignore_errors=True)
    return done
