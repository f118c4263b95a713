"""LangChain adapter: :class:`PromptEmbeddings` and :func:`open_vectorstore`.

Requires the ``langchain`` extra (``pip install 'promptembed[langchain]'``). Importing
it registers promptembed's Chroma embedding function when chromadb is installed.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any

from promptembed._optional import register_chroma, require

require("langchain_core", "langchain")

from langchain_core.embeddings import Embeddings  # noqa: E402
from pydantic import ConfigDict, PrivateAttr  # noqa: E402

from promptembed._adapter import AdapterFields, text_list  # noqa: E402

if TYPE_CHECKING:
    from pathlib import Path

    from promptembed.config import Config
    from promptembed.embedder import PromptEmbedder

__all__ = ["PromptEmbeddings", "PromptRetriever", "open_retriever", "open_vectorstore"]

register_chroma()


def _chroma_collection(owner: Any) -> Any:
    """The collection of a ``langchain_chroma.Chroma`` store on the call stack."""
    if type(owner).__module__.startswith("langchain_chroma"):
        return getattr(owner, "_collection", None)
    return None


_WRITERS = (_chroma_collection, ("langchain_chroma",))


class PromptEmbeddings(AdapterFields, Embeddings):
    """LangChain embeddings from a generative LLM through a prompt (promptembed).

    Built from the same keyword arguments as :class:`~promptembed.PromptEmbedder`
    (``model``, ``template``, ``query_template``, ``layer``, ``device``, ...), which are
    gathered into the ``config`` field, or from a whole ``config=``. The argument names
    of ``HuggingFaceEmbeddings`` work too (``model_name``, ``model_kwargs``,
    ``encode_kwargs={"prompt": ...}``, ...; see :mod:`promptembed._adapter`). Documents
    use the document template and queries the query template. The weights are shared
    per config in a process. Writing through a ``langchain_chroma.Chroma`` store checks
    the collection first: vectors of another embedder are never mixed in.

    Example:
        >>> emb = PromptEmbeddings(model_name="gemma-3-270m")  # doctest: +SKIP
        >>> len(emb.embed_query("What is Chroma?"))  # doctest: +SKIP
        640
        >>> vectors = emb.embed_documents(["Chroma stores vectors.", "你好"])  # doctest: +SKIP

    """

    model_config = ConfigDict(extra="forbid", protected_namespaces=())

    _embedder: PromptEmbedder | None = PrivateAttr(default=None)

    def embed_documents(self, texts: list[str]) -> list[list[float]]:
        """Embed documents with the document template."""
        items = text_list(texts)
        self._guard(*_WRITERS)
        return self.embedder.embed(items, kind="document").tolist()

    def embed_query(self, text: str) -> list[float]:
        """Embed one query with the query template."""
        return self.embedder.embed(text, kind="query").tolist()

    async def aembed_documents(self, texts: list[str]) -> list[list[float]]:
        """Like :meth:`embed_documents`, in a worker thread (the event loop stays free)."""
        items = text_list(texts)
        self._guard(*_WRITERS)
        return await asyncio.to_thread(self.embed_documents, items)

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
        promptembed.guard.EmbedderConflictError: If the collection was built by another
            embedder (the collection is left untouched).

    Example:
        >>> store = open_vectorstore("promptembed.toml")  # doctest: +SKIP
        >>> store.add_texts(["Chroma stores vectors."])  # doctest: +SKIP
        >>> store.similarity_search("vector database", k=1)  # doctest: +SKIP

    """
    require("langchain_chroma", "langchain")
    from langchain_chroma import Chroma

    from promptembed.chroma import open_checked_collection

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
    from promptembed.config import load_config
    from promptembed.retrieval import open_retriever as open_core

    cfg = load_config(config)
    open_core(cfg)
    return PromptRetriever(config=cfg, k=k)
