"""A persistent store of sentence embeddings: one sqlite file shared by every process of a user.

:func:`training.models.encoder.embed` looks texts up here after its in-process cache and before encoding,
and writes here every vector it encodes, so a text is encoded once per encoder, runtime, layer choice and
``max_length``, ever (until evicted). A row's key is the sha256 of its *space* (what computed the vector;
the encoder builds it) and of the text; the vector is kept as its exact float32 bytes, so a hit is
bit-identical to encoding the text again.

Where: ``$TRAINING_EMBEDDING_CACHE/embeddings.sqlite``, by default under ``~/.cache/training-embeddings/``;
``TRAINING_EMBEDDING_CACHE=off`` (what ``--no-cache`` sets, see :func:`disable`) turns the store off for the
process and the processes it starts. Size: at most ``TRAINING_EMBEDDING_CACHE_MAX_MB`` (2048 by default);
beyond it the least recently used rows go (recency is refreshed at most once per :data:`TOUCH_SECONDS`).

sqlite in WAL mode with a busy timeout lets several processes (trainings, a sweep, the scorer) read and
write at once. The store is only a cache: whatever goes wrong with it (a damaged file, a full disk, a
read-only folder) is one warning line, and embedding carries on by encoding.
"""

from __future__ import annotations

import hashlib
import logging
import math
import os
import sqlite3
import threading
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Callable, Iterator, Sequence

import numpy as np

from training.core.errors import InputError

log = logging.getLogger(__name__)
ROOT_ENV = "TRAINING_EMBEDDING_CACHE"  # the store's folder, or "off"
MAX_MB_ENV = "TRAINING_EMBEDDING_CACHE_MAX_MB"
OFF = "off"
DB_NAME = "embeddings.sqlite"
DEFAULT_MAX_MB = 2048
FORMAT = 1  # the file's layout (sqlite's user_version); a file of another format is left alone
BUSY_SECONDS = 30  # how long a statement waits for another process's write lock
CHUNK = 900  # keys per SELECT/UPDATE (under every sqlite build's limit on bound parameters)
TOUCH_SECONDS = 3600  # a hit refreshes its row's last use at most this often: reads rarely write
LOW_WATER = 0.9  # eviction brings the file down to this share of the cap, so it does not run on every write
PAGE_SIZE = 16384  # rows of 384 or 768 float32 fill ~95% of a page (4 KiB pages waste up to a quarter)
WAL_LIMIT = 64 << 20  # bytes of write-ahead log kept after a checkpoint

SCHEMA = ("CREATE TABLE IF NOT EXISTS vectors (key BLOB PRIMARY KEY, vector BLOB NOT NULL, used INTEGER NOT NULL)",
          "CREATE INDEX IF NOT EXISTS vectors_used ON vectors (used)")


def disabled() -> bool:
    return os.environ.get(ROOT_ENV, "").strip().lower() == OFF


def disable() -> None:
    """Turn the store off for this process and those it starts (``--no-cache``); the in-process cache stays."""
    os.environ[ROOT_ENV] = OFF


def store_root() -> Path:
    return Path(os.environ.get(ROOT_ENV) or Path.home() / ".cache" / "training-embeddings").expanduser()


def max_bytes() -> int:
    raw = os.environ.get(MAX_MB_ENV) or str(DEFAULT_MAX_MB)
    try:
        megabytes = float(raw)
    except ValueError:
        megabytes = -1.0
    if not megabytes > 0 or math.isinf(megabytes):
        raise InputError(f"{MAX_MB_ENV}: expected a positive number of megabytes, got '{raw}'")
    return int(megabytes * (1 << 20))


def text_key(space: str, text: str) -> bytes:
    """The row key of ``text`` in ``space``: sha256 of the space and of the text's UTF-8 bytes."""
    digest = hashlib.sha256(text.encode("utf-8", "surrogatepass")).digest()
    return hashlib.sha256(space.encode("utf-8", "surrogatepass") + b"\0" + digest).digest()


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def _busy(exc: BaseException) -> bool:
    return isinstance(exc, sqlite3.OperationalError) and ("locked" in str(exc) or "busy" in str(exc))


