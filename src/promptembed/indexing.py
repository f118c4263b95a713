"""Index files into the config's Chroma collection: per-file outcomes, losing nothing.

* Every file ends as ``indexed``, ``unchanged``, ``skipped`` (with the reason: no
  reader for its type, empty, not text) or ``failed`` (with the error); one bad file
  never stops the run. Readers live in :mod:`promptembed.readers`.
* A file's **source key** is its path relative to a root (the config file's folder,
  else the embedded store's parent folder, else the working directory; or ``root=``),
  so two folders with the same name never share a key and the keys survive moving the
  project. With ``namespace`` the key is ``<namespace>:<path inside the argument>``.
* Chunks come from llama-index-core's splitters (``MarkdownNodeParser`` then
  ``SentenceSplitter`` for Markdown; ``SentenceSplitter`` otherwise; PDFs per page,
  with the page number in the chunk's metadata).
* A chunk's id hashes its source key, its position and its text, so an unchanged
  corpus maps to the same ids: re-indexing embeds nothing, adds nothing and does not
  even load the model (the collection's identity record is checked instead).
* Chunks of many files share the embedding batches. All writes go through
  :func:`upsert_chunks` and all removals through :func:`delete_chunks`. A source's stale
  chunks are deleted only once all its new chunks are stored, so a run killed at any
  point leaves whole chunks only and the next run ends with exactly the corpus.
* With ``prune``, chunks of files deleted from an indexed directory are removed too
  (off by default: indexing one directory never touches another's chunks).
* Keys of promptembed 0.1 (``<folder name>/<path>``) are migrated on the next run
  without re-embedding: the stored vectors are re-keyed.
* Embedded Chroma is single-process: a run holds a lock file in the store directory,
  and :func:`query` waits for it, so no reader sees a half-written index. Several
  processes writing at once need a Chroma server (``chroma run --path DIR``).

Requires the ``llama-index`` and ``chroma`` extras (``pdf`` for PDFs).
"""

from __future__ import annotations

import functools
import hashlib
import logging
import os
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from promptembed._optional import require
from promptembed.config import Config, EmbedderConfig, IndexConfig, StoreConfig, load_config
from promptembed.guard import (
    EF_NAME,
    META_DIMENSION,
    check_compatible,
    cosine_from_distance,
    space_of,
)
from promptembed.identity import of_embedder
from promptembed.readers import READERS, Part, Skip, read_parts
from promptembed.registry import shared_embedder

if TYPE_CHECKING:
    from promptembed.embedder import PromptEmbedder

log = logging.getLogger(__name__)
SUFFIXES = tuple(READERS)  # what has a reader; anything else is reported as skipped
_GET_PAGE = 5000
LOCK_NAME = ".promptembed-write.lock"
Outcome = Literal["indexed", "unchanged", "skipped", "failed"]


class CollectionNotFoundError(ValueError):
    """The config's collection does not exist (``query`` never creates one).

    Example:
        >>> query("bees", {"store": {"path": "empty-db"}})  # doctest: +SKIP
        Traceback (most recent call last):
        CollectionNotFoundError: collection 'promptembed' does not exist ...

    """


class StoreBusyError(RuntimeError):
    """Another process holds the embedded store's write lock."""


@dataclass(frozen=True)
class Chunk:
    """One chunk of one source file.

    Example:
        >>> chunk_text("notes/a.txt", "Bees dance.")[0].source  # doctest: +SKIP
        'notes/a.txt'

    """

    id: str
    source: str
    index: int
    text: str
    source_hash: str
    namespace: str = ""
    page: int | None = None

    @property
    def metadata(self) -> dict[str, Any]:
        """What is stored next to the chunk in Chroma (``page`` only for paged files)."""
        meta: dict[str, Any] = {
            "source": self.source,
            "chunk": self.index,
            "source_hash": self.source_hash,
            "namespace": self.namespace,  # its presence marks today's keys (migration)
        }
        if self.page is not None:
            meta["page"] = self.page
        return meta


