"""LangChain adapter: :class:`PromptEmbeddings` and :func:`open_vectorstore`.

Requires the ``langchain`` extra (``pip install 'promptembed[langchain]'``). Importing
it registers promptembed's Chroma embedding function when chromadb is installed.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from promptembed._util.optional import available, require

require("langchain_core", "langchain")

from langchain_core.documents import BaseDocumentCompressor
from langchain_core.embeddings import Embeddings
from langchain_core.retrievers import BaseRetriever
from pydantic import ConfigDict, PrivateAttr

from promptembed._util.inputs import one_text, text_list
from promptembed.adapters import AdapterFields, RerankFields
from promptembed.config import load_config
from promptembed.retrieval import HybridRetriever
from promptembed.retrieval import open_retriever as open_core

if TYPE_CHECKING:
    from collections.abc import Sequence
    from pathlib import Path

    from langchain_core.documents import Document

    from promptembed.config import Config
    from promptembed.engine.embedder import PromptEmbedder

if available("chromadb"):
    # Registers promptembed's embedding function with Chroma, so a collection any
    # adapter made reopens by name in this process.
    from promptembed.store.function import open_checked_collection

__all__ = [
    "CheckedChroma",
    "PromptEmbeddings",
    "PromptReranker",
    "PromptRetriever",
    "open_retriever",
    "open_vectorstore",
]


def _chroma_collection(owner: Any) -> Any:
    """The collection of a ``langchain_chroma.Chroma`` store (or subclass) on the call stack."""
    try:
        from langchain_chroma import Chroma
    except ImportError:  # langchain_chroma not installed: no such store to find
        return None
    return getattr(owner, "_collection", None) if isinstance(owner, Chroma) else None


# Who writes to, or queries, a collection: found on the call stack by the guard.
_STORES = (_chroma_collection, ("langchain_chroma",))


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
        self._guard(*_STORES)
        return self.embedder.embed(items, kind="document").tolist()

    def embed_query(self, text: str) -> list[float]:
        """Embed one query with the query template (checked against the collection queried)."""
        query = one_text(text)
        self._guard(*_STORES)
        return self.embedder.embed(query, kind="query").tolist()

    async def aembed_documents(self, texts: list[str]) -> list[list[float]]:
        """Like :meth:`embed_documents`, in a worker thread (the event loop stays free)."""
        items = text_list(texts)
        self._guard(*_STORES)
        return await asyncio.to_thread(self.embed_documents, items)

    async def aembed_query(self, text: str) -> list[float]:
        """Like :meth:`embed_query`, in a worker thread (the event loop stays free)."""
        query = one_text(text)
        self._guard(*_STORES)
        return await asyncio.to_thread(self.embed_query, query)


if available("langchain_chroma"):
    from langchain_chroma import Chroma

    class CheckedChroma(Chroma):
        """The ``langchain_chroma.Chroma`` store :func:`open_vectorstore` returns.

        Applies promptembed's input rule where the store takes texts: ``add_texts`` (and
        so ``aadd_texts``) refuses a bare ``str`` before anything is written, where the
        base class would store one document per letter.

        Example:
            >>> open_vectorstore("promptembed.toml").add_texts("hello")  # doctest: +SKIP
            Traceback (most recent call last):
            TypeError: expected a list of texts, got one str ...

        """

        def add_texts(
            self,
            texts: Iterable[str],
            metadatas: list[dict] | None = None,
            ids: list[str] | None = None,
            **kwargs: Any,
        ) -> list[str]:
            """``Chroma.add_texts`` with a bare string refused (wrap it in a list)."""
            items = text_list(texts if isinstance(texts, str) else list(texts))
            return super().add_texts(items, metadatas, ids, **kwargs)


def open_vectorstore(
    config: str | Path | dict[str, Any] | Config, embedder: PromptEmbedder | None = None
) -> Any:
    """A ``langchain_chroma.Chroma`` store over the config's collection, embeddings wired in.

    Args:
        config: A :class:`Config`, TOML path or dict with ``embedder`` and ``store``.
        embedder: An already loaded embedder to reuse.

    Returns:
        :class:`CheckedChroma`, a ``langchain_chroma.Chroma``.

    Raises:
        promptembed.guard.EmbedderConflictError: If the collection was built by another
            embedder (the collection is left untouched).

    Example:
        >>> store = open_vectorstore("promptembed.toml")  # doctest: +SKIP
        >>> store.add_texts(["Chroma stores vectors."])  # doctest: +SKIP
        >>> store.similarity_search("vector database", k=1)  # doctest: +SKIP

    """
    require("langchain_chroma", "langchain")
    client, collection, embedder = open_checked_collection(config, embedder)
    return CheckedChroma(
        client=client,
        collection_name=collection.name,
        embedding_function=PromptEmbeddings.from_embedder(embedder),
    )


# -- hybrid retrieval ------------------------------------------------------------------------


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
    # Held: the core keeps open retrievers weakly, so this one (and its model) stays
    # open exactly as long as this retriever lives.
    _core: HybridRetriever | None = PrivateAttr(default=None)

    def core(self) -> HybridRetriever:
        """The core retriever answering for this one (opened on first use)."""
        if self._core is None:
            self._core = open_core(self.config)
        return self._core

    def _get_relevant_documents(self, query: str, *, run_manager: Any = None) -> list[Any]:
        from langchain_core.documents import Document

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
            for hit in self.core().search(query, self.k)
        ]


def open_retriever(config: str | Path | dict[str, Any] | Config, k: int = 4) -> PromptRetriever:
    """A ``BaseRetriever`` over the config's store with its ``[retrieval]`` mode and fusion.

    The store and its lexical index are opened (and checked) now, not on the first query.
    """
    retriever = PromptRetriever(config=load_config(config), k=k)
    retriever.core()
    return retriever


# -- reranking -------------------------------------------------------------------------------


class PromptReranker(RerankFields, BaseDocumentCompressor):
    """A LangChain document compressor that reranks by the model's query likelihood.

    The same reranking as ``[retrieval.rerank]`` (:mod:`promptembed.retrieval.rerank`),
    for documents from any retriever: the top ``rerank.top_k`` are scored by how well
    each predicts the query under the embedder's model and mixed with their first-stage
    ``metadata["score"]`` (their order when not every document has one). Each returned
    document is a copy with ``metadata["relevance_score"]``; ``top_n`` keeps the best n.
    Use it in a ``ContextualCompressionRetriever``.

    Example:
        >>> from langchain_core.documents import Document  # doctest: +SKIP
        >>> reranker = PromptReranker(model="gemma-3-270m", top_n=1)  # doctest: +SKIP
        >>> docs = [Document("Bees dance."), Document("Tea lowers BP.")]  # doctest: +SKIP
        >>> reranker.compress_documents(docs, "tea and BP?")[0].page_content  # doctest: +SKIP
        'Tea lowers BP.'

    """

    model_config = ConfigDict(extra="forbid", protected_namespaces=())

    _embedder: PromptEmbedder | None = PrivateAttr(default=None)

    def compress_documents(
        self, documents: Sequence[Document], query: str, callbacks: Any = None
    ) -> Sequence[Document]:
        """The documents reranked for ``query``, best first, with ``relevance_score``."""
        docs = list(documents)
        if not docs:
            return []
        scores = [_number(d.metadata.get("score")) for d in docs]
        order = self.reorder(one_text(query), text_list([d.page_content for d in docs]), scores)
        return [
            docs[i].model_copy(update={"metadata": {**docs[i].metadata, "relevance_score": s}})
            for i, s in order
        ]


def _number(value: Any) -> float | None:
    """A first-stage score if it is a real number."""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    return None
