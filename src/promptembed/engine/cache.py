"""Optional on-disk embedding cache, keyed by everything that shapes a vector.

Off by default. With ``embedding_cache="path/to/dir"`` re-embedding a text already
seen by the same weights, template, layer and pooling costs a disk read.

The cache holds data, never code: each vector is stored in SQLite (standard library)
as raw little-endian float32 bytes with its dtype, shape and SHA-256. Nothing read back
is ever unpickled or evaluated, so a planted entry can at worst be a miss: an entry whose
checksum, dtype, shape or values do not hold up is logged, ignored and rewritten.
"""

from __future__ import annotations

import errno
import hashlib
import json
import logging
import os
import sqlite3
import stat
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

logger = logging.getLogger(__name__)

_DTYPE = "<f4"
_FILE = "vectors.sqlite3"
_BUSY_SECONDS = 5.0
_SCHEMA = (
    "CREATE TABLE IF NOT EXISTS vectors ("
    "key TEXT PRIMARY KEY, dtype TEXT NOT NULL, shape TEXT NOT NULL, "
    "sha256 TEXT NOT NULL, data BLOB NOT NULL)"
)


def private_dir(directory: str | Path) -> Path:
    """Create ``directory`` (mode 0700) or check that nobody else can write into it.

    Raises:
        PermissionError: If it belongs to another user or others may write into it:
            whoever can write there decides what vectors this process reads.

    Example:
        >>> private_dir("/tmp/pe-private-example").stat().st_mode & 0o777  # doctest: +SKIP
        448

    """
    path = Path(directory).expanduser()
    path.mkdir(mode=0o700, parents=True, exist_ok=True)
    info = path.stat()
    foreign = hasattr(os, "getuid") and info.st_uid != os.getuid()
    if foreign or info.st_mode & (stat.S_IWGRP | stat.S_IWOTH):
        raise PermissionError(
            f"cache directory {path} is writable by other users (mode "
            f"{stat.filemode(info.st_mode)}, owner uid {info.st_uid}); anyone who can write "
            f"there controls the vectors read back. Use a directory of your own, or "
            f"`chmod 700 {path}`"
        )
    return path


def _check_private_file(path: Path, info: os.stat_result) -> None:
    """Refuse a cache file that others can write or that another user owns."""
    foreign = hasattr(os, "getuid") and info.st_uid != os.getuid()
    if foreign or info.st_mode & (stat.S_IWGRP | stat.S_IWOTH) or not stat.S_ISREG(info.st_mode):
        raise PermissionError(
            f"cache file {path} is writable by other users or not a plain file (mode "
            f"{stat.filemode(info.st_mode)}, owner uid {info.st_uid}); anyone who can write "
            f"it controls the vectors read back. Remove it, or `chmod 600 {path}`"
        )


# What sets a cache file aside: it is not a database, or its table is not ours. Any other
# error (locked, busy, I/O) may pass, and setting a good cache aside loses its use.
_DAMAGE = ("not a database", "malformed", "no such column", "no such table")


def _damaged(error: sqlite3.DatabaseError) -> bool:
    return any(sign in str(error) for sign in _DAMAGE)