@dataclass
class FileOutcome:
    """What happened to one file: ``status`` and, for skips and failures, ``detail``."""

    path: str
    source: str
    status: Outcome = "indexed"
    detail: str = ""
    chunks: int = 0
    embedded: int = 0
    deleted: int = 0


@dataclass
class IndexStats:
    """What an indexing run did, in total and per file (``outcomes``).

    Example:
        >>> index_paths(["corpus"], "promptembed.toml").embedded  # doctest: +SKIP
        0

    """

    files: int = 0
    chunks: int = 0
    embedded: int = 0
    deleted: int = 0
    unchanged_files: int = 0
    pruned: int = 0
    migrated: int = 0
    model_loaded: bool = False  # this run loaded the weights (never when nothing is new)
    sources: list[str] = field(default_factory=list)
    outcomes: list[FileOutcome] = field(default_factory=list)

    def count(self, status: Outcome) -> int:
        """How many files ended with ``status``."""
        return sum(o.status == status for o in self.outcomes)

    @property
    def problems(self) -> list[FileOutcome]:
        """The skipped and failed files (what ``--strict`` refuses)."""
        return [o for o in self.outcomes if o.status in ("skipped", "failed")]


@dataclass(frozen=True)
class Found:
    """A file found under the paths: its key, its pre-0.2 key and where it is."""

    source: str
    path: Path
    legacy: str
    namespace: str = ""


def resolve_root(config: Any, root: str | Path | None = None) -> Path:
    """The folder source keys are relative to (see the module docstring)."""
    if root is not None:
        return Path(root).resolve()
    if isinstance(config, str | Path):
        return Path(config).resolve().parent
    cfg = load_config(config)
    if cfg.store is not None and cfg.store.path is not None:
        return Path(cfg.store.path).expanduser().resolve().parent
    return Path.cwd()


def _key(file: Path, root: Path) -> str:
    try:
        return Path(os.path.relpath(file.resolve(), root)).as_posix()
    except ValueError:  # another drive on Windows: no relative path exists
        return file.resolve().as_posix()


def find_files(
    paths: Iterable[str | Path], root: Path | None = None, namespace: str | None = None
) -> list[Found]:
    """Every file under ``paths`` (hidden files and folders excepted), sorted by key.

    Args:
        paths: Files and directories.
        root: Keys are paths relative to it (default: the working directory).
        namespace: Keys are ``<namespace>:<path inside the argument>`` instead.

    Raises:
        FileNotFoundError: A path does not exist.

    """
    root = (root or Path.cwd()).resolve()
    found: dict[str, Found] = {}
    for raw in paths:
        path = Path(raw)
        if path.is_dir():
            files = [
                (f, f.relative_to(path).as_posix())
                for f in sorted(path.rglob("*"))
                if f.is_file() and not any(p.startswith(".") for p in f.relative_to(path).parts)
            ]
            legacy_dir = f"{path.resolve().name}/"
        elif path.is_file():
            files, legacy_dir = [(path, path.name)], ""
        else:
            raise FileNotFoundError(f"no such file or directory: {path}")
        for file, inside in files:
            key = f"{namespace}:{inside}" if namespace else _key(file, root)
            found[key] = Found(key, file, legacy_dir + inside, namespace or "")
    return sorted(found.values(), key=lambda f: f.source)


@functools.lru_cache(maxsize=8)
def _splitters(index: IndexConfig) -> tuple[Any, Any]:
    require("llama_index.core", "llama-index")
    from llama_index.core.node_parser import MarkdownNodeParser, SentenceSplitter

    sentences = SentenceSplitter(chunk_size=index.chunk_size, chunk_overlap=index.chunk_overlap)
    return MarkdownNodeParser(), sentences


