"""LlamaIndex adapter: :class:`PromptEmbedding` and :func:`open_index`.

Requires the ``llama-index`` extra (``pip install 'promptembed[llama-index]'``).
Importing it registers promptembed's Chroma embedding function when chromadb is
installed.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any

from promptembed._optional import register_chroma, require

require("llama_index.core", "llama-index")

from llama_index.core.base.embeddings.base import BaseEmbedding  # noqa: E402
from llama_index.core.bridge.pydantic import (  # noqa: E402
    ConfigDict,
    PrivateAttr,
    field_serializer,
)

from promptembed._adapter import AdapterFields, text_list  # noqa: E402
from promptembed.config import EmbedderConfig  # noqa: E402

if TYPE_CHECKING:
    from pathlib import Path

    from promptembed.config import Config
    from promptembed.embedder import PromptEmbedder

__all__ = ["PromptEmbedding", "PromptRetriever", "open_index", "open_retriever"]

register_chroma()


def _chroma_collection(owner: Any) -> Any:
    """The Chroma collection behind an index or pipeline on the call stack."""
    for name in ("_vector_store", "vector_store"):
        store = getattr(owner, name, None)
        if type(store).__name__ == "ChromaVectorStore":
            return getattr(store, "_collection", None)
    return None


_WRITERS = (_chroma_collection, ("llama_index",))


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
        return config.stored()

    @classmethod
    def class_name(cls) -> str:
        """Name LlamaIndex records when serialising."""
        return "PromptEmbedding"

    def get_text_embedding_batch(
        self, texts: list[str], show_progress: bool = False, **kwargs: Any
    ) -> list[list[float]]:
        """LlamaIndex's batch call; a bare string is refused, not split into letters."""
        return super().get_text_embedding_batch(text_list(texts), show_progress, **kwargs)

    def _get_query_embedding(self, query: str) -> list[float]:
        return self.embedder.embed(query, kind="query").tolist()

    def _get_text_embedding(self, text: str) -> list[float]:
        self._guard(*_WRITERS)
        return self.embedder.embed(text, kind="document").tolist()

    def _get_text_embeddings(self, texts: list[str]) -> list[list[float]]:
        self._guard(*_WRITERS)
        return self.embedder.embed(list(texts), kind="document").tolist()

    async def _aget_query_embedding(self, query: str) -> list[float]:
        return await asyncio.to_thread(self._get_query_embedding, query)

    async def _aget_text_embedding(self, text: str) -> list[float]:
        self._guard(*_WRITERS)
        return await asyncio.to_thread(self._get_text_embedding, text)

    async def _aget_text_embeddings(self, texts: list[str]) -> list[list[float]]:
        self._guard(*_WRITERS)
        return await asyncio.to_thread(self._get_text_embeddings, texts)


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
    from llama_index.vector_stores.chroma import ChromaVectorStore

    from promptembed.chroma import open_checked_collection

    _, collection, embedder = open_checked_collection(config, embedder)
    vector_store = ChromaVectorStore(chroma_collection=collection)
    storage = StorageContext.from_defaults(vector_store=vector_store)
    return VectorStoreIndex.from_vector_store(
        vector_store,
        embed_model=PromptEmbedding.from_embedder(embedder),
        storage_context=storage,
    )


# -- hybrid retrieval ------------------------------------------------------------------------
from llama_index.core.retrievers import BaseRetriever  # noqa: E402


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
        super().__init__(**kwargs)

    def _retrieve(self, query_bundle: Any) -> list[Any]:
        from llama_index.core.schema import NodeWithScore, TextNode

        from promptembed.retrieval import retrieve

        return [
            NodeWithScore(
                node=TextNode(
                    id_=hit.id,
                    text=hit.text,
                    metadata={"source": hit.source, "chunk": hit.chunk},
                ),
                score=hit.score,
            )
            for hit in retrieve(self._config, query_bundle.query_str, self._k)
        ]


def open_retriever(config: str | Path | dict[str, Any] | Config, k: int = 4) -> PromptRetriever:
    """A ``BaseRetriever`` over the config's store with its ``[retrieval]`` mode and fusion.

    The store and its lexical index are opened (and checked) now, not on the first query.
    """
    from promptembed.config import load_config
    from promptembed.retrieval import open_retriever as open_core

    cfg = load_config(config)
    open_core(cfg)
    return PromptRetriever(cfg, k=k)
