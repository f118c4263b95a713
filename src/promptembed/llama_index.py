"""LlamaIndex adapter: :class:`PromptEmbedding` and :func:`open_index`.

Requires the ``llama-index`` extra (``pip install 'promptembed[llama-index]'``).
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any

from promptembed.store import require

require("llama_index.core", "llama-index")

from llama_index.core.base.embeddings.base import BaseEmbedding  # noqa: E402
from llama_index.core.bridge.pydantic import (  # noqa: E402
    Field,
    PrivateAttr,
    field_serializer,
    model_validator,
)

from promptembed.config import Config, EmbedderConfig, load_config  # noqa: E402
from promptembed.store import open_checked_collection, shared_embedder  # noqa: E402

if TYPE_CHECKING:
    from pathlib import Path

    from promptembed.embedder import PromptEmbedder

__all__ = ["PromptEmbedding", "PromptRetriever", "open_index", "open_retriever"]


class PromptEmbedding(BaseEmbedding):
    """LlamaIndex embedding from a generative LLM through a prompt (promptembed).

    Built from the same keyword arguments as :class:`~promptembed.PromptEmbedder`
    (gathered into ``config``) or from ``config=``; ``embed_batch_size`` sets how many
    texts LlamaIndex hands over per call. Text (documents) use the document template,
    queries the query template. ``to_dict()`` stores the config without
    ``trust_remote_code``; the model itself is a private attribute.

    Example:
        >>> from llama_index.core import Settings  # doctest: +SKIP
        >>> Settings.embed_model = PromptEmbedding(model="gemma-3-270m")  # doctest: +SKIP
        >>> len(Settings.embed_model.get_query_embedding("hi"))  # doctest: +SKIP
        640

    """

    config: EmbedderConfig = Field(
        default_factory=EmbedderConfig,
        description="The embedder configuration (model, template, query_template, layer, "
        "pooling, device, dtype, ...). Flat keyword arguments are gathered into it.",
    )
    _embedder: Any = PrivateAttr(default=None)

    @model_validator(mode="before")
    @classmethod
    def _gather_fields(cls, data: Any) -> Any:
        if not isinstance(data, dict):
            return data
        data = {k: v for k, v in data.items() if k != "class_name"}
        flat = {k: v for k, v in data.items() if k in EmbedderConfig.model_fields}
        if flat and "config" in data:
            raise TypeError("pass either config= or embedder keyword fields, not both")
        rest = {k: v for k, v in data.items() if k not in flat}
        if flat:
            rest["config"] = flat
        config = rest.get("config")
        if isinstance(config, dict):
            config = {k: v for k, v in config.items() if k != "trust_remote_code"}
            rest["config"] = config
        model = config.get("model") if isinstance(config, dict) else None
        if isinstance(config, EmbedderConfig):
            model = config.model
        rest.setdefault("model_name", model or EmbedderConfig().model)
        return rest

    @field_serializer("config")
    def _store_config(self, config: EmbedderConfig) -> dict[str, Any]:
        return config.stored()

    @classmethod
    def class_name(cls) -> str:
        """Name LlamaIndex records when serialising."""
        return "PromptEmbedding"

    @classmethod
    def from_config(
        cls, config: str | Path | dict[str, Any] | Config, **kwargs: Any
    ) -> PromptEmbedding:
        """Build from a promptembed config (TOML path, dict or :class:`Config`)."""
        return cls(config=load_config(config).embedder, **kwargs)

    @classmethod
    def from_embedder(cls, embedder: PromptEmbedder, **kwargs: Any) -> PromptEmbedding:
        """Wrap an already loaded :class:`~promptembed.PromptEmbedder`."""
        self = cls(config=embedder.config, **kwargs)
        self._embedder = embedder
        return self

    @property
    def embedder(self) -> PromptEmbedder:
        """The underlying embedder (loaded on first access)."""
        if self._embedder is None:
            self._embedder = shared_embedder(self.config)
        return self._embedder

    def _get_query_embedding(self, query: str) -> list[float]:
        return self.embedder.embed(query, kind="query").tolist()

    def _get_text_embedding(self, text: str) -> list[float]:
        return self.embedder.embed(text, kind="document").tolist()

    def _get_text_embeddings(self, texts: list[str]) -> list[list[float]]:
        return self.embedder.embed(list(texts), kind="document").tolist()

    async def _aget_query_embedding(self, query: str) -> list[float]:
        return await asyncio.to_thread(self._get_query_embedding, query)

    async def _aget_text_embedding(self, text: str) -> list[float]:
        return await asyncio.to_thread(self._get_text_embedding, text)

    async def _aget_text_embeddings(self, texts: list[str]) -> list[list[float]]:
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
        promptembed.store.EmbedderConflictError: If the collection was built by another
            embedder (the collection is left untouched).

    Example:
        >>> index = open_index("promptembed.toml")  # doctest: +SKIP
        >>> index.insert(Document(text="Chroma stores vectors."))  # doctest: +SKIP
        >>> index.as_retriever(similarity_top_k=3).retrieve("vector db")  # doctest: +SKIP

    """
    require("llama_index.vector_stores.chroma", "llama-index")
    from llama_index.core import StorageContext, VectorStoreIndex
    from llama_index.vector_stores.chroma import ChromaVectorStore

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
    from promptembed.retrieval import open_retriever as open_core

    cfg = load_config(config)
    open_core(cfg)
    return PromptRetriever(cfg, k=k)
