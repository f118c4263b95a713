"""LlamaIndex adapter: :class:`PromptEmbedding` and :func:`open_index`.

Requires the ``llama-index`` extra (``pip install 'promptembed[llama-index]'``).
Importing it registers promptembed's Chroma embedding function when chromadb is
installed.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from promptembed._util.optional import available, require
from promptembed.identity import stored_fields

require("llama_index.core", "llama-index")

from llama_index.core.base.embeddings.base import BaseEmbedding
from llama_index.core.bridge.pydantic import (
    ConfigDict,
    PrivateAttr,
    field_serializer,
)
from llama_index.core.postprocessor.types import BaseNodePostprocessor
from llama_index.core.retrievers import BaseRetriever
from llama_index.core.schema import BaseNode, MetadataMode

from promptembed._util.inputs import one_text, text_list
from promptembed.adapters import AdapterFields, RerankFields
from promptembed.config import EmbedderConfig, load_config
from promptembed.retrieval import HybridRetriever
from promptembed.retrieval import open_retriever as open_core
from promptembed.store.precomputed import TAG, check_precomputed, remember, tag_for

if TYPE_CHECKING:
    from pathlib import Path

    from promptembed.config import Config
    from promptembed.engine.embedder import PromptEmbedder

if available("chromadb"):
    # Registers promptembed's embedding function with Chroma, so a collection any
    # adapter made reopens by name in this process.
    from promptembed.store.function import open_checked_collection

__all__ = [
    "CheckedChromaVectorStore",
    "PromptEmbedding",
    "PromptReranker",
    "PromptRetriever",
    "open_index",
    "open_retriever",
]


def _chroma_collection(owner: Any) -> Any:
    """The Chroma collection behind an index, retriever or pipeline on the call stack."""
    try:
        from llama_index.vector_stores.chroma import ChromaVectorStore
    except ImportError:  # no Chroma integration installed: no Chroma store to find
        return None
    for name in ("_vector_store", "vector_store"):
        store = getattr(owner, name, None)
        if isinstance(store, ChromaVectorStore):  # subclasses are guarded alike
            return getattr(store, "_collection", None)
    return None


# Who writes to, or queries, a collection: found on the call stack by the guard.
_STORES = (_chroma_collection, ("llama_index",))


class PromptEmbedding(AdapterFields, BaseEmbedding):
    """LlamaIndex embedding from a generative LLM through a prompt (promptembed).

    Built from the same keyword arguments as :class:`~promptembed.PromptEmbedder`
    (gathered into ``config``) or from ``config=``; the argument names of
    ``HuggingFaceEmbedding`` work too (``model_name``, ``query_instruction``,
    ``text_instruction``, ``normalize``, ...; see :mod:`promptembed._adapter`).
    ``embed_batch_size`` sets how many texts LlamaIndex hands over per call. Text
    (documents) use the document template, queries the query template. ``to_dict()``
    stores the config without ``trust_remote_code``, and ``from_dict`` never turns it
    on. Inserting into an index over a ``ChromaVectorStore`` checks the collection
    first: vectors of another embedder are never mixed in.

    Example:
        >>> from llama_index.core import Settings  # doctest: +SKIP
        >>> Settings.embed_model = PromptEmbedding(model_name="gemma-3-270m")  # doctest: +SKIP
        >>> len(Settings.embed_model.get_query_embedding("hi"))  # doctest: +SKIP
        640

    """

    model_config = ConfigDict(extra="forbid", protected_namespaces=())

    _embedder: Any = PrivateAttr(default=None)

    @classmethod
    def _framework_input(cls, data: dict[str, Any]) -> dict[str, Any]:
        data = {k: v for k, v in data.items() if k != "class_name"}
        config = data.get("config")
        if config is not None and "model_name" in data:
            # A serialised embedding carries both; they must agree.
            model = config.model if isinstance(config, EmbedderConfig) else config.get("model")
            if data["model_name"] not in (None, model):
                raise ValueError(f"model_name={data['model_name']!r} and config model={model!r}")
            data.pop("model_name")
        return data

    @classmethod
    def _framework_output(cls, data: dict[str, Any]) -> dict[str, Any]:
        config = data.get("config")
        model = config.model if isinstance(config, EmbedderConfig) else (config or {}).get("model")
        return {**data, "model_name": model or EmbedderConfig().model}

    @classmethod
    def from_dict(cls, data: dict[str, Any], **kwargs: Any) -> PromptEmbedding:
        """Rebuild from ``to_dict()``; ``trust_remote_code`` is never restored."""
        data = {**data, **kwargs}
        if isinstance(data.get("config"), dict):
            data["config"] = {k: v for k, v in data["config"].items() if k != "trust_remote_code"}
        return super().from_dict(data)

    @field_serializer("config")
    def _store_config(self, config: EmbedderConfig) -> dict[str, Any]:
        return stored_fields(config)

    @classmethod
    def class_name(cls) -> str:
        """Name LlamaIndex records when serialising."""
        return "PromptEmbedding"

    def get_text_embedding_batch(
        self, texts: list[str], show_progress: bool = False, **kwargs: Any
    ) -> list[list[float]]:
        """LlamaIndex's batch call; a bare string is refused, not split into letters."""
        return super().get_text_embedding_batch(text_list(texts), show_progress, **kwargs)

    async def aget_text_embedding_batch(
        self, texts: list[str], show_progress: bool = False, **kwargs: Any
    ) -> list[list[float]]:
        """Like :meth:`get_text_embedding_batch`, async."""
        return await super().aget_text_embedding_batch(text_list(texts), show_progress, **kwargs)

    def get_query_embedding(self, query: str) -> list[float]:
        """LlamaIndex's query call; a list is refused (one query at a time)."""
        return super().get_query_embedding(one_text(query))

    async def aget_query_embedding(self, query: str) -> list[float]:
        """Like :meth:`get_query_embedding`, async."""
        return await super().aget_query_embedding(one_text(query))

    def get_text_embedding(self, text: str) -> list[float]:
        """LlamaIndex's one-text call; a list is refused (use the batch call)."""
        return super().get_text_embedding(one_text(text))

    async def aget_text_embedding(self, text: str) -> list[float]:
        """Like :meth:`get_text_embedding`, async."""
        return await super().aget_text_embedding(one_text(text))

    def __call__(self, nodes: Sequence[BaseNode], **kwargs: Any) -> Sequence[BaseNode]:
        """Embed nodes (as an ingestion step) and tag each with this embedder's identity."""
        return self._tagged(super().__call__(nodes, **kwargs))

    async def acall(self, nodes: Sequence[BaseNode], **kwargs: Any) -> Sequence[BaseNode]:
        """Like :meth:`__call__`, async."""
        return self._tagged(await super().acall(nodes, **kwargs))

    def _tagged(self, nodes: Sequence[BaseNode]) -> Sequence[BaseNode]:
        """Record which embedder made each node's vector, outside the embedded/LLM text."""
        for node in nodes:
            node.metadata[TAG] = tag_for(node.embedding, self.embedder)
            for excluded in (node.excluded_embed_metadata_keys, node.excluded_llm_metadata_keys):
                if TAG not in excluded:
                    excluded.append(TAG)
        return nodes

    def _get_query_embedding(self, query: str) -> list[float]:
        text = one_text(query)
        self._guard(*_STORES)
        return self.embedder.embed(text, kind="query").tolist()

    def _get_text_embedding(self, text: str) -> list[float]:
        return self._get_text_embeddings([one_text(text)])[0]

    def _get_text_embeddings(self, texts: list[str]) -> list[list[float]]:
        items = text_list(texts)
        self._guard(*_STORES)
        vectors = self.embedder.embed(items, kind="document").tolist()
        remember(vectors, self.embedder)
        return vectors

    async def _aget_query_embedding(self, query: str) -> list[float]:
        text = one_text(query)
        self._guard(*_STORES)
        return await asyncio.to_thread(self._get_query_embedding, text)

    async def _aget_text_embedding(self, text: str) -> list[float]:
        return (await self._aget_text_embeddings([one_text(text)]))[0]

    async def _aget_text_embeddings(self, texts: list[str]) -> list[list[float]]:
        items = text_list(texts)
        self._guard(*_STORES)
        return await asyncio.to_thread(self._get_text_embeddings, items)


