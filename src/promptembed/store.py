"""What the three framework adapters share: embedders per config and the checked collection.

This is the one place that decides whether a Chroma collection may receive vectors
from a given embedder. A collection remembers the embedder that filled it (its
:meth:`~promptembed.config.EmbedderConfig.identity` and the vector dimension) in
its metadata; opening it with an embedder that disagrees raises
:class:`EmbedderConflictError` before anything is written, so vectors from two
embedders never share a collection.

Nothing here imports a framework at module import time.
"""

from __future__ import annotations

import importlib
import json
import threading
import weakref
from typing import TYPE_CHECKING, Any

from promptembed.config import Config, EmbedderConfig, StoreConfig, load_config

if TYPE_CHECKING:
    from pathlib import Path

    from promptembed.embedder import PromptEmbedder

# Keys of the collection metadata written by promptembed (Chroma metadata is flat).
META_IDENTITY = "promptembed_identity"
META_DIMENSION = "promptembed_dimension"
META_VERSION = "promptembed_format"
FORMAT_VERSION = 1
EF_NAME = "promptembed"

# Weak values: adapters with one config share one model while any of them is alive, and
# the weights are freed with the last one (a plain dict would keep every model forever).
_EMBEDDERS: weakref.WeakValueDictionary[EmbedderConfig, PromptEmbedder] = (
    weakref.WeakValueDictionary()
)
_EMBEDDERS_LOCK = threading.Lock()


class EmbedderConflictError(ValueError):
    """A collection was built by another embedder than the one used to open it.

    Example:
        >>> open_collection({"embedder": {"template": "eol"},
        ...                  "store": {"path": "db"}})  # doctest: +SKIP
        Traceback (most recent call last):
        EmbedderConflictError: collection 'promptembed' was built with embedder {...}

    """


def require(module: str, extra: str) -> Any:
    """Import ``module`` or raise an ImportError that names the extra to install.

    Example:
        >>> require("json", "chroma").__name__
        'json'

    """
    try:
        return importlib.import_module(module)
    except ImportError as error:
        raise ImportError(
            f"{module} is needed for this feature: pip install 'promptembed[{extra}]'"
        ) from error


def shared_embedder(config: EmbedderConfig) -> PromptEmbedder:
    """One loaded :class:`PromptEmbedder` per config in this process (thread-safe).

    The model is freed once nothing holds it any more.

    Adapters that Chroma rebuilds from a stored config, or that a framework
    re-creates per call, share the weights instead of loading them again. The
    embedder itself serialises its forward passes with a lock.
    """
    with _EMBEDDERS_LOCK:
        embedder = _EMBEDDERS.get(config)
        if embedder is None:
            from promptembed.embedder import PromptEmbedder

            embedder = PromptEmbedder(config=config)
            _EMBEDDERS[config] = embedder
        return embedder


def embedder_config(
    model: str | None = None, config: EmbedderConfig | None = None, **fields: Any
) -> EmbedderConfig:
    """Build an :class:`EmbedderConfig` the way ``PromptEmbedder(...)`` takes its arguments."""
    if config is not None:
        if fields or model is not None:
            raise TypeError("pass either config= or keyword fields, not both")
        return config
    return EmbedderConfig(**({"model": model} if model is not None else {}), **fields)


def collection_marker(config: EmbedderConfig, dimension: int) -> dict[str, Any]:
    """The collection metadata that records which embedder fills a collection."""
    return {
        META_IDENTITY: json.dumps(config.identity(), sort_keys=True),
        META_DIMENSION: int(dimension),
        META_VERSION: FORMAT_VERSION,
    }


def _describe(identity: dict[str, Any], dimension: Any) -> str:
    shown = ", ".join(f"{k}={v!r}" for k, v in identity.items())
    return f"{{{shown}, dimension={dimension!r}}}"


