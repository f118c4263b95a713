"""Chroma adapter: :class:`PromptEmbeddingFunction` and :func:`open_collection`.

Requires the ``chroma`` extra (``pip install 'promptembed[chroma]'``). Importing this
module registers the function with Chroma under the name ``promptembed``, so a
collection created with it can be reopened (in any process that imported
``promptembed.chroma``) without passing the function: Chroma rebuilds it from the
config stored with the collection.
"""

from __future__ import annotations

import contextlib
from typing import TYPE_CHECKING, Any

from promptembed._optional import require

require("chromadb", "chroma")

from chromadb.api.types import Documents, EmbeddingFunction, Embeddings, Space  # noqa: E402
from chromadb.utils.embedding_functions import register_embedding_function  # noqa: E402

from promptembed._adapter import (  # noqa: E402
    SharedEmbedderMixin,
    text_list,
    translate_hf_arguments,
)
from promptembed.config import Config, EmbedderConfig, StoreConfig, load_config  # noqa: E402
from promptembed.guard import EF_NAME, EmbedderConflictError, admit  # noqa: E402
from promptembed.identity import VectorIdentity, calibration_hash, hash_in_name  # noqa: E402
from promptembed.registry import embedder_config, shared_embedder  # noqa: E402

if TYPE_CHECKING:
    from pathlib import Path

    from promptembed.embedder import PromptEmbedder

__all__ = ["EmbedderConflictError", "PromptEmbeddingFunction", "open_collection"]


def _calling_collection(owner: Any) -> Any:
    """A Chroma collection on the call stack (``add``/``upsert`` embedding documents)."""
    from chromadb.api.models.CollectionCommon import CollectionCommon

    return owner if isinstance(owner, CollectionCommon) else None


_WRITERS = (_calling_collection, ("chromadb",))


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
        self._guard(*_WRITERS)
        return list(self.embedder.embed(items, kind="document"))

    def embed_query(self, input: Documents) -> Embeddings:
        """Embed queries with the query template."""
        return list(self.embedder.embed(text_list(input), kind="query"))

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

        A calibration is kept by file name and content hash, never by path.
        """
        out: dict[str, Any] = {"embedder": self._config.stored()}
        if self._config.calibration:
            out["calibration_sha256"] = calibration_hash(self._config.calibration)
        if self._embedder is not None:
            out["dimension"] = self._embedder.dimension
        return out

    @staticmethod
    def build_from_config(config: dict[str, Any]) -> PromptEmbeddingFunction:
        """Rebuild from a stored config; ``trust_remote_code`` is always off.

        A calibration is found by name (see
        :func:`~promptembed.calibration.resolve_calibration`) and must have the
        recorded content hash.
        """
        PromptEmbeddingFunction.validate_config(config)
        fields = {k: v for k, v in config["embedder"].items() if k != "trust_remote_code"}
        if fields.get("calibration"):
            from promptembed.calibration import resolve_calibration

            sha = config.get("calibration_sha256") or hash_in_name(fields["calibration"])
            # If missing here, it is looked up again (and reported) when the model loads.
            with contextlib.suppress(FileNotFoundError):
                fields["calibration"] = str(resolve_calibration(fields["calibration"], sha256=sha))
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
        promptembed.guard.EmbedderConflictError: If the collection was built by another
            embedder (the collection is left untouched).

    Example:
        >>> col = open_collection("promptembed.toml")  # doctest: +SKIP
        >>> col.query(query_texts=["what is chroma?"], n_results=3)  # doctest: +SKIP

    """
    return open_checked_collection(config, embedder)[1]


def _stored_identity(config: dict[str, Any]) -> VectorIdentity:
    """The identity of a stored function config (config fields and calibration hash)."""
    from promptembed.guard import stored_identity

    identity, _, _ = stored_identity(None, {"embedding_function": {"name": EF_NAME,
                                                                    "config": config}})  # fmt: skip
    assert identity is not None
    return identity


def make_client(store: StoreConfig) -> Any:
    """A Chroma client for a store config: ``PersistentClient`` or ``HttpClient``."""
    # Default settings on purpose: Chroma refuses two clients of one path with different
    # settings in a process, and users open their own clients next to ours.
    import chromadb

    if store.mode == "persistent":
        return chromadb.PersistentClient(path=str(store.path))
    return chromadb.HttpClient(host=store.host, port=store.port, ssl=store.ssl)


def _store_of(config: Config) -> StoreConfig:
    if config.store is None:
        raise ValueError(
            "the config has no [store] table: add one with `path` (embedded Chroma) or "
            "`host`/`port` (Chroma server) and `collection`"
        )
    return config.store


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
    store = _store_of(cfg)
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
    try:
        collection = client.get_collection(store.collection, embedding_function=function)
    except ValueError:
        # Made with Chroma's default function (e.g. a LlamaIndex drop-in store), which
        # Chroma will not rebind; the guard has verified that its vectors are ours.
        collection = client.get_collection(store.collection, embedding_function=None)
        collection._embedding_function = function
    return client, collection, embedder
