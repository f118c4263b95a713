"""LangChain adapter: :class:`PromptEmbeddings` and :func:`open_vectorstore`.

Requires the ``langchain`` extra (``pip install 'promptembed[langchain]'``).
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any

from promptembed.store import require

require("langchain_core", "langchain")

from langchain_core.embeddings import Embeddings  # noqa: E402
from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, model_validator  # noqa: E402

from promptembed.config import Config, EmbedderConfig, load_config  # noqa: E402
from promptembed.store import open_checked_collection, shared_embedder  # noqa: E402

if TYPE_CHECKING:
    from pathlib import Path

    from promptembed.embedder import PromptEmbedder

__all__ = ["PromptEmbeddings", "PromptRetriever", "open_retriever", "open_vectorstore"]


class PromptEmbeddings(BaseModel, Embeddings):
    """LangChain embeddings from a generative LLM through a prompt (promptembed).

    Built from the same keyword arguments as :class:`~promptembed.PromptEmbedder`
    (``model``, ``template``, ``query_template``, ``layer``, ``device``, ...), which are
    gathered into the ``config`` field, or from a whole ``config=``. Documents use the
    document template and queries the query template (the same unless
    ``query_template`` is set). The weights are shared per config in a process.

    Example:
        >>> emb = PromptEmbeddings(model="gemma-3-270m", template="ke")  # doctest: +SKIP
        >>> len(emb.embed_query("What is Chroma?"))  # doctest: +SKIP
        640
        >>> vectors = emb.embed_documents(["Chroma stores vectors.", "你好"])  # doctest: +SKIP

    """

    model_config = ConfigDict(extra="forbid", protected_namespaces=())

    config: EmbedderConfig = Field(
        default_factory=EmbedderConfig,
        description="The embedder configuration (model, template, query_template, layer, "
        "pooling, device, dtype, max_length, batch_size, ...). Flat keyword arguments "
        "such as `model=` or `template=` are gathered into it.",
    )
    _embedder: PromptEmbedder | None = PrivateAttr(default=None)

    @model_validator(mode="before")
    @classmethod
    def _gather_fields(cls, data: Any) -> Any:
        if not isinstance(data, dict):
            return data
        flat = {k: v for k, v in data.items() if k in EmbedderConfig.model_fields}
        if not flat:
            return data
        if "config" in data:
            raise TypeError("pass either config= or embedder keyword fields, not both")
        rest = {k: v for k, v in data.items() if k not in flat}
        return {**rest, "config": flat}

    @classmethod
    def from_config(cls, config: str | Path | dict[str, Any] | Config) -> PromptEmbeddings:
        """Build from a promptembed config (TOML path, dict or :class:`Config`)."""
        return cls(config=load_config(config).embedder)

    @classmethod
    def from_embedder(cls, embedder: PromptEmbedder) -> PromptEmbeddings:
        """Wrap an already loaded :class:`~promptembed.PromptEmbedder`."""
        self = cls(config=embedder.config)
        self._embedder = embedder
        return self

    @property
    def embedder(self) -> PromptEmbedder:
        """The underlying embedder (loaded on first access)."""
        if self._embedder is None:
            self._embedder = shared_embedder(self.config)
        return self._embedder

    def embed_documents(self, texts: list[str]) -> list[list[float]]:
        """Embed documents with the document template."""
        return self.embedder.embed(list(texts), kind="document").tolist()

    def embed_query(self, text: str) -> list[float]:
        """Embed one query with the query template."""
        return self.embedder.embed(text, kind="query").tolist()

    async def aembed_documents(self, texts: list[str]) -> list[list[float]]:
        """Like :meth:`embed_documents`, in a worker thread (the event loop stays free)."""
        return await asyncio.to_thread(self.embed_documents, texts)

    async def aembed_query(self, text: str) -> list[float]:
        """Like :meth:`embed_query`, in a worker thread (the event loop stays free)."""
        return await asyncio.to_thread(self.embed_query, text)


def open_vectorstore(
    config: str | Path | dict[str, Any] | Config, embedder: PromptEmbedder | None = None
) -> Any:
    """A ``langchain_chroma.Chroma`` store over the config's collection, embeddings wired in.

    Args:
        config: A :class:`Config`, TOML path or dict with ``embedder`` and ``store``.
        embedder: An already loaded embedder to reuse.

    Returns:
        ``langchain_chroma.Chroma``.

    Raises:
        promptembed.store.EmbedderConflictError: If the collection was built by another
            embedder (the collection is left untouched).

    Example:
        >>> store = open_vectorstore("promptembed.toml")  # doctest: +SKIP
        >>> store.add_texts(["Chroma stores vectors."])  # doctest: +SKIP
        >>> store.similarity_search("vector database", k=1)  # doctest: +SKIP

    """
    require("langchain_chroma", "langchain")
    from langchain_chroma import Chroma

    client, collection, embedder = open_checked_collection(config, embedder)
    return Chroma(
        client=client,
        collection_name=collection.name,
        embedding_function=PromptEmbeddings.from_embedder(embedder),
    )


# -- hybrid retrieval ------------------------------------------------------------------------
from langchain_core.retrievers import BaseRetriever  # noqa: E402


class PromptRetriever(BaseRetriever):
    """A LangChain retriever answering with :func:`promptembed.retrieve`'s ranking.

    Dense, BM25 and their fusion are computed once, in :mod:`promptembed.retrieval`;
    this class only wraps each hit as a ``Document`` (its metadata holds ``id``,
    ``source``, ``chunk`` and the fused ``score``).

    Example:
        >>> retriever = open_retriever("promptembed.toml", k=3)  # doctest: +SKIP
        >>> retriever.invoke("how do bees talk?")[0].metadata["source"]  # doctest: +SKIP
        'corpus/honeybees.md'

    """

    config: Any
    k: int = 4

    def _get_relevant_documents(self, query: str, *, run_manager: Any = None) -> list[Any]:
        from langchain_core.documents import Document

        from promptembed.retrieval import retrieve

        return [
            Document(
                id=hit.id,
                page_content=hit.text,
                metadata={
                    "id": hit.id,
                    "source": hit.source,
                    "chunk": hit.chunk,
                    "score": hit.score,
                },
            )
            for hit in retrieve(self.config, query, self.k)
        ]


def open_retriever(config: str | Path | dict[str, Any] | Config, k: int = 4) -> PromptRetriever:
    """A ``BaseRetriever`` over the config's store with its ``[retrieval]`` mode and fusion.

    The store and its lexical index are opened (and checked) now, not on the first query.
    """
    from promptembed.retrieval import open_retriever as open_core

    cfg = load_config(config)
    open_core(cfg)
    return PromptRetriever(config=cfg, k=k)