def chunk_parts(
    source: str, parts: Sequence[Part], index: IndexConfig | None = None, namespace: str = ""
) -> list[Chunk]:
    """Cut one file's parts (pages) into chunks with stable ids."""
    from llama_index.core import Document

    index = index or IndexConfig()
    markdown, sentences = _splitters(index)
    is_markdown = source.lower().endswith((".md", ".markdown"))
    pieces: list[tuple[str, int | None]] = []
    for part in parts:
        sections = [part.text]
        if is_markdown:
            nodes = markdown.get_nodes_from_documents([Document(text=part.text)])
            sections = [n.get_content() for n in nodes]
        pieces += [(c, part.page) for s in sections for c in sentences.split_text(s) if c.strip()]
    whole = "\x0c".join(p.text for p in parts)  # form feed: a page break
    source_hash = hashlib.sha256(whole.encode("utf-8")).hexdigest()
    out = []
    for i, (chunk, page) in enumerate(pieces):
        key = f"{source}\x00{i}\x00{chunk}".encode()
        id_ = hashlib.sha256(key).hexdigest()[:32]
        out.append(Chunk(id_, source, i, chunk, source_hash, namespace, page))
    return out


def chunk_text(source: str, text: str, index: IndexConfig | None = None) -> list[Chunk]:
    """Cut one file's text into chunks with stable ids.

    Example:
        >>> [c.text for c in chunk_text("a.txt", "One. Two.")]  # doctest: +SKIP
        ['One. Two.']

    """
    return chunk_parts(source, [Part(text)], index)


@dataclass
class Plan:
    """The chunks of every readable file and the outcome of every file found."""

    sources: dict[str, list[Chunk]] = field(default_factory=dict)
    outcomes: dict[str, FileOutcome] = field(default_factory=dict)
    legacy: dict[str, str] = field(default_factory=dict)  # source key -> pre-0.2 key


def plan_files(
    paths: Iterable[str | Path],
    index: IndexConfig | None = None,
    *,
    root: Path | None = None,
    namespace: str | None = None,
) -> Plan:
    """Read and chunk every file under ``paths``; unreadable ones get their outcome."""
    plan = Plan()
    for found in find_files(paths, root, namespace):
        outcome = FileOutcome(str(found.path), found.source)
        plan.outcomes[found.source] = outcome
        try:
            chunks = chunk_parts(found.source, read_parts(found.path), index, found.namespace)
        except Skip as skip:
            outcome.status, outcome.detail = "skipped", str(skip)
            continue
        except Exception as error:  # one bad file must not stop the run
            outcome.status, outcome.detail = "failed", f"{type(error).__name__}: {error}"
            continue
        if not chunks:
            outcome.status, outcome.detail = "skipped", "empty"
            continue
        outcome.chunks = len(chunks)
        plan.sources[found.source] = chunks
        plan.legacy[found.source] = found.legacy
    return plan


def plan_sources(
    paths: Iterable[str | Path],
    index: IndexConfig | None = None,
    *,
    root: Path | None = None,
    namespace: str | None = None,
) -> dict[str, list[Chunk]]:
    """The chunks of each indexable file under ``paths``, keyed by source."""
    return plan_files(paths, index, root=root, namespace=namespace).sources


def plan_corpus(
    paths: Iterable[str | Path],
    index: IndexConfig | None = None,
    *,
    root: Path | None = None,
    namespace: str | None = None,
) -> list[Chunk]:
    """Every chunk of every file under ``paths``: what the collection should hold."""
    planned = plan_sources(paths, index, root=root, namespace=namespace)
    return [c for chunks in planned.values() for c in chunks]


# -- the store: lock, checked open without the model, reads, the two write paths ----------


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


def _stored_dimension(collection: Any) -> int | None:
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

    from promptembed.chroma import make_client

    client = make_client(store)
    try:
        collection = client.get_collection(store.collection, embedding_function=None)
    except (NotFoundError, ValueError):
        return None
    if dimension is None:
        dimension = _stored_dimension(collection) or 0
    check_compatible(
        collection.name,
        collection.metadata,
        collection.configuration_json,
        collection.count(),
        embedder,
        dimension,
    )
    return collection