if available("llama_index.vector_stores.chroma"):
    from llama_index.vector_stores.chroma import ChromaVectorStore

    class CheckedChromaVectorStore(ChromaVectorStore):
        """A ``ChromaVectorStore`` that refuses precomputed vectors of another embedder.

        What :func:`open_index` uses. Nodes that arrive with an embedding (from an
        ingestion pipeline, a docstore, another embed model) are checked against the
        collection's embedder (:mod:`promptembed.store.precomputed`) before anything
        is written; a conflict raises ``EmbedderConflictError`` naming both.

        Example:
            >>> index = open_index("promptembed.toml")  # doctest: +SKIP
            >>> type(index.vector_store).__name__  # doctest: +SKIP
            'CheckedChromaVectorStore'

        """

        _embedder: Any = PrivateAttr(default=None)

        @classmethod
        def for_embedder(
            cls, collection: Any, embedder: PromptEmbedder
        ) -> CheckedChromaVectorStore:
            """A store over ``collection``, which ``embedder`` was admitted to."""
            store = cls(chroma_collection=collection)
            store._embedder = embedder
            return store

        def add(self, nodes: list[BaseNode], **add_kwargs: Any) -> list[str]:
            """Check the nodes' vectors, then add them (nothing is written on a conflict)."""
            check_precomputed(
                self._collection.name,
                self._embedder,
                [
                    (
                        n.get_content(metadata_mode=MetadataMode.EMBED),
                        n.embedding,
                        n.metadata.get(TAG),
                    )
                    for n in nodes
                    if n.embedding is not None
                ],
            )
            return super().add(nodes, **add_kwargs)


