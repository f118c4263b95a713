"""The read path: open an existing collection for its embedder, and rank chunks."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from promptembed.config import Config, load_config
from promptembed.identity import of_embedder
from promptembed.registry import shared_embedder
from promptembed.store.collections import (
    CollectionNotFoundError,
    open_existing_collection,
    store_lock,
)
from promptembed.store.guard import (
    check_compatible,
    cosine_from_distance,
    space_of,
)

if TYPE_CHECKING:
    from promptembed.engine.embedder import PromptEmbedder


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
        make_hit(rank, id_, doc, meta or {}, cosine_from_distance(space, float(dist)))
        for rank, (id_, doc, meta, dist) in enumerate(
            zip(res["ids"][0], res["documents"][0], res["metadatas"][0], res["distances"][0]), 1
        )
    ]


def make_hit(rank: int, id_: str, doc: str | None, meta: dict[str, Any], score: float) -> Hit:
    """A :class:`Hit` from a stored record (its source, chunk and page from the metadata)."""
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
