"""Index files into the config's Chroma collection: per-file outcomes, losing nothing.

* Every file ends as ``indexed``, ``unchanged``, ``skipped`` (with the reason: no
  reader for its type, empty, not text) or ``failed`` (with the error); one bad file
  never stops the run. Readers live in :mod:`promptembed.ingest.readers`.
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

import logging
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, TypeVar

from promptembed.config import Config, EmbedderConfig, StoreConfig, load_config
from promptembed.ingest.planning import (
    Chunk,
    FileOutcome,
    IndexStats,
    Plan,
    plan_files,
    resolve_root,
    source_key,
)
from promptembed.registry import shared_embedder
from promptembed.retrieval import sync_store
from promptembed.store.collections import (
    CHROMA_DB,
    GET_PAGE,
    open_existing_collection,
    store_lock,
    stored_records,
)
from promptembed.store.function import open_checked_collection

if TYPE_CHECKING:
    from promptembed.engine.embedder import PromptEmbedder

log = logging.getLogger(__name__)

S = TypeVar("S", bound=IndexStats)
Progress = Callable[[int, int], None]  # progress(done, total)


# -- the store: lock, checked open without the model, reads, the two write paths ----------


def existing_ids(
    collection: Any, sources: Sequence[str], plan: Plan | None = None
) -> dict[str, set[str]]:
    """Ids stored per source (paged) that hold what the plan says they hold.

    With ``plan``, a record whose stored text differs from the planned chunk of the same
    id (changed behind the indexer's back, e.g. by a framework's ``update_document``)
    does not count as stored: it is embedded and written again.
    """
    out: dict[str, set[str]] = {s: set() for s in sources}
    if not sources:
        return out
    wanted = {c.id: c.text for s in sources for c in (plan.sources.get(s, []) if plan else [])}
    where = {"source": {"$in": list(sources)}}
    for row in stored_records(collection, where, documents=plan is not None):
        if row["id"] in wanted and row["document"] != wanted[row["id"]]:
            log.info("chunk %s was changed in the store: restoring it", row["id"])
            continue
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
    for start in range(0, len(ids), GET_PAGE):
        collection.delete(ids=ids[start : start + GET_PAGE])
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
        for row in stored_records(collection, {"source": {"$in": list(by_legacy)}})
        if "namespace" not in row["metadatas"]  # today's keys can equal legacy ones
    ]
    moved: list[tuple[Chunk, Any, str]] = []
    include = ["metadatas", "documents", "embeddings"]
    for start in range(0, len(old_ids), GET_PAGE):
        got = collection.get(ids=old_ids[start : start + GET_PAGE], include=include)
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
        f"{ns}:" if ns else ("" if source_key(d, root) == "." else source_key(d, root) + "/")
        for d in dirs
    )
    legacy = tuple(f"{d.resolve().name}/" for d in dirs)
    kept = set(keep)
    gone = []
    for row in stored_records(collection):
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
class IndexRun:
    """State of one run: what is stored, what is left to embed, per source.

    A :class:`ChunkWriter` reports each chunk it stored with :meth:`stored` and each
    source it could not embed with :meth:`fail`; the run deletes a source's stale chunks
    once all its new chunks are stored, and never for a failed source.
    """

    collection: Any
    plan: Plan
    existing: dict[str, set[str]]
    todo: dict[str, list[Chunk]]
    stats: IndexStats
    left: dict[str, int] = field(init=False)  # chunks of each source not yet stored
    total: int = field(init=False)  # chunks to embed, for progress

    def __post_init__(self) -> None:
        self.left = {s: len(chunks) for s, chunks in self.todo.items()}
        self.total = sum(self.left.values())

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

    def finish_whole(self) -> None:
        """Finish every source that has nothing to embed."""
        for source in [s for s, n in self.left.items() if n == 0]:
            self.finish(source)

    def stored(self, chunks: Sequence[Chunk]) -> None:
        """``chunks`` are embedded and upserted: count them, finish sources now whole."""
        self.stats.embedded += len(chunks)
        for chunk in chunks:
            self.plan.outcomes[chunk.source].embedded += 1
            self.left[chunk.source] -= 1
            if self.left[chunk.source] == 0:
                self.finish(chunk.source)

    def fail(self, source: str, error: BaseException) -> None:
        """Embedding ``source`` failed: its old chunks stay, the run goes on."""
        outcome = self.plan.outcomes[source]
        outcome.status, outcome.detail = "failed", f"{type(error).__name__}: {error}"
        self.todo[source] = []


class ChunkWriter(Protocol):
    """What differs between indexing in this process and on Ray: embedding and writing.

    :func:`run_index` checks the stored collection against :attr:`embedder` (and
    :attr:`dimension`) without loading a model; only when something is missing does it
    call :meth:`prepare` and then :meth:`write`.
    """

    @property
    def embedder(self) -> EmbedderConfig:
        """The embedder whose vectors the collection must hold."""
        ...

    @property
    def dimension(self) -> int | None:
        """Its vector dimension, if known without loading it."""
        ...

    def load(self) -> None:
        """Load what a config can still fail on (the model), before a new store exists."""
        ...

    def prepare(self, run: IndexRun) -> None:
        """Get ready to write (e.g. load the model, open or create ``run.collection``)."""
        ...

    def write(self, run: IndexRun, progress: Progress | None) -> None:
        """Embed and upsert ``run.todo``, reporting to ``run.stored`` and ``run.fail``.

        Leaves ``run.collection`` set to the collection written to.
        """
        ...


def _batches(run: IndexRun, size: int) -> Iterator[list[Chunk]]:
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


def _embed_batch(
    run: IndexRun, embedder: PromptEmbedder, batch: list[Chunk]
) -> tuple[list[Chunk], Any]:
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


def _load(
    cfg: Config, embedder: PromptEmbedder | None, on_stage: Callable[[str], None] | None
) -> PromptEmbedder:
    """``embedder`` if given, else the config's shared one, loaded now."""
    if embedder is not None:
        return embedder
    if on_stage is not None:
        on_stage(f"loading model {cfg.embedder.model}")
    start = time.perf_counter()
    loaded = shared_embedder(cfg.embedder)
    log.info("loaded %s in %.1fs", cfg.embedder.model, time.perf_counter() - start)
    return loaded


