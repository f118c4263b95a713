"""Chroma adapter: :class:`PromptEmbeddingFunction` and :func:`open_collection`.

Requires the ``chroma`` extra (``pip install 'promptembed[chroma]'``). Importing this
module registers the function with Chroma under the name ``promptembed``, so a
collection created with it can be reopened (in any process that imported
``promptembed.chroma``) without passing the function: Chroma rebuilds it from the
config stored with the collection.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from promptembed.store import EF_NAME, require

require("chromadb", "chroma")

from chromadb.api.types import Documents, EmbeddingFunction, Embeddings, Space  # noqa: E402
from chromadb.utils.embedding_functions import register_embedding_function  # noqa: E402

from promptembed.config import IDENTITY_FIELDS, Config, EmbedderConfig  # noqa: E402
from promptembed.store import embedder_config, open_checked_collection  # noqa: E402
from promptembed.store import shared_embedder as _shared_embedder  # noqa: E402

if TYPE_CHECKING:
    from pathlib import Path

    from promptembed.embedder import PromptEmbedder

__all__ = ["PromptEmbeddingFunction", "open_collection"]


@register_embedding_function
class PromptEmbeddingFunction(EmbeddingFunction[Documents]):
    """Chroma embedding function backed by a :class:`~promptembed.PromptEmbedder`.

    Takes the same keyword arguments as ``PromptEmbedder`` (or ``config=`` /
    ``embedder=``). Documents use the document template, ``embed_query`` the query
    template. The weights load on first use and are shared per config in a process.

    Args:
        model: Alias, hub id, directory or .gguf.
        config: A whole :class:`EmbedderConfig` instead of keyword fields.
        embedder: An already loaded embedder to use as is.
        **fields: Other :class:`EmbedderConfig` fields.

    Example:
        >>> import chromadb  # doctest: +SKIP
        >>> ef = PromptEmbeddingFunction("gemma-3-270m", template="ke")  # doctest: +SKIP
        >>> col = chromadb.PersistentClient("db").create_collection(
        ...     "docs", embedding_function=ef)  # doctest: +SKIP
        >>> col.add(ids=["1"], documents=["Chroma stores vectors."])  # doctest: +SKIP
        >>> col.query(query_texts=["vector store"], n_results=1)["ids"]  # doctest: +SKIP
        [['1']]

    """

    def __init__(
        self,
        model: str | None = None,
        *,
        config: EmbedderConfig | None = None,
        embedder: PromptEmbedder | None = None,
        **fields: Any,
    ) -> None:
        if embedder is not None:
            if config is not None or fields or model is not None:
                raise TypeError("pass either embedder= or config fields, not both")
            self._config = embedder.config
        else:
            self._config = embedder_config(model, config, **fields)
        self._embedder = embedder

    @property
    def config(self) -> EmbedderConfig:
        """The embedder configuration."""
        return self._config

    @property
    def embedder(self) -> PromptEmbedder:
        """The underlying embedder (loaded on first access)."""
        if self._embedder is None:
            self._embedder = _shared_embedder(self._config)
        return self._embedder

    def __call__(self, input: Documents) -> Embeddings:
        """Embed documents with the document template."""
        return list(self.embedder.embed(list(input), kind="document"))

    def embed_query(self, input: Documents) -> Embeddings:
        """Embed queries with the query template."""
        return list(self.embedder.embed(list(input), kind="query"))

    @staticmethod
    def name() -> str:
        """The name Chroma stores with the collection: ``promptembed``."""
        return EF_NAME

    def default_space(self) -> Space:
        """Cosine: the vectors are L2-normalised directions."""
        return "cosine"

    def supported_spaces(self) -> list[Space]:
        """Cosine first; inner product and L2 rank alike on normalised vectors."""
        return ["cosine", "ip", "l2"]

    def get_config(self) -> dict[str, Any]:
        """The config Chroma persists: never includes ``trust_remote_code``."""
        out: dict[str, Any] = {"embedder": self._config.stored()}
        if self._embedder is not None:
            out["dimension"] = self._embedder.dimension
        return out

    @staticmethod
    def build_from_config(config: dict[str, Any]) -> PromptEmbeddingFunction:
        """Rebuild from a stored config; ``trust_remote_code`` is always off."""
        PromptEmbeddingFunction.validate_config(config)
        fields = dict(config.get("embedder", {}))
        fields.pop("trust_remote_code", None)
        return PromptEmbeddingFunction(config=EmbedderConfig(**fields, trust_remote_code=False))

    @staticmethod
    def validate_config(config: dict[str, Any]) -> None:
        """Check that a stored config is a promptembed embedder config."""
        if not isinstance(config, dict) or not isinstance(config.get("embedder"), dict):
            raise ValueError(f"not a promptembed embedding function config: {config!r}")
        fields = {k: v for k, v in config["embedder"].items() if k != "trust_remote_code"}
        EmbedderConfig(**fields)

    def validate_config_update(
        self, old_config: dict[str, Any], new_config: dict[str, Any]
    ) -> None:
        """Refuse updates that would change the vectors (the identity fields)."""
        old = old_config.get("embedder", {})
        new = new_config.get("embedder", {})
        changed = [k for k in IDENTITY_FIELDS if k in new and new.get(k) != old.get(k)]
        if changed:
            raise ValueError(
                "changing " + ", ".join(changed) + " would mix vectors from two embedders "
                "in one collection; create a new collection instead"
            )

    def __repr__(self) -> str:
        return f"PromptEmbeddingFunction(config={self._config!r})"


def open_collection(
    config: str | Path | dict[str, Any] | Config, embedder: PromptEmbedder | None = None
) -> Any:
    """Open or create the config's Chroma collection with the embedding function set.

    Args:
        config: A :class:`Config`, TOML path or dict with ``embedder`` and ``store``.
        embedder: An already loaded embedder to reuse.

    Returns:
        A ``chromadb`` Collection; ``add(documents=...)`` and ``query(query_texts=...)``
        embed through promptembed.

    Raises:
        promptembed.store.EmbedderConflictError: If the collection was built by another
            embedder (the collection is left untouched).

    Example:
        >>> col = open_collection("promptembed.toml")  # doctest: +SKIP
        >>> col.query(query_texts=["what is chroma?"], n_results=3)  # doctest: +SKIP

    """
    return open_checked_collection(config, embedder)[1]
