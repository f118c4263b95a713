"""Index text and Markdown files into the config's Chroma collection, losing nothing.

* Chunks come from llama-index-core's splitters (``MarkdownNodeParser`` then
  ``SentenceSplitter`` for ``.md``; ``SentenceSplitter`` for ``.txt``).
* A chunk's id is a hash of its source, its position and its text, so an unchanged
  corpus maps to the same ids: re-indexing embeds nothing and adds nothing.
* Per source, new chunks are upserted (in batches) before that source's stale chunks
  are deleted. A run killed at any point therefore leaves only whole, valid chunks,
  and the next run adds what is missing and removes what is stale: it ends with
  exactly the corpus's chunks.
* With ``prune``, chunks of files that were deleted from an indexed directory are
  removed too (off by default: indexing one directory never touches another's chunks).

Requires the ``llama-index`` and ``chroma`` extras.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from promptembed.config import Config, IndexConfig, load_config
from promptembed.store import open_checked_collection, require

if TYPE_CHECKING:
    from promptembed.embedder import PromptEmbedder

log = logging.getLogger(__name__)
SUFFIXES = (".md", ".markdown", ".txt")
_GET_PAGE = 5000


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

    @property
    def metadata(self) -> dict[str, Any]:
        """What is stored next to the chunk in Chroma."""
        return {"source": self.source, "chunk": self.index, "source_hash": self.source_hash}


@dataclass
class IndexStats:
    """What an indexing run did.

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
    sources: list[str] = field(default_factory=list)


def find_files(paths: Iterable[str | Path]) -> list[tuple[str, Path]]:
    """``(source name, path)`` for every .md/.txt file under ``paths``, sorted.

    A directory argument names its files ``<dir name>/<path inside it>``; a file
    argument is named by its file name. Names use ``/`` on every platform.
    """
    found: dict[str, Path] = {}
    for raw in paths:
        path = Path(raw)
        if path.is_dir():
            for file in sorted(path.rglob("*")):
                if file.is_file() and file.suffix.lower() in SUFFIXES:
                    rel = file.relative_to(path).as_posix()
                    found[f"{path.resolve().name}/{rel}"] = file
        elif path.is_file():
            found[path.name] = path
        else:
            raise FileNotFoundError(f"no such file or directory: {path}")
    return sorted(found.items())


def _splitters(index: IndexConfig) -> tuple[Any, Any]:
    require("llama_index.core", "llama-index")
    from llama_index.core.node_parser import MarkdownNodeParser, SentenceSplitter

    sentences = SentenceSplitter(chunk_size=index.chunk_size, chunk_overlap=index.chunk_overlap)
    return MarkdownNodeParser(), sentences


def chunk_text(source: str, text: str, index: IndexConfig | None = None) -> list[Chunk]:
    """Cut one file's text into chunks with stable ids.

    Example:
        >>> [c.text for c in chunk_text("a.txt", "One. Two.")]  # doctest: +SKIP
        ['One. Two.']

    """
    from llama_index.core import Document

    index = index or IndexConfig()
    markdown, sentences = _splitters(index)
    if source.lower().endswith((".md", ".markdown")):
        sections = [
            n.get_content() for n in markdown.get_nodes_from_documents([Document(text=text)])
        ]
    else:
        sections = [text]
    texts = [c for sec in sections for c in sentences.split_text(sec) if c.strip()]
    source_hash = hashlib.sha256(text.encode("utf-8")).hexdigest()
    out = []
    for i, chunk in enumerate(texts):
        key = f"{source}\x00{i}\x00{chunk}".encode()
        out.append(Chunk(hashlib.sha256(key).hexdigest()[:32], source, i, chunk, source_hash))
    return out


def plan_sources(
    paths: Iterable[str | Path], index: IndexConfig | None = None
) -> dict[str, list[Chunk]]:
    """The chunks of each file under ``paths``, keyed by source (one entry per file)."""
    return {s: chunk_text(s, p.read_text(encoding="utf-8"), index) for s, p in find_files(paths)}


def plan_corpus(paths: Iterable[str | Path], index: IndexConfig | None = None) -> list[Chunk]:
    """Every chunk of every file under ``paths``: what the collection should hold."""
    return [c for chunks in plan_sources(paths, index).values() for c in chunks]


def _stored_sources(
    collection: Any, where: dict[str, Any] | None = None
) -> Iterator[tuple[str, str]]:
    """``(id, source)`` of every stored chunk (matching ``where``), read page by page."""
    offset = 0
    while True:
        got = collection.get(where=where, include=["metadatas"], limit=_GET_PAGE, offset=offset)
        for id_, meta in zip(got["ids"], got["metadatas"]):
            yield id_, str((meta or {}).get("source", ""))
        if len(got["ids"]) < _GET_PAGE:
            return
        offset += _GET_PAGE