@dataclass
class InProcessWriter:
    """:class:`ChunkWriter` embedding in this process, many files per batch.

    A batch that fails is retried source by source, so one bad file fails alone.
    """

    cfg: Config
    model: PromptEmbedder | None = None  # loaded by :meth:`prepare` when not given
    batch_size: int = 256
    on_stage: Callable[[str], None] | None = None

    @property
    def embedder(self) -> EmbedderConfig:
        """The given model's config, else the config's."""
        return self.model.config if self.model is not None else self.cfg.embedder

    @property
    def dimension(self) -> int | None:
        """The given model's dimension (unknown until loaded otherwise)."""
        return self.model.dimension if self.model is not None else None

    loaded_here: bool = False

    def load(self) -> None:
        """Load the model now unless it was given."""
        self.loaded_here = self.loaded_here or self.model is None
        self.model = _load(self.cfg, self.model, self.on_stage)

    def prepare(self, run: IndexRun) -> None:
        """Load the model if needed and open (or create) the checked collection."""
        self.load()
        run.stats.model_loaded = self.loaded_here
        _, run.collection, _ = open_checked_collection(self.cfg, self.model)

    def write(self, run: IndexRun, progress: Progress | None) -> None:
        """Embed and upsert batch by batch."""
        assert self.model is not None  # prepare ran
        for batch in _batches(run, self.batch_size):
            kept, vectors = _embed_batch(run, self.model, batch)
            upsert_chunks(run.collection, kept, vectors)
            run.stored(kept)
            if progress is not None:
                progress(run.stats.embedded, run.total)


def _new_store(store: StoreConfig) -> bool:
    """An embedded store that does not exist yet (a Chroma server is never new here)."""
    return store.path is not None and not (Path(store.path).expanduser() / CHROMA_DB).exists()


def _plan_stats(plan: Plan, stats: S) -> S:
    """``stats`` with the plan's counts and its per-file outcomes."""
    stats.files, stats.sources = len(plan.outcomes), list(plan.sources)
    stats.outcomes = list(plan.outcomes.values())
    stats.chunks = sum(len(v) for v in plan.sources.values())
    return stats


def _open_run(cfg: Config, plan: Plan, writer: ChunkWriter, stats: IndexStats) -> IndexRun:
    """The run's starting point: legacy keys re-keyed, stored ids read, the rest to do."""
    assert cfg.store is not None
    collection = open_existing_collection(cfg.store, writer.embedder, writer.dimension)
    existing: dict[str, set[str]] = {s: set() for s in plan.sources}
    if collection is not None:
        stats.migrated = migrate_legacy(collection, plan)
        existing = existing_ids(collection, list(plan.sources), plan)
        _clear_emptied(collection, plan, stats)
    todo = {s: [c for c in ch if c.id not in existing[s]] for s, ch in plan.sources.items()}
    return IndexRun(collection, plan, existing, todo, stats)


