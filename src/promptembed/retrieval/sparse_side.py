"""The sparse channel of a store: every chunk's PromptReps vector, kept beside Chroma.

Like the lexical side, it is derived from the collection, which stays the source of
truth whoever writes to it: a sync reads the collection's ``(id, document)`` pairs and
makes the saved rows match them. Unlike BM25, a row costs a forward pass, so a sync is
**incremental**: a row is kept while its chunk's text digest is unchanged, only new or
changed chunks are embedded, and rows of deleted chunks are dropped. It is also
**kill-safe**: while embedding, the index is saved atomically at least every
``checkpoint_seconds``, so a killed sync keeps what it had done and the next one goes on
from there (a reader sees a complete old file or a complete new one, never a torn one).

The rows belong to the vectors of the collection: the file records a key of the
collection's stored identity (what shapes its vectors, promptembed's guard record) and
of the sparse format. A side made for other vectors is never mixed in; it is rebuilt.
Every path that reads or writes the collection checks the loaded embedder against that
same record, so rows and embedder agree whenever the collection and embedder do.
"""

from __future__ import annotations

import hashlib
import logging
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from filelock import FileLock

from promptembed.engine.sparse import TOP_K
from promptembed.identity import precision_class
from promptembed.retrieval.sparse_index import SparseIndex, npz_path
from promptembed.store.collections import stored_records
from promptembed.store.guard import stored_identity

if TYPE_CHECKING:
    import scipy.sparse

log = logging.getLogger(__name__)

SPARSE_FORMAT = 1  # bump when the rows a text gets change (weights, TOP_K, word filter)
BATCH_SIZE = 256  # chunks per embedding call
CHECKPOINT_SECONDS = 60.0  # a killed sync loses at most about this much embedding work
EmbedSparse = Callable[[list[str]], "scipy.sparse.csr_matrix"]


def text_digest(text: str) -> str:
    """A short digest of a chunk's text: a row is reused while it is unchanged.

    Example:
        >>> text_digest("bees") == text_digest("bees") != text_digest("bees!")
        True

    """
    return hashlib.blake2b(text.encode("utf-8"), digest_size=16).hexdigest()


def side_key(collection: Any) -> str:
    """What the rows of ``collection`` depend on: its stored identity and the sparse format.

    Float precisions are one class (as for the dense guard): a side built in bfloat16
    on a GPU serves a float32 reader.
    """
    identity, dimension, _ = stored_identity(collection.metadata, collection.configuration_json)
    record = identity.record() if identity is not None else None
    if record is not None:
        record["precision"] = precision_class(record["precision"])
    blob = repr((record, dimension, SPARSE_FORMAT, TOP_K))
    return hashlib.sha256(blob.encode()).hexdigest()


def sync_sparse(
    collection: Any,
    path: str | Path,
    embed: EmbedSparse,
    *,
    batch_size: int | None = None,
    checkpoint_seconds: float | None = None,
) -> SparseIndex:
    """The collection's sparse index, with only new or changed chunks embedded.

    Args:
        collection: The Chroma collection (the source of truth).
        path: The index file (``.npz`` is appended unless it ends so); a ``.lock``
            file beside it serialises syncs.
        embed: Document texts to their PromptReps rows
            (``PromptEmbedder.embed_sparse``); called only for chunks that need a row.
        batch_size: Chunks per ``embed`` call (default :data:`BATCH_SIZE`).
        checkpoint_seconds: Save progress at least this often while embedding
            (default :data:`CHECKPOINT_SECONDS`).

    Returns:
        The index, rows in the collection's order.

    Example:
        >>> index = sync_sparse(col, "db/docs.sparse.npz", emb.embed_sparse)  # doctest: +SKIP
        >>> index.search(emb.embed_sparse(["bees"], kind="query"), 3)  # doctest: +SKIP

    """
    path = npz_path(path)
    batch_size = batch_size or BATCH_SIZE
    every = CHECKPOINT_SECONDS if checkpoint_seconds is None else checkpoint_seconds
    path.parent.mkdir(parents=True, exist_ok=True)
    records = list(stored_records(collection, documents=True))
    ids = [r["id"] for r in records]
    texts = {r["id"]: r["document"] or "" for r in records}
    digests = {i: text_digest(t) for i, t in texts.items()}
    key = side_key(collection)
    # Held for the whole sync: a second process waits, then finds the rows made here.
    with FileLock(str(path.with_name(path.name + ".lock"))):
        saved = _load(path)
        rows = _kept_rows(saved, key, digests, path)
        todo = [i for i in ids if i not in rows]
        if saved is not None and not todo and saved.key == key and saved.ids == ids:
            return saved
        if todo:
            log.info("embedding sparse vectors of %d chunks into %s", len(todo), path)
        saved_at = time.monotonic()
        for start in range(0, len(todo), batch_size):
            batch = todo[start : start + batch_size]
            matrix = embed([texts[i] for i in batch])
            rows.update({i: (digests[i], matrix[j]) for j, i in enumerate(batch)})
            if time.monotonic() - saved_at >= every:
                _save(path, key, [i for i in ids if i in rows], rows)
                saved_at = time.monotonic()
        return _save(path, key, ids, rows)


def _load(path: Path) -> SparseIndex | None:
    """The saved index, or None when there is none or it cannot be read."""
    try:
        return SparseIndex.load(path)
    except FileNotFoundError:
        return None
    except (OSError, ValueError, KeyError) as exc:
        log.warning("the sparse index %s is unreadable (%s); rebuilding it", path, exc)
        return None


def _kept_rows(saved: SparseIndex | None, key: str, digests: dict[str, str], path: Path) -> Rows:
    """The saved rows still valid: same key, chunk still stored with the same text."""
    if saved is None:
        return {}
    if saved.key != key:
        log.info("the sparse index %s was made for other vectors; rebuilding it", path)
        return {}
    return {
        i: (d, saved.matrix[row])
        for row, (i, d) in enumerate(zip(saved.ids, saved.digests or []))
        if digests.get(i) == d
    }


Rows = dict[str, tuple[str, Any]]  # id -> (text digest, its 1 x vocab CSR row)


def _save(path: Path, key: str, ids: Sequence[str], rows: Rows) -> SparseIndex:
    """Write the rows of ``ids`` (in that order) atomically and return them as an index."""
    import scipy.sparse

    if ids:
        matrix = scipy.sparse.vstack([rows[i][1] for i in ids], format="csr")
    else:
        matrix = scipy.sparse.csr_matrix((0, 0), dtype="float32")
    index = SparseIndex(ids, matrix, digests=[rows[i][0] for i in ids], key=key)
    index.save(path)
    return index