def _existing_ids(collection: Any, sources: Sequence[str]) -> dict[str, set[str]]:
    """Ids already stored per source (paged)."""
    out: dict[str, set[str]] = {s: set() for s in sources}
    if not sources:
        return out
    for id_, source in _stored_sources(collection, {"source": {"$in": list(sources)}}):
        out.setdefault(source, set()).add(id_)
    return out


def prune_missing(collection: Any, paths: Iterable[str | Path], keep: Iterable[str]) -> int:
    """Delete chunks whose source lies under a directory of ``paths`` but is not in ``keep``.

    Only directory arguments prune: their sources are named ``<dir name>/...``, so a
    file that disappeared from one shows up as a stored source with that prefix.

    Returns:
        How many chunks were deleted.
    """
    roots = tuple(f"{Path(p).resolve().name}/" for p in paths if Path(p).is_dir())
    if not roots:
        return 0
    kept = set(keep)
    gone = [
        id_
        for id_, source in _stored_sources(collection)
        if source.startswith(roots) and source not in kept
    ]
    for start in range(0, len(gone), _GET_PAGE):
        collection.delete(ids=gone[start : start + _GET_PAGE])
    if gone:
        log.info("pruned %d chunks of files no longer under %s", len(gone), ", ".join(roots))
    return len(gone)


def index_paths(
    paths: Sequence[str | Path],
    config: str | Path | dict[str, Any] | Config,
    *,
    embedder: PromptEmbedder | None = None,
    batch_size: int = 64,
    progress: Callable[[int, int], None] | None = None,
    prune: bool = False,
) -> IndexStats:
    """Chunk, embed and upsert files into the config's collection; idempotent, crash-safe.

    Args:
        paths: Files and directories (``.md``, ``.markdown``, ``.txt`` files are taken).
        config: A :class:`Config`, TOML path or dict with a ``store``.
        embedder: An already loaded embedder to reuse.
        batch_size: Chunks embedded and upserted per batch.
        progress: Called as ``progress(done, total)`` with chunks embedded so far.
        prune: Also delete the chunks of files deleted from the given directories
            (after everything else is stored, so a crash never loses a live chunk).

    Returns:
        :class:`IndexStats` of the run (``embedded == 0`` for an unchanged corpus).

    Raises:
        promptembed.store.EmbedderConflictError: If the collection holds another
            embedder's vectors (nothing is written).

    Example:
        >>> index_paths(["examples/corpus"], "examples/promptembed.toml")  # doctest: +SKIP
        IndexStats(files=10, chunks=14, embedded=14, ...)

    """
    cfg = load_config(config)
    planned = plan_sources(paths, cfg.index)
    _, collection, embedder = open_checked_collection(cfg, embedder)
    existing = _existing_ids(collection, list(planned))
    stats = IndexStats(files=len(planned), sources=list(planned))
    todo = {s: [c for c in chunks if c.id not in existing[s]] for s, chunks in planned.items()}
    total = sum(len(v) for v in todo.values())
    stats.chunks = sum(len(v) for v in planned.values())
    if progress is not None:
        progress(0, total)
    for source, chunks in planned.items():
        missing = todo[source]
        for start in range(0, len(missing), batch_size):
            batch = missing[start : start + batch_size]
            vectors = embedder.embed([c.text for c in batch], kind="document")
            collection.upsert(
                ids=[c.id for c in batch],
                embeddings=vectors,
                documents=[c.text for c in batch],
                metadatas=[c.metadata for c in batch],
            )
            stats.embedded += len(batch)
            if progress is not None:
                progress(stats.embedded, total)
        # Only once every new chunk of this source is stored are its old ones removed.
        stale = sorted(existing[source] - {c.id for c in chunks})
        if stale:
            collection.delete(ids=stale)
            stats.deleted += len(stale)
        if not missing and not stale:
            stats.unchanged_files += 1
        log.info(
            "%s: %d chunks, %d embedded, %d removed", source, len(chunks), len(missing), len(stale)
        )
    if prune:
        stats.pruned = prune_missing(collection, paths, planned)
    from promptembed.retrieval import sync_store

    sync_store(cfg, collection)  # hybrid: the lexical side follows what Chroma now holds
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


def query(
    text: str,
    config: str | Path | dict[str, Any] | Config,
    *,
    k: int = 5,
    embedder: PromptEmbedder | None = None,
) -> list[Hit]:
    """The ``k`` nearest chunks to ``text``; ``score`` is the cosine similarity."""
    _, collection, embedder = open_checked_collection(config, embedder)
    vector = embedder.embed([text], kind="query")
    res = collection.query(
        query_embeddings=vector, n_results=k, include=["documents", "metadatas", "distances"]
    )
    hits = []
    for rank, (id_, doc, meta, dist) in enumerate(
        zip(res["ids"][0], res["documents"][0], res["metadatas"][0], res["distances"][0]), 1
    ):
        meta = meta or {}
        hits.append(
            Hit(
                rank,
                1.0 - float(dist),
                str(meta.get("source", "?")),
                int(meta.get("chunk", -1)),
                doc or "",
                id_,
            )
        )
    return hits