class EmbeddingStore:
    """float32 vectors by (space, text) in one sqlite file, least recently used rows evicted past ``max_bytes``.

    Opened lazily, reopened in a forked child (a connection must not cross a fork), one lock for the
    threads of a process. ``clock`` (seconds) stamps a row's last use.
    """

    def __init__(self, path: Path, max_bytes: int, clock: Callable[[], float] = time.time) -> None:
        self.path, self.max_bytes, self.clock = Path(path), max_bytes, clock
        self._lock = threading.RLock()
        self._connection: sqlite3.Connection | None = None
        self._pid = 0
        self._inherited: list[sqlite3.Connection] = []  # a parent's connections: never used, never closed here
        self.readable = self.writable = True

    # -- connection -------------------------------------------------------------------------------------

    def _connect(self) -> sqlite3.Connection | None:
        if self._connection is not None and self._pid == os.getpid():
            return self._connection
        if self._connection is not None:
            self._inherited.append(self._connection)
            self._connection = None
        if not self.readable:
            return None
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            connection = sqlite3.connect(str(self.path), timeout=BUSY_SECONDS, isolation_level=None,
                                         check_same_thread=False)
            try:
                self._prepare(connection)
            except BaseException:
                connection.close()
                raise
        except (sqlite3.Error, OSError) as exc:
            self._broken(exc)
            return None
        self._connection, self._pid = connection, os.getpid()
        return connection

    def _prepare(self, connection: sqlite3.Connection) -> None:
        version = connection.execute("PRAGMA user_version").fetchone()[0]
        if version not in (0, FORMAT):
            raise sqlite3.OperationalError(f"made in format {version}, this code reads format {FORMAT}")
        if version == 0:  # a new file (or one whose creation was cut short): settings that must come first
            connection.execute(f"PRAGMA page_size = {PAGE_SIZE}")
            connection.execute("PRAGMA auto_vacuum = INCREMENTAL")
        connection.execute("PRAGMA journal_mode = WAL")
        connection.execute("PRAGMA synchronous = NORMAL")  # a cache: a power cut may lose the last writes, not the file
        connection.execute(f"PRAGMA journal_size_limit = {WAL_LIMIT}")
        if version == 0:
            with self._transaction(connection):  # IF NOT EXISTS: another process may have won the race
                for statement in SCHEMA:
                    connection.execute(statement)
                connection.execute(f"PRAGMA user_version = {FORMAT}")

    @staticmethod
    @contextmanager
    def _transaction(connection: sqlite3.Connection) -> Iterator[None]:
        """One write transaction, taking the write lock at once (no deadlock-prone upgrade from a read)."""
        connection.execute("BEGIN IMMEDIATE")
        try:
            yield
        except BaseException:
            if connection.in_transaction:  # sqlite may have rolled back already (a full disk, say)
                connection.execute("ROLLBACK")
            raise
        connection.execute("COMMIT")

    def _broken(self, exc: BaseException) -> None:
        """Opening or reading failed: warn once, then the store answers nothing and stores nothing in this process.

        A damaged file (sqlite's DatabaseError) is left for the user to delete; a file or folder that cannot be
        opened (OperationalError, OSError: permissions, a read-only folder, I/O) is only reported.
        """
        if self.readable:
            damaged = isinstance(exc, sqlite3.DatabaseError) and not isinstance(exc, sqlite3.OperationalError)
            what = "damaged" if damaged else "cannot be used"
            advice = "; delete the file to start a new one" if damaged else ""
            log.warning("embedding cache %s: %s (%s); embedding without it%s", self.path, what, _first_line(exc), advice)
        self.readable = self.writable = False

    def _unwritable(self, exc: BaseException) -> None:
        """Writing failed (full disk, read-only file): warn once, then only read."""
        if self.writable:
            log.warning("embedding cache %s: cannot write (%s); new embeddings are not cached by this process",
                        self.path, _first_line(exc))
        self.writable = False

    def close(self) -> None:
        with self._lock:
            if self._connection is not None and self._pid == os.getpid():
                self._connection.close()
            self._connection = None

    # -- reading and writing ----------------------------------------------------------------------------

    def get(self, space: str, texts: Sequence[str]) -> dict[str, np.ndarray]:
        """The stored vector of each of ``texts`` found in ``space`` (read-only float32 arrays)."""
        keys = {text_key(space, text): text for text in dict.fromkeys(texts)}
        found: dict[str, np.ndarray] = {}
        with self._lock:
            connection = self._connect()
            if connection is None:
                return found
            hits: list[bytes] = []
            now = int(self.clock())
            try:
                listed = list(keys)
                for start in range(0, len(listed), CHUNK):
                    chunk = listed[start:start + CHUNK]
                    marks = ",".join("?" * len(chunk))
                    for key, blob in connection.execute(f"SELECT key, vector FROM vectors WHERE key IN ({marks})",
                                                        chunk):
                        found[keys[key]] = np.frombuffer(blob, dtype="<f4")
                        hits.append(key)
            except sqlite3.Error as exc:
                if not _busy(exc):
                    self._broken(exc)
                return {}
            self._touch(connection, hits, now)
        sizes = {len(vector) for vector in found.values()}
        if len(sizes) > 1:  # one space is one encoder: rows of several widths are damage, not vectors
            return {}
        return found

    def _touch(self, connection: sqlite3.Connection, keys: list[bytes], now: int) -> None:
        """Mark ``keys`` used now, writing only rows last marked more than :data:`TOUCH_SECONDS` ago."""
        if not keys or not self.writable:
            return
        try:
            with self._transaction(connection):
                for start in range(0, len(keys), CHUNK):
                    chunk = keys[start:start + CHUNK]
                    connection.execute(f"UPDATE vectors SET used = ? WHERE used < ? AND key IN "
                                       f"({','.join('?' * len(chunk))})", (now, now - TOUCH_SECONDS, *chunk))
        except sqlite3.Error as exc:
            if not _busy(exc):  # busy: recency is a hint, the next hit refreshes it
                self._failed_write(exc)

    def put(self, space: str, texts: Sequence[str], vectors: np.ndarray) -> None:
        """Store one float32 vector per text (one transaction), then evict if the file passed the cap."""
        vectors = np.asarray(vectors)
        if vectors.dtype != np.float32:
            raise TypeError(f"the store keeps float32 vectors exactly, got {vectors.dtype}")
        if len(texts) != len(vectors):
            raise ValueError(f"{len(texts)} texts, {len(vectors)} vectors")
        now = int(self.clock())
        rows = [(text_key(space, text), vector.astype("<f4").tobytes(), now) for text, vector in zip(texts, vectors)]
        with self._lock:
            connection = self._connect()
            if connection is None or not self.writable or not rows:
                return
            try:
                with self._transaction(connection):
                    connection.executemany("INSERT INTO vectors (key, vector, used) VALUES (?, ?, ?) "
                                           "ON CONFLICT (key) DO UPDATE SET used = excluded.used", rows)
            except sqlite3.Error as exc:
                if _busy(exc):
                    log.warning("embedding cache %s: busy for %d s; %d embeddings not cached", self.path,
                                BUSY_SECONDS, len(rows))
                else:
                    self._failed_write(exc)
                return
            try:
                self._evict(connection)
            except sqlite3.Error as exc:
                if not _busy(exc):  # busy: another process holds the file; the next write evicts
                    self._failed_write(exc)

    def _failed_write(self, exc: sqlite3.Error) -> None:
        """A full disk or a read-only file (OperationalError) stops writing; damage stops the store."""
        if isinstance(exc, sqlite3.OperationalError):
            self._unwritable(exc)
        else:
            self._broken(exc)

    def used_bytes(self, connection: sqlite3.Connection | None = None) -> int:
        """Bytes of the file's pages in use (free pages are reused before the file grows)."""
        with self._lock:
            connection = connection or self._connect()
            if connection is None:
                return 0
            pages, free, size = (connection.execute(f"PRAGMA {name}").fetchone()[0]
                                 for name in ("page_count", "freelist_count", "page_size"))
            return (pages - free) * size

    def _evict(self, connection: sqlite3.Connection) -> None:
        """Past the cap, drop least recently used rows down to :data:`LOW_WATER` of it and give the space back."""
        used = self.used_bytes(connection)
        if used <= self.max_bytes:
            return
        for _ in range(8):  # the share of rows to drop is estimated from bytes: a few rounds at most
            rows = connection.execute("SELECT count(*) FROM vectors").fetchone()[0]
            if used <= self.max_bytes * LOW_WATER or not rows:
                break
            drop = max(1, math.ceil(rows * (1 - self.max_bytes * LOW_WATER / used)))
            with self._transaction(connection):
                connection.execute("DELETE FROM vectors WHERE key IN (SELECT key FROM vectors ORDER BY used, rowid "
                                   "LIMIT ?)", (drop,))
            used = self.used_bytes(connection)
        pages, size = (connection.execute(f"PRAGMA {name}").fetchone()[0] for name in ("page_count", "page_size"))
        excess = pages - self.max_bytes // size  # free pages beyond the cap go back to the file system, the rest
        if excess > 0:  # are reused by the next writes (executescript: the pragma frees one page per step)
            connection.executescript(f"PRAGMA incremental_vacuum({excess})")
        connection.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        log.info("embedding cache %s: least recently used rows evicted, %.0f MB kept", self.path, used / (1 << 20))

    def __len__(self) -> int:
        with self._lock:
            connection = self._connect()
            if connection is None:
                return 0
            return connection.execute("SELECT count(*) FROM vectors").fetchone()[0]


_active: tuple[tuple[Path, int], EmbeddingStore] | None = None
_active_lock = threading.Lock()


def active() -> EmbeddingStore | None:
    """The store the environment names now (None when it is off); one per process and location."""
    global _active
    if disabled():
        return None
    where = (store_root() / DB_NAME, max_bytes())
    with _active_lock:
        if _active is None or _active[0] != where:
            if _active is not None:
                _active[1].close()
            _active = (where, EmbeddingStore(*where))
        return _active[1]