class EmbeddingCache:
    """A persistent map from (embedder identity, text) to its vector.

    Args:
        directory: Where the cache lives (created mode 0700 if missing).
        identity: Everything that changes the vector except the text: weights
            fingerprint, template text, layer, pooling, normalisation, max_length.

    Example:
        >>> cache = EmbeddingCache("/tmp/pe-cache-example", {"model": "m"})  # doctest: +SKIP
        >>> cache.put(["hi"], np.ones((1, 4), dtype=np.float32))  # doctest: +SKIP
        >>> cache.get(["hi", "new"])[0].shape, cache.get(["hi", "new"])[1]  # doctest: +SKIP
        ((4,), None)

    """

    def __init__(self, directory: str, identity: dict[str, Any]) -> None:
        self._path = private_dir(directory) / _FILE
        self._lock = threading.Lock()  # one connection, shared by the embedder's threads
        self._db = self._open()
        self._namespace = hashlib.sha256(
            json.dumps(identity, sort_keys=True, default=str).encode()
        ).hexdigest()

    def _open(self) -> sqlite3.Connection:
        # O_NOFOLLOW: a planted symlink is refused, never followed to a file elsewhere.
        try:
            fd = os.open(self._path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW, 0o600)
        except OSError as error:
            if error.errno != errno.ELOOP:
                raise
            raise PermissionError(
                f"cache file {self._path} is a symbolic link; whoever controls its target "
                "controls the vectors read back. Remove the link."
            ) from None
        try:
            _check_private_file(self._path, os.fstat(fd))
        finally:
            os.close(fd)
        # A short wait: a cache held by another process is a miss, not a stalled job.
        db = sqlite3.connect(self._path, timeout=_BUSY_SECONDS, check_same_thread=False)
        try:
            db.execute("PRAGMA journal_mode=WAL")  # readers in other processes do not block
            db.execute(_SCHEMA)
            db.execute("SELECT key, dtype, shape, sha256, data FROM vectors LIMIT 0")
        except sqlite3.DatabaseError as error:
            if not _damaged(error):  # locked by another process, busy, I/O: not damage
                logger.warning(
                    "embedding cache %s cannot be used now (%s): lookups are misses until "
                    "it can; the file is left as it is",
                    self._path,
                    error,
                )
                return db
            db.close()
            aside = self._path.with_name(f"{_FILE}.corrupt-{int(time.time())}")
            logger.warning(
                "embedding cache %s is not a readable database (%s); moved it to %s and "
                "started an empty one",
                self._path,
                error,
                aside,
            )
            os.replace(self._path, aside)
            return self._open()
        return db

    def _key(self, text: str) -> str:
        return hashlib.sha256(f"{self._namespace}\0{text}".encode()).hexdigest()

    def get(
        self, texts: Sequence[str], shape: tuple[int, ...] | None = None
    ) -> list[np.ndarray | None]:
        """Cached vector per text, or ``None`` where it is not cached (or not intact).

        Args:
            texts: The texts to look up.
            shape: The shape every vector must have; another shape is a miss.

        """
        keys = [self._key(text) for text in texts]
        rows: dict[str, tuple[Any, ...]] = {}
        try:
            with self._lock:
                for start in range(0, len(keys), 500):  # SQLite's bound on host parameters
                    part = keys[start : start + 500]
                    marks = ",".join("?" * len(part))
                    query = (
                        f"SELECT key, dtype, shape, sha256, data FROM vectors "
                        f"WHERE key IN ({marks})"
                    )
                    rows.update((row[0], row) for row in self._db.execute(query, part))
        except sqlite3.Error as error:  # locked by another process, damaged, odd schema
            logger.warning(
                "embedding cache %s unreadable (%s): computing instead", self._path, error
            )
            return [None] * len(keys)
        return [self._decode(rows[key], shape) if key in rows else None for key in keys]

    def _decode(self, row: tuple[Any, ...], shape: tuple[int, ...] | None) -> np.ndarray | None:
        key, dtype, stored_shape, digest, data = row
        problem = None
        try:
            dims = tuple(int(d) for d in json.loads(stored_shape))
        except (ValueError, TypeError):
            dims = ()
        if dtype != _DTYPE or not isinstance(data, bytes):
            problem = f"dtype {dtype!r} / {type(data).__name__}"
        elif hashlib.sha256(data).hexdigest() != digest:
            problem = "checksum mismatch"
        elif not dims or int(np.prod(dims)) * 4 != len(data) or (shape and dims != shape):
            problem = f"shape {stored_shape!r}, {len(data)} bytes"
        if problem is None:
            vector = np.frombuffer(data, dtype=_DTYPE).reshape(dims).astype(np.float32)
            with np.errstate(over="ignore"):
                # A finite vector whose squared norm overflows float32 (values near 3e38)
                # would normalise to zeros: as corrupt as NaN.
                energy = np.square(vector).sum(dtype=np.float32)
            if np.isfinite(vector).all() and np.isfinite(energy):
                return vector
            problem = "non-finite values or a norm beyond float32"
        logger.warning(
            "embedding cache entry %s in %s is corrupt (%s): recomputing it",
            key,
            self._path,
            problem,
        )
        return None

    def put(self, texts: Sequence[str], vectors: np.ndarray) -> None:
        """Store one vector per text (float32), atomically per batch."""
        rows = []
        for text, vec in zip(texts, vectors):
            data = np.ascontiguousarray(vec, dtype=_DTYPE).tobytes()
            shape = json.dumps(list(np.shape(vec)))
            rows.append((self._key(text), _DTYPE, shape, hashlib.sha256(data).hexdigest(), data))
        try:
            with self._lock, self._db:  # one transaction
                self._db.executemany(
                    "INSERT OR REPLACE INTO vectors (key, dtype, shape, sha256, data) "
                    "VALUES (?, ?, ?, ?, ?)",
                    rows,
                )
        except sqlite3.Error as error:  # locked by another process, damaged, odd schema
            logger.warning("embedding cache %s not written (%s): carrying on", self._path, error)

    def close(self) -> None:
        """Release the underlying database."""
        with self._lock:
            self._db.close()
