"""promptembed's Chroma embedding function, registered with Chroma as ``promptembed``."""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import TYPE_CHECKING, Any

from promptembed._util.inputs import text_list
from promptembed._util.optional import require
from promptembed.config import (
    Config,
    EmbedderConfig,
    hash_in_name,
    load_config,
)
from promptembed.config.hf_names import translate_hf_arguments
from promptembed.identity import VectorIdentity, calibration_hash, stored_fields
from promptembed.registry import embedder_config, shared_embedder
from promptembed.store.collections import keep_calibration, make_client, open_store_paths, store_of
from promptembed.store.guard import EF_NAME, SharedEmbedderMixin, admit, stored_identity

require("chromadb", "chroma")

from chromadb.api.types import Documents, EmbeddingFunction, Embeddings, Space
from chromadb.utils.embedding_functions import register_embedding_function

from promptembed.config import resolve_calibration

if TYPE_CHECKING:
    from promptembed.engine.embedder import PromptEmbedder


def _calling_collection(owner: Any) -> Any:
    """A Chroma collection on the call stack (``add``/``upsert``/``query`` embedding texts)."""
    from chromadb.api.models.CollectionCommon import CollectionCommon

    return owner if isinstance(owner, CollectionCommon) else None


# Who writes to, or queries, a collection: found on the call stack by the guard.
_STORES = (_calling_collection, ("chromadb",))


@register_embedding_function
class PromptEmbeddingFunction(SharedEmbedderMixin, EmbeddingFunction[Documents]):
    """Chroma embedding function backed by a :class:`~promptembed.PromptEmbedder`.

    Takes the same keyword arguments as ``PromptEmbedder`` (or ``config=`` /
    ``embedder=``). Documents use the document template, ``embed_query`` the query
    template. The weights load on first use and are shared per config in a process.
    ``model_name=`` works as in Chroma's ``SentenceTransformerEmbeddingFunction``.

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
            # Hugging Face names (model_name=, ...) as the other adapters take them.
            named = translate_hf_arguments({"model": model, **fields} if model else fields)
            self._config = embedder_config(config=config, **named)
        self._embedder = embedder

    @property
    def config(self) -> EmbedderConfig:
        """The embedder configuration."""
        return self._config

    def __call__(self, input: Documents) -> Embeddings:
        """Embed documents with the document template (checked against the collection)."""
        items = text_list(input)
        self._guard(*_STORES)
        return list(self.embedder.embed(items, kind="document"))

    def embed_query(self, input: Documents) -> Embeddings:
        """Embed queries with the query template (checked against the collection queried).

        Chroma hands queries over as a list, so this takes many texts, like ``__call__``.
        """
        items = text_list(input)
        self._guard(*_STORES)
        return list(self.embedder.embed(items, kind="query"))

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
        """The config Chroma persists: portable and never with ``trust_remote_code``.

        A calibration is kept by file name and content hash, never by path. In client
        mode it is the server's config, which makes the vectors (the URL is never kept).
        """
        config = self.embedder.config if self._config.server else self._config
        out: dict[str, Any] = {"embedder": stored_fields(config)}
        if config.calibration:
            out["calibration_sha256"] = calibration_hash(config.calibration)
        if self._embedder is not None:
            out["dimension"] = self._embedder.dimension
        return out

    @staticmethod
    def build_from_config(config: dict[str, Any]) -> PromptEmbeddingFunction:
        """Rebuild from a stored config; ``trust_remote_code`` is always off.

        A calibration is found by name (see :func:`~promptembed.config.resolve_calibration`:
        the search path, or the copy kept inside an embedded store open in this process)
        and must have the recorded content hash.
        """
        PromptEmbeddingFunction.validate_config(config)
        fields = {k: v for k, v in config["embedder"].items() if k != "trust_remote_code"}
        if fields.get("calibration"):
            sha = config.get("calibration_sha256") or hash_in_name(fields["calibration"])
            # If missing here, it is looked up again (and reported) when the model loads.
            with contextlib.suppress(FileNotFoundError):
                found = resolve_calibration(
                    fields["calibration"], sha256=sha, stores=open_store_paths()
                )
                fields["calibration"] = str(found)
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
        """Refuse updates that would change the vectors (:mod:`promptembed.identity`)."""
        diff = _stored_identity(old_config).differences(_stored_identity(new_config))
        if diff:
            raise ValueError(
                "changing " + ", ".join(diff) + " would mix vectors from two embedders "
                "in one collection; create a new collection instead"
            )

    def __repr__(self) -> str:
        return f"PromptEmbeddingFunction(config={self._config!r})"


def _stored_identity(config: dict[str, Any]) -> VectorIdentity:
    """The identity of a stored function config (config fields and calibration hash)."""
    identity, _, _ = stored_identity(None, {"embedding_function": {"name": EF_NAME,
                                                                    "config": config}})  # fmt: skip
    assert identity is not None
    return identity


def open_checked_collection(
    config: str | Path | dict[str, Any] | Config,
    embedder: PromptEmbedder | None = None,
) -> tuple[Any, Any, PromptEmbedder]:
    """Open (or create) the config's Chroma collection for its embedder, checked.

    A new collection is created with :class:`PromptEmbeddingFunction` (so Chroma can
    rebuild the function from the stored config in another process), cosine space and
    promptembed's record. An existing one goes through :func:`promptembed.guard.admit`
    (checked, or verified and adopted); on a mismatch nothing is written.

    Returns:
        ``(client, collection, embedder)``; the collection has the embedding function set.

    Raises:
        EmbedderConflictError: If the collection holds another embedder's vectors.
        ValueError: If the config has no store.

    """
    from chromadb.errors import NotFoundError

    cfg = load_config(config)
    store = store_of(cfg)
    if embedder is None:
        embedder = shared_embedder(cfg.embedder)
    client = make_client(store)
    function = PromptEmbeddingFunction(embedder=embedder)
    try:
        existing = client.get_collection(store.collection, embedding_function=None)
    except (NotFoundError, ValueError):
        existing = None
    if existing is None:
        existing = client.get_or_create_collection(
            store.collection,
            embedding_function=function,
            configuration={"hnsw": {"space": "cosine"}},
        )
    admit(existing, embedder)  # also re-checks a collection another process just made
    keep_calibration(store, embedder.config.calibration)  # the store carries what it needs
    try:
        collection = client.get_collection(store.collection, embedding_function=function)
    except ValueError:
        # Made with Chroma's default function (e.g. a LlamaIndex drop-in store), which
        # Chroma will not rebind; the guard has verified that its vectors are ours.
        collection = client.get_collection(store.collection, embedding_function=None)
        collection._embedding_function = function
    return client, collection, embedder