def _stored(collection: Any, where: dict[str, Any] | None = None) -> Iterator[dict[str, Any]]:
    """``{"id", "metadatas"}`` of every stored record matching ``where``, paged."""
    offset = 0
    while True:
        got = collection.get(where=where, include=["metadatas"], limit=_GET_PAGE, offset=offset)
        for id_, meta in zip(got["ids"], got["metadatas"]):
            yield {"id": id_, "metadatas": meta or {}}
        if len(got["ids"]) < _GET_PAGE:
            return
        offset += _GET_PAGE


def _existing_ids(collection: Any, sources: Sequence[str]) -> dict[str, set[str]]:
    """Ids already stored per source (paged)."""
    out: dict[str, set[str]] = {s: set() for s in sources}
    if not sources:
        return out
    for row in _stored(collection, {"source": {"$in": list(sources)}}):
        out.setdefault(str(row["metadatas"].get("source", "")), set()).add(row["id"])
    return out


def upsert_chunks(collection: Any, chunks: Sequence[Chunk], vectors: Any) -> None:
    """Store chunks with their vectors: the one place where indexing writes records."""
    if len(chunks):
        collection.upsert(
            ids=[c.id for c in chunks],
            embeddings=vectors,
            documents=[c.text for c in chunks],
            metadatas=[c.metadata for c in chunks],
        )


def delete_chunks(collection: Any, ids: Sequence[str]) -> int:
    """Remove records by id: the one place where indexing deletes (stale, pruned, re-keyed)."""
    ids = list(ids)
    for start in range(0, len(ids), _GET_PAGE):
        collection.delete(ids=ids[start : start + _GET_PAGE])
    return len(ids)


def migrate_legacy(collection: Any, plan: Plan) -> int:
    """Re-key chunks stored under pre-0.2 source keys, reusing their stored vectors.

    A legacy record moves to the file's current key when the file's content is
    unchanged (same ``source_hash``) and the chunk is the same text at the same
    position; otherwise it is left as is (``prune`` removes it). Upsert, then delete.

    Returns:
        How many chunks were re-keyed.
    """
    by_legacy = {plan.legacy[s]: s for s in plan.sources}
    if not by_legacy:
        return 0
    # Metadata first: vectors are read only for records that really carry an old key.
    old_ids = [
        row["id"]
        for row in _stored(collection, {"source": {"$in": list(by_legacy)}})
        if "namespace" not in row["metadatas"]  # today's keys can equal legacy ones
    ]
    moved: list[tuple[Chunk, Any, str]] = []
    include = ["metadatas", "documents", "embeddings"]
    for start in range(0, len(old_ids), _GET_PAGE):
        got = collection.get(ids=old_ids[start : start + _GET_PAGE], include=include)
        for id_, meta, doc, vector in zip(
            got["ids"], got["metadatas"], got["documents"], got["embeddings"]
        ):
            chunks = plan.sources[by_legacy[str(meta.get("source"))]]
            position = int(meta.get("chunk", -1))
            if meta.get("source_hash") != chunks[0].source_hash:
                continue  # the file changed: its old chunks are stale (prune removes them)
            if 0 <= position < len(chunks) and chunks[position].text == doc:
                moved.append((chunks[position], vector, id_))
    if moved:
        upsert_chunks(collection, [m[0] for m in moved], [list(m[1]) for m in moved])
        delete_chunks(collection, [old for chunk, _, old in moved if old != chunk.id])
        log.info("re-keyed %d chunks stored under pre-0.2 source keys", len(moved))
    return len(moved)