def open_index(
    config: str | Path | dict[str, Any] | Config, embedder: PromptEmbedder | None = None
) -> Any:
    """A LlamaIndex ``VectorStoreIndex`` over the config's Chroma collection.

    The index uses a ``ChromaVectorStore`` in a ``StorageContext`` (``index.storage_context``)
    and :class:`PromptEmbedding` as its embed model.

    Args:
        config: A :class:`Config`, TOML path or dict with ``embedder`` and ``store``.
        embedder: An already loaded embedder to reuse.

    Returns:
        ``llama_index.core.VectorStoreIndex``.

    Raises:
        promptembed.guard.EmbedderConflictError: If the collection was built by another
            embedder (the collection is left untouched).

    Example:
        >>> index = open_index("promptembed.toml")  # doctest: +SKIP
        >>> index.insert(Document(text="Chroma stores vectors."))  # doctest: +SKIP
        >>> index.as_retriever(similarity_top_k=3).retrieve("vector db")  # doctest: +SKIP

    """
    require("llama_index.vector_stores.chroma", "llama-index")
    from llama_index.core import StorageContext, VectorStoreIndex

    _, collection, embedder = open_checked_collection(config, embedder)
    vector_store = CheckedChromaVectorStore.for_embedder(collection, embedder)
    storage = StorageContext.from_defaults(vector_store=vector_store)
    return VectorStoreIndex.from_vector_store(
        vector_store,
        embed_model=PromptEmbedding.from_embedder(embedder),
        storage_context=storage,
    )


# -- hybrid retrieval ------------------------------------------------------------------------


class PromptRetriever(BaseRetriever):
    """A LlamaIndex retriever answering with :func:`promptembed.retrieve`'s ranking.

    LlamaIndex's ``QueryFusionRetriever(mode="relative_score")`` computes the same
    weighted min-max fusion, but the fusion lives in one place, the core, so every
    face returns the same ranking; each hit becomes a ``TextNode`` scored by the
    fused score.

    Example:
        >>> retriever = open_retriever("promptembed.toml", k=3)  # doctest: +SKIP
        >>> retriever.retrieve("how do bees talk?")[0].node.metadata["source"]  # doctest: +SKIP
        'corpus/honeybees.md'

    """

    def __init__(self, config: Config, k: int = 4, **kwargs: Any) -> None:
        self._config, self._k = config, k
        # Held: the core keeps open retrievers weakly, so this one (and its model) stays
        # open exactly as long as this retriever lives.
        self._core: HybridRetriever | None = None
        super().__init__(**kwargs)

    def core(self) -> HybridRetriever:
        """The core retriever answering for this one (opened on first use)."""
        if self._core is None:
            self._core = open_core(self._config)
        return self._core

    def _retrieve(self, query_bundle: Any) -> list[Any]:
        from llama_index.core.schema import NodeWithScore, TextNode

        return [
            NodeWithScore(
                node=TextNode(
                    id_=hit.id,
                    text=hit.text,
                    metadata={"source": hit.source, "chunk": hit.chunk},
                ),
                score=hit.score,
            )
            for hit in self.core().search(query_bundle.query_str, self._k)
        ]


def open_retriever(config: str | Path | dict[str, Any] | Config, k: int = 4) -> PromptRetriever:
    """A ``BaseRetriever`` over the config's store with its ``[retrieval]`` mode and fusion.

    The store and its lexical index are opened (and checked) now, not on the first query.
    """
    retriever = PromptRetriever(load_config(config), k=k)
    retriever.core()
    return retriever


# -- reranking -------------------------------------------------------------------------------


class PromptReranker(RerankFields, BaseNodePostprocessor):
    """A LlamaIndex node postprocessor that reranks by the model's query likelihood.

    The same reranking as ``[retrieval.rerank]`` (:mod:`promptembed.retrieval.rerank`),
    for nodes from any retriever: the top ``rerank.top_k`` are scored by how well each
    predicts the query under the embedder's model and mixed with their retrieval
    ``score`` (their order when a node has none). Each node's ``score`` becomes the
    reranked score; ``top_n`` keeps the best n.

    Example:
        >>> reranker = PromptReranker(model="gemma-3-270m", top_n=3)  # doctest: +SKIP
        >>> engine = index.as_query_engine(node_postprocessors=[reranker])  # doctest: +SKIP

    """

    model_config = ConfigDict(extra="forbid", protected_namespaces=())

    _embedder: Any = PrivateAttr(default=None)

    @classmethod
    def class_name(cls) -> str:
        """LlamaIndex's name for the component (used when it is serialised)."""
        return "PromptReranker"

    def _postprocess_nodes(self, nodes: list[Any], query_bundle: Any = None) -> list[Any]:
        if query_bundle is None:
            raise ValueError("PromptReranker needs the query: pass query_bundle or query_str")
        if not nodes:
            return []
        texts = text_list([n.node.get_content(metadata_mode=MetadataMode.NONE) for n in nodes])
        order = self.reorder(one_text(query_bundle.query_str), texts, [n.score for n in nodes])
        return [nodes[i].model_copy(update={"score": score}) for i, score in order]
