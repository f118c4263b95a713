"""Chroma clients and collections: open, check, lock. Creates nothing it is not asked to."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from promptembed.config import Config, EmbedderConfig, StoreConfig
from promptembed.config.paths import store_calibration
from promptembed.store.guard import EF_NAME, META_DIMENSION, check_compatible

GET_PAGE = 5000


def stored_records(
    collection: Any, where: dict[str, Any] | None = None, documents: bool = False
) -> Iterator[dict[str, Any]]:
    """``{"id", "metadatas", "document"}`` of every stored record matching ``where``, paged.

    ``document`` is None unless ``documents`` is asked for. Chroma caps one ``get``, so
    every reader of a whole collection goes through here, ``GET_PAGE`` records a call.
    """
    include = ["metadatas", "documents"] if documents else ["metadatas"]
    offset = 0
    while True:
        got = collection.get(where=where, include=include, limit=GET_PAGE, offset=offset)
        texts = got["documents"] if documents else [None] * len(got["ids"])
        for id_, meta, text in zip(got["ids"], got["metadatas"], texts):
            yield {"id": id_, "metadatas": meta or {}, "document": text}
        if len(got["ids"]) < GET_PAGE:
            return
        offset += GET_PAGE


LOCK_NAME = ".promptembed-write.lock"
CHROMA_DB = "chroma.sqlite3"  # what an embedded Chroma store holds once created


class CollectionNotFoundError(ValueError):
    """The config's collection does not exist (``query`` never creates one).

    Example:
        >>> query("bees", {"store": {"path": "empty-db"}})  # doctest: +SKIP
        Traceback (most recent call last):
        CollectionNotFoundError: collection 'promptembed' does not exist ...

    """


class StoreBusyError(RuntimeError):
    """Another process holds the embedded store's write lock."""


@contextmanager
def store_lock(store: StoreConfig | None, timeout: float = 10.0) -> Iterator[None]:
    """Hold the embedded store's lock file (a Chroma server needs none).

    Raises:
        StoreBusyError: Another process held it for ``timeout`` seconds.

    """
    if store is None or store.path is None:
        yield
        return
    from filelock import FileLock, Timeout

    directory = Path(store.path).expanduser()
    directory.mkdir(parents=True, exist_ok=True)
    lock = FileLock(str(directory / LOCK_NAME))
    try:
        lock.acquire(timeout=timeout)
    except Timeout:
        raise StoreBusyError(
            f"another process is writing to the embedded Chroma store {str(directory)!r} "
            f"(lock {LOCK_NAME} held for {timeout:.0f}s). Embedded Chroma serves one process: "
            "wait for it, or serve the store with `chroma run --path DIR` and set host/port."
        ) from None
    try:
        yield
    finally:
        lock.release()


def stored_dimension(collection: Any) -> int | None:
    """The vector dimension a collection records (metadata, else its function's config)."""
    dimension = (collection.metadata or {}).get(META_DIMENSION)
    if dimension is None:
        ef = (collection.configuration_json or {}).get("embedding_function") or {}
        if ef.get("name") == EF_NAME and isinstance(ef.get("config"), dict):
            dimension = ef["config"].get("dimension")
    return int(dimension) if dimension is not None else None


def open_existing_collection(
    store: StoreConfig, embedder: EmbedderConfig, dimension: int | None = None
) -> Any | None:
    """The collection if it exists, checked against the embedder without loading it.

    The identity fields determine the dimension, so when the stored identity agrees
    the stored dimension is taken as the embedder's unless ``dimension`` is given.
    Creates nothing.

    Raises:
        EmbedderConflictError: The collection holds another embedder's vectors.

    """
    from chromadb.errors import NotFoundError

    client = make_client(store)
    try:
        collection = client.get_collection(store.collection, embedding_function=None)
    except (NotFoundError, ValueError):
        return None
    if dimension is None:
        dimension = stored_dimension(collection) or 0
    check_compatible(
        collection.name,
        collection.metadata,
        collection.configuration_json,
        collection.count(),
        embedder,
        dimension,
    )
    return collection


def make_client(store: StoreConfig) -> Any:
    """A Chroma client for a store config: ``PersistentClient`` or ``HttpClient``."""
    # Default settings on purpose: Chroma refuses two clients of one path with different
    # settings in a process, and users open their own clients next to ours.
    import chromadb

    if store.mode == "persistent":
        return chromadb.PersistentClient(path=str(store.path))
    return chromadb.HttpClient(host=store.host, port=store.port, ssl=store.ssl)


def store_of(config: Config) -> StoreConfig:
    """The config's ``[store]`` table, or a ValueError that says how to add one."""
    if config.store is None:
        raise ValueError(
            "the config has no [store] table: add one with `path` (embedded Chroma) or "
            "`host`/`port` (Chroma server) and `collection`"
        )
    return config.store


def keep_calibration(store: StoreConfig, calibration: str | None) -> Path | None:
    """Keep a copy of a collection's calibration inside its embedded store (once).

    A store folder copied or moved elsewhere then reopens with no search path: the copy is
    found by :func:`~promptembed.config.resolve_calibration` through ``stores=``. A Chroma
    server keeps no files for us: its calibration stays next to the config.

    Returns:
        The kept copy, or None (no calibration, no local file, or not an embedded store).
    """
    if not calibration or store.path is None:
        return None
    source = Path(calibration)
    target = store_calibration(store.path, source.name)
    # No local file: a client-mode embedder names its server's calibration by hash only.
    if source.is_file() and not target.is_file():
        blob = source.read_bytes()
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=target.parent, suffix=".tmp")
        with os.fdopen(fd, "wb") as fh:
            fh.write(blob)
        os.chmod(tmp, 0o644)
        os.replace(tmp, target)  # atomic: a concurrent reader sees all of it or nothing
    return target if target.is_file() else None


def open_store_paths() -> list[Path]:
    """Folders of the embedded Chroma stores open in this process.

    Chroma rebuilds a collection's embedding function from its stored config alone, with
    no word of the client's path; the stores open here are where its kept calibration is.
    """
    try:
        from chromadb.api.shared_system_client import SharedSystemClient

        identifiers = list(SharedSystemClient._identifier_to_system)
    except (ImportError, AttributeError):  # another chromadb layout: nothing extra to try
        return []
    return [Path(i) for i in identifiers if Path(i).is_dir()]