def prune_missing(
    collection: Any,
    paths: Iterable[str | Path],
    keep: Iterable[str],
    *,
    root: Path | None = None,
    namespace: str | None = None,
) -> int:
    """Delete chunks whose source lies under a directory of ``paths`` but is not in ``keep``.

    Only directory arguments prune. A stored record is under a directory when its key
    starts with the directory's key prefix (same namespace), or, for a record with a
    pre-0.2 key, with ``<directory name>/``.

    Returns:
        How many chunks were deleted.
    """
    root = (root or Path.cwd()).resolve()
    dirs = [Path(p) for p in paths if Path(p).is_dir()]
    if not dirs:
        return 0
    ns = namespace or ""
    prefixes = tuple(
        f"{ns}:" if ns else ("" if _key(d, root) == "." else _key(d, root) + "/") for d in dirs
    )
    legacy = tuple(f"{d.resolve().name}/" for d in dirs)
    kept = set(keep)
    gone = []
    for row in _stored(collection):
        meta = row["metadatas"]
        source = str(meta.get("source", ""))
        if source in kept:
            continue
        if "namespace" in meta:
            under = meta["namespace"] == ns and source.startswith(prefixes)
        else:
            under = source.startswith(legacy)
        if under:
            gone.append(row["id"])
    if gone:
        log.info(
            "pruned %d chunks of files no longer under %s", len(gone), ", ".join(map(str, dirs))
        )
    return delete_chunks(collection, gone)


# -- the run ----------------------------------------------------------------------------


@dataclass
class _Run:
    """State of one run: what is stored, what is left to embed, per source."""

    collection: Any
    plan: Plan
    existing: dict[str, set[str]]
    todo: dict[str, list[Chunk]]
    stats: IndexStats

    def finish(self, source: str) -> None:
        """All new chunks of ``source`` are stored: now remove its stale ones."""
        outcome = self.plan.outcomes[source]
        stale = sorted(self.existing[source] - {c.id for c in self.plan.sources[source]})
        outcome.deleted = delete_chunks(self.collection, stale)
        self.stats.deleted += outcome.deleted
        outcome.status = "indexed" if outcome.embedded or stale else "unchanged"
        log.info(
            "%s: %d chunks, %d embedded, %d removed",
            source,
            outcome.chunks,
            outcome.embedded,
            outcome.deleted,
        )

    def fail(self, source: str, error: BaseException) -> None:
        """Embedding ``source`` failed: its old chunks stay, the run goes on."""
        outcome = self.plan.outcomes[source]
        outcome.status, outcome.detail = "failed", f"{type(error).__name__}: {error}"
        self.todo[source] = []


def _batches(run: _Run, size: int) -> Iterator[list[Chunk]]:
    """Chunks to embed, many files per batch, skipping sources that failed meanwhile."""
    batch: list[Chunk] = []
    for source, chunks in list(run.todo.items()):
        for chunk in chunks:
            if run.plan.outcomes[source].status == "failed":
                break
            batch.append(chunk)
            if len(batch) == size:
                yield batch
                batch = []
    if batch:
        yield batch


def _embed_batch(run: _Run, embedder: PromptEmbedder, batch: list[Chunk]) -> tuple[list, Any]:
    """Vectors of a batch; if it fails, each source's chunks alone, dropping failed ones."""
    try:
        return batch, embedder.embed([c.text for c in batch], kind="document")
    except Exception:
        kept: list[Chunk] = []
        vectors: list[Any] = []
        for source in dict.fromkeys(c.source for c in batch):
            mine = [c for c in batch if c.source == source]
            try:
                vectors.extend(embedder.embed([c.text for c in mine], kind="document"))
                kept += mine
            except Exception as error:
                run.fail(source, error)
        return kept, vectors