def check_compatible(
    name: str,
    metadata: dict[str, Any] | None,
    configuration: dict[str, Any] | None,
    count: int,
    config: EmbedderConfig,
    dimension: int,
) -> bool:
    """Raise if a collection was built by another embedder; read only, writes nothing.

    Args:
        name: Collection name (for the message).
        metadata: The collection's metadata.
        configuration: The collection's ``configuration_json`` (its stored EF config).
        count: Number of records in the collection.
        config: The embedder about to use it.
        dimension: That embedder's vector dimension.

    Returns:
        True if the collection carries promptembed's marker, False if it has none
        and is empty (it may then be claimed).

    Raises:
        EmbedderConflictError: naming both configurations.

    """
    wanted = json.loads(json.dumps(config.identity(), sort_keys=True))
    metadata = metadata or {}
    stored_identity: dict[str, Any] | None = None
    stored_dimension: Any = None
    if META_IDENTITY in metadata:
        stored_identity = json.loads(str(metadata[META_IDENTITY]))
        stored_dimension = metadata.get(META_DIMENSION)
    else:
        ef = (configuration or {}).get("embedding_function") or {}
        if ef.get("name") == EF_NAME and isinstance(ef.get("config"), dict):
            stored = ef["config"]
            embedder = stored.get("embedder", {})
            stored_identity = {k: embedder.get(k) for k in wanted}
            stored_dimension = stored.get("dimension")
        elif count:
            ef_name = ef.get("name") or ef.get("type") or "unknown"
            raise EmbedderConflictError(
                f"collection {name!r} holds {count} vectors from another embedder "
                f"(embedding function {ef_name!r}, no promptembed record); refusing to mix "
                f"them with {_describe(wanted, dimension)}. Use another collection name."
            )
        else:
            return False
    if stored_identity != wanted or (
        stored_dimension is not None and int(stored_dimension) != int(dimension)
    ):
        diff = sorted(
            k for k in set(wanted) | set(stored_identity) if wanted.get(k) != stored_identity.get(k)
        )
        if stored_dimension is not None and int(stored_dimension) != int(dimension):
            diff.append("dimension")
        raise EmbedderConflictError(
            f"collection {name!r} was built with embedder "
            f"{_describe(stored_identity, stored_dimension)}, but it is being opened with "
            f"{_describe(wanted, dimension)} (differs in: {', '.join(diff)}). Vectors from "
            "two embedders must not share a collection: use the stored config, another "
            "collection name, or delete and re-index the collection. Nothing was changed."
        )
    return True


def make_client(store: StoreConfig) -> Any:
    """A Chroma client for a store config: ``PersistentClient`` or ``HttpClient``."""
    # Default settings on purpose: Chroma refuses two clients of one path with different
    # settings in a process, and users open their own clients next to ours.
    chromadb = require("chromadb", "chroma")
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

    The collection is created with :class:`~promptembed.chroma.PromptEmbeddingFunction`
    (so Chroma can rebuild the function from the stored config in another process),
    cosine space and promptembed's marker metadata. An existing collection is first
    compared with the embedder; on a mismatch nothing is written.

    Args:
        config: A :class:`Config`, a TOML path or a dict, with a ``store`` table.
        embedder: An already loaded embedder (default: shared one for ``config.embedder``).

    Returns:
        ``(client, collection, embedder)``; the collection has the embedding function set.

    Raises:
        EmbedderConflictError: If the collection was built by another embedder.
        ValueError: If the config has no store.

    """
    cfg = load_config(config)
    store = _store_of(cfg)
    if embedder is None:
        embedder = shared_embedder(cfg.embedder)
    ecfg = embedder.config
    from promptembed.chroma import PromptEmbeddingFunction

    client = make_client(store)
    from chromadb.errors import NotFoundError

    function = PromptEmbeddingFunction(embedder=embedder)
    try:
        existing = client.get_collection(store.collection, embedding_function=None)
    except (NotFoundError, ValueError):
        existing = None
    marked = True
    if existing is not None:
        marked = check_compatible(
            existing.name,
            existing.metadata,
            existing.configuration_json,
            existing.count(),
            ecfg,
            embedder.dimension,
        )
    marker = collection_marker(ecfg, embedder.dimension)
    if existing is None:
        collection = client.get_or_create_collection(
            store.collection,
            embedding_function=function,
            metadata=marker,
            configuration={"hnsw": {"space": "cosine"}},
        )
        # Another process may have won the race to create it: check again.
        check_compatible(
            collection.name,
            collection.metadata,
            collection.configuration_json,
            collection.count(),
            ecfg,
            embedder.dimension,
        )
    else:
        if not marked:  # an empty collection without a record: claim it
            ef = (existing.configuration_json or {}).get("embedding_function") or {}
            if ef.get("name") not in (None, EF_NAME):
                raise EmbedderConflictError(
                    f"collection {existing.name!r} is empty but was created with embedding "
                    f"function {ef['name']!r}; promptembed cannot take it over. Delete it or "
                    "use another collection name. Nothing was changed."
                )
            existing.modify(metadata={**(existing.metadata or {}), **marker})
        collection = client.get_collection(store.collection, embedding_function=function)
    return client, collection, embedder