def _clear_emptied(collection: Any, plan: Plan, stats: IndexStats) -> None:
    """Remove the stored chunks of files that now hold nothing to index.

    A file emptied (to redact it, say) or turned into something that is not text keeps
    no chunk: its old text must not stay searchable. A file skipped for a missing extra,
    or one that failed to read, keeps its chunks (the file may be fine).
    """
    cleared = [s for s, o in plan.outcomes.items() if o.status == "skipped" and _no_content(o)]
    stored = existing_ids(collection, cleared)
    for source in cleared:
        outcome = plan.outcomes[source]
        outcome.deleted = delete_chunks(collection, sorted(stored[source]))
        if outcome.deleted:
            outcome.detail += f"; its {outcome.deleted} old chunks were removed"
            stats.deleted += outcome.deleted


def _no_content(outcome: FileOutcome) -> bool:
    return outcome.detail.startswith(("empty", "not text"))


def run_index(
    paths: Sequence[str | Path],
    cfg: Config,
    writer: ChunkWriter,
    stats: S,
    *,
    root: Path,
    progress: Progress | None = None,
    prune: bool = False,
    namespace: str | None = None,
) -> S:
    """The one indexing run, in this process or on Ray; ``writer`` embeds and writes.

    Plans the files, reads which chunk ids are stored, has ``writer`` embed and upsert
    the missing ones, deletes each source's stale chunks once its new ones are stored,
    prunes (after everything else, so a crash never loses a live chunk) and brings the
    lexical side in line. A skipped or failed file keeps its stored chunks.

    Args:
        paths: Files and directories.
        cfg: The loaded config; ``cfg.store`` must be set.
        writer: Embeds and upserts the missing chunks.
        stats: An empty stats object to fill (:class:`IndexStats` or a subclass).
        root: Source keys are paths relative to it.
        progress: Called as ``progress(done, total)`` with chunks embedded so far.
        prune: Also delete the chunks of files deleted from the given directories.
        namespace: Key sources as ``<namespace>:<path inside the argument>`` instead.

    Returns:
        ``stats``, filled.

    """
    assert cfg.store is not None
    plan = plan_files(paths, cfg.index, root=root, namespace=namespace)
    _plan_stats(plan, stats)
    if _new_store(cfg.store) and any(plan.sources.values()):
        # A config the model refuses (layer, max_length, blocks, a missing model, ...)
        # fails here, before the store's database and lock file exist.
        writer.load()
    with store_lock(cfg.store):
        run = _open_run(cfg, plan, writer, stats)
        if any(run.todo.values()):
            writer.prepare(run)
        if progress is not None:
            progress(0, run.total)
        run.finish_whole()
        if any(run.todo.values()):
            writer.write(run, progress)
        if run.collection is not None:
            if prune:
                keep = plan.outcomes  # a skipped or failed file keeps its chunks
                stats.pruned = prune_missing(
                    run.collection, paths, keep, root=root, namespace=namespace
                )
            # Hybrid: the side indexes follow Chroma. The sparse side embeds its missing
            # rows with this process's model (on Ray, the driver loads one if needed).
            local = writer.model if isinstance(writer, InProcessWriter) else None
            sync_store(cfg, run.collection, local)
    stats.unchanged_files = stats.count("unchanged")
    return stats


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
        promptembed.store.guard.EmbedderConflictError: If the collection holds another
            embedder's vectors (nothing is written).
        StoreBusyError: Another process is writing to the embedded store.

    Example:
        >>> index_paths(["examples/corpus"], "examples/promptembed.toml")  # doctest: +SKIP
        IndexStats(files=10, chunks=14, embedded=14, ...)

    """
    cfg = load_config(config)
    if cfg.store is None:
        raise ValueError("the config has no [store] table: add one with `path` or `host`/`port`")
    writer = InProcessWriter(cfg, embedder, batch_size, on_stage)
    base = resolve_root(config, root)
    return run_index(
        paths,
        cfg,
        writer,
        IndexStats(),
        root=base,
        progress=progress,
        prune=prune,
        namespace=namespace,
    )