def _embed_and_store(
    run: _Run,
    embedder: PromptEmbedder,
    batch_size: int,
    progress: Callable[[int, int], None] | None,
) -> None:
    """Embed the missing chunks across files; finish each source once it is whole."""
    left = {s: len(chunks) for s, chunks in run.todo.items()}
    for source in [s for s, n in left.items() if n == 0]:
        run.finish(source)
    total = sum(left.values())
    for batch in _batches(run, batch_size):
        kept, vectors = _embed_batch(run, embedder, batch)
        upsert_chunks(run.collection, kept, vectors)
        run.stats.embedded += len(kept)
        for chunk in kept:
            run.plan.outcomes[chunk.source].embedded += 1
            left[chunk.source] -= 1
            if left[chunk.source] == 0:
                run.finish(chunk.source)
        if progress is not None:
            progress(run.stats.embedded, total)


def _load(
    cfg: Config, embedder: PromptEmbedder | None, on_stage: Callable[[str], None] | None
) -> PromptEmbedder:
    if embedder is not None:
        return embedder
    if on_stage is not None:
        on_stage(f"loading model {cfg.embedder.model}")
    start = time.perf_counter()
    loaded = shared_embedder(cfg.embedder)
    log.info("loaded %s in %.1fs", cfg.embedder.model, time.perf_counter() - start)
    return loaded


def index_paths(
    paths: Sequence[str | Path],
    config: str | Path | dict[str, Any] | Config,
    *,
    embedder: PromptEmbedder | None = None,
    batch_size: int = 256,
    progress: Callable[[int, int], None] | None = None,
    prune: bool = False,
    root: str | Path | None = None,
    namespace: str | None = None,
    on_stage: Callable[[str], None] | None = None,
) -> IndexStats:
    """Chunk, embed and upsert files into the config's collection; idempotent, crash-safe.

    Args:
        paths: Files and directories (readers: ``.md``, ``.markdown``, ``.txt``, ``.pdf``,
            ``.html``, ``.htm``; other files are reported as skipped).
        config: A :class:`Config`, TOML path or dict with a ``store``.
        embedder: An already loaded embedder to reuse (default: loaded only if
            something needs embedding).
        batch_size: Chunks (of any files) per embedding call and upsert.
        progress: Called as ``progress(done, total)`` with chunks embedded so far.
        prune: Also delete the chunks of files deleted from the given directories
            (after everything else is stored, so a crash never loses a live chunk).
        root: Source keys are paths relative to it (default: see module docstring).
        namespace: Key sources as ``<namespace>:<path inside the argument>`` instead.
        on_stage: Called with a description when a slow stage starts (model loading).

    Returns:
        :class:`IndexStats` with one :class:`FileOutcome` per file found.

    Raises:
        promptembed.guard.EmbedderConflictError: If the collection holds another
            embedder's vectors (nothing is written).
        StoreBusyError: Another process is writing to the embedded store.

    Example:
        >>> index_paths(["examples/corpus"], "examples/promptembed.toml")  # doctest: +SKIP
        IndexStats(files=10, chunks=14, embedded=14, ...)

    """
    from promptembed.chroma import open_checked_collection

    cfg = load_config(config)
    if cfg.store is None:
        raise ValueError("the config has no [store] table: add one with `path` or `host`/`port`")
    base = resolve_root(config, root)
    plan = plan_files(paths, cfg.index, root=base, namespace=namespace)
    stats = IndexStats(files=len(plan.outcomes), sources=list(plan.sources))
    stats.outcomes = list(plan.outcomes.values())
    stats.chunks = sum(len(v) for v in plan.sources.values())
    ecfg = embedder.config if embedder is not None else cfg.embedder
    dim = embedder.dimension if embedder is not None else None
    with store_lock(cfg.store):
        collection = open_existing_collection(cfg.store, ecfg, dim)
        existing: dict[str, set[str]] = {s: set() for s in plan.sources}
        if collection is not None:
            stats.migrated = migrate_legacy(collection, plan)
            existing = _existing_ids(collection, list(plan.sources))
        todo = {s: [c for c in ch if c.id not in existing[s]] for s, ch in plan.sources.items()}
        if any(todo.values()):
            stats.model_loaded = embedder is None
            embedder = _load(cfg, embedder, on_stage)
            _, collection, _ = open_checked_collection(cfg, embedder)
        if progress is not None:
            progress(0, sum(len(v) for v in todo.values()))
        if collection is not None:
            run = _Run(collection, plan, existing, todo, stats)
            _embed_and_store(run, embedder, batch_size, progress)  # type: ignore[arg-type]
            if prune:
                keep = plan.outcomes  # a skipped or failed file keeps its chunks
                stats.pruned = prune_missing(
                    collection, paths, keep, root=base, namespace=namespace
                )
            from promptembed.retrieval import sync_store

            sync_store(cfg, collection)  # hybrid: the lexical side follows what Chroma holds
    stats.unchanged_files = stats.count("unchanged")
    return stats


@dataclass(frozen=True)
class Hit:
    """One ranked chunk of a query; ``score`` is the cosine similarity.

    Example:
        >>> query("bees", "promptembed.toml", k=1)[0].source  # doctest: +SKIP
        'corpus/honeybees.md'

    """

    rank: int
    score: float
    source: str
    chunk: int
    text: str
    id: str
    page: int | None = None


def open_for_reading(
    cfg: Config, embedder: PromptEmbedder | None = None
) -> tuple[Any, PromptEmbedder]:
    """The existing collection and a loaded embedder it accepts; creates nothing.

    Raises:
        CollectionNotFoundError: The collection does not exist (says how to create it).
        promptembed.guard.EmbedderConflictError: It holds another embedder's vectors.

    """
    if cfg.store is None:
        raise ValueError("the config has no [store] table: add one with `path` or `host`/`port`")
    ecfg = embedder.config if embedder is not None else cfg.embedder
    collection = open_existing_collection(cfg.store, ecfg)
    if collection is None:
        where = cfg.store.path or f"{cfg.store.host}:{cfg.store.port}"
        raise CollectionNotFoundError(
            f"collection {cfg.store.collection!r} does not exist in {where}; create it with "
            "`promptembed index FILES_OR_DIRS --config CONFIG` (same store and collection)"
        )
    embedder = embedder or shared_embedder(cfg.embedder)
    # Checked again with the loaded weights and precision, which the config alone lacks.
    check_compatible(
        collection.name,
        collection.metadata,
        collection.configuration_json,
        collection.count(),
        of_embedder(embedder),
        embedder.dimension,
    )
    return collection, embedder


def query(
    text: str,
    config: str | Path | dict[str, Any] | Config,
    *,
    k: int = 5,
    embedder: PromptEmbedder | None = None,
) -> list[Hit]:
    """The ``k`` nearest chunks to ``text``; ``score`` is the cosine similarity.

    Never creates or changes a collection.

    Raises:
        CollectionNotFoundError: The collection does not exist (says how to create it).
        promptembed.store.EmbedderConflictError: It holds another embedder's vectors.

    """
    cfg = load_config(config)
    collection, embedder = open_for_reading(cfg, embedder)
    space = space_of(collection)  # an adopted drop-in store may use l2 or ip
    vector = embedder.embed([text], kind="query")
    with store_lock(cfg.store):
        res = collection.query(
            query_embeddings=vector, n_results=k, include=["documents", "metadatas", "distances"]
        )
    return [
        _hit(rank, id_, doc, meta or {}, cosine_from_distance(space, float(dist)))
        for rank, (id_, doc, meta, dist) in enumerate(
            zip(res["ids"][0], res["documents"][0], res["metadatas"][0], res["distances"][0]), 1
        )
    ]


def _hit(rank: int, id_: str, doc: str | None, meta: dict[str, Any], score: float) -> Hit:
    page = meta.get("page")
    return Hit(
        rank,
        score,
        str(meta.get("source", "?")),
        int(meta.get("chunk", -1)),
        doc or "",
        id_,
        int(page) if page is not None else None,
    )
