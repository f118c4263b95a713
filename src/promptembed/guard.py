"""May this collection take vectors from this embedder? The one place that decides.

A collection remembers the embedder that filled it (its
:class:`~promptembed.identity.VectorIdentity` and the vector dimension) in its
metadata. Every path that writes promptembed vectors (``open_*``, ``promptembed
index``, and the drop-in adapters on their first write) calls :func:`admit` first:

* a record that disagrees raises :class:`EmbedderConflictError` naming both
  embedders, before anything is written;
* an empty collection without a record is claimed (marked);
* a collection with vectors but no full record (made by a drop-in adapter, by raw
  Chroma, or recorded by an older promptembed without a weights fingerprint) is
  adopted only if its stored documents re-embed to its stored vectors (cosine at
  least :data:`ADOPT_COSINE`); otherwise it is refused.

Knows no adapter: it takes a Chroma collection object and a loaded embedder.
"""

from __future__ import annotations

import json
import threading
import warnings
from typing import TYPE_CHECKING, Any

import numpy as np

from promptembed.config import EmbedderConfig
from promptembed.identity import VectorIdentity, hash_in_name, of_config, of_embedder

if TYPE_CHECKING:
    from promptembed.embedder import PromptEmbedder

# Keys of the collection metadata written by promptembed (Chroma metadata is flat).
META_IDENTITY = "promptembed_identity"
META_DIMENSION = "promptembed_dimension"
META_VERSION = "promptembed_format"
META_HINT = "promptembed_reopen"
FORMAT_VERSION = 2  # 1: flat config identity, no weights or precision
EF_NAME = "promptembed"
REOPEN_HINT = (
    "this collection's embedding function is promptembed: import promptembed.chroma "
    "(or any promptembed adapter) before opening it; pip install 'promptembed[chroma]'"
)
ADOPT_COSINE = 0.9999
ADOPT_SAMPLE = 8

# States returned by check_compatible.
MARKED = "marked"  # a full record that agrees
EMPTY = "empty"  # no record, no vectors: may be claimed
UNVERIFIED = "unverified"  # agrees as far as known, or no record: verify stored vectors

_ADMITTED: set[tuple[str, str]] = set()
_ADMITTED_LOCK = threading.Lock()


class EmbedderConflictError(ValueError):
    """A collection holds vectors of another embedder than the one about to write.

    Example:
        >>> open_collection({"embedder": {"template": "eol"},
        ...                  "store": {"path": "db"}})  # doctest: +SKIP
        Traceback (most recent call last):
        EmbedderConflictError: collection 'promptembed' was built with embedder {...}

    """


def collection_marker(identity: VectorIdentity | EmbedderConfig, dimension: int) -> dict[str, Any]:
    """The collection metadata that records which embedder fills a collection."""
    return {
        META_IDENTITY: json.dumps(_wanted(identity).record(), sort_keys=True),
        META_DIMENSION: int(dimension),
        META_VERSION: FORMAT_VERSION,
        META_HINT: REOPEN_HINT,
    }


def stored_identity(
    metadata: dict[str, Any] | None, configuration: dict[str, Any] | None
) -> tuple[VectorIdentity | None, Any, int]:
    """The recorded identity, dimension and record format of a collection (None if none).

    Reads promptembed's metadata record, else the config of a promptembed embedding
    function that Chroma stored with the collection (format 0: config fields only).
    """
    metadata = metadata or {}
    if META_IDENTITY in metadata:
        record = json.loads(str(metadata[META_IDENTITY]))
        version = int(metadata.get(META_VERSION, 1))
        return VectorIdentity.from_record(record), metadata.get(META_DIMENSION), version
    ef = (configuration or {}).get("embedding_function") or {}
    if ef.get("name") == EF_NAME and isinstance(ef.get("config"), dict):
        stored = ef["config"]
        fields = {k: v for k, v in stored.get("embedder", {}).items() if k != "trust_remote_code"}
        calibration = fields.pop("calibration", None)
        identity = of_config(EmbedderConfig(**fields))
        sha = stored.get("calibration_sha256") or (calibration and hash_in_name(calibration))
        return VectorIdentity(identity.fields, sha or calibration), stored.get("dimension"), 0
    return None, None, 0


def _wanted(config: EmbedderConfig | VectorIdentity) -> VectorIdentity:
    return config if isinstance(config, VectorIdentity) else of_config(config)


def check_compatible(
    name: str,
    metadata: dict[str, Any] | None,
    configuration: dict[str, Any] | None,
    count: int,
    config: EmbedderConfig | VectorIdentity,
    dimension: int | None,
) -> str:
    """Raise if a collection's record names another embedder; read only, writes nothing.

    Args:
        name: Collection name (for the message).
        metadata: The collection's metadata.
        configuration: The collection's ``configuration_json`` (its stored EF config).
        count: Number of records in the collection.
        config: The embedder about to use it (a config, or a loaded embedder's identity).
        dimension: That embedder's vector dimension (``None``: not known yet).

    Returns:
        :data:`MARKED`, :data:`EMPTY` or :data:`UNVERIFIED` (see :func:`admit`).

    Raises:
        EmbedderConflictError: naming both embedders and what differs.

    """
    wanted = _wanted(config)
    stored, stored_dimension, version = stored_identity(metadata, configuration)
    if stored is None:
        return UNVERIFIED if count else EMPTY
    diff = stored.differences(wanted)
    if None not in (stored_dimension, dimension) and int(stored_dimension) != int(dimension):
        diff.append("dimension")
    if diff:
        raise EmbedderConflictError(
            f"collection {name!r} was built with embedder "
            f"{stored.describe(stored_dimension)}, but it is being opened with "
            f"{wanted.describe(dimension)} (differs in: {', '.join(diff)}). Vectors from "
            "two embedders must not share a collection: use the stored config, another "
            "collection name, or delete and re-index the collection. Nothing was changed."
        )
    full = version >= FORMAT_VERSION and None not in (stored.weights, wanted.weights)
    return MARKED if full else (UNVERIFIED if count else EMPTY)


def space_of(collection: Any) -> str:
    """The collection's distance space: ``cosine``, ``ip`` or ``l2`` (Chroma's default)."""
    hnsw = (collection.configuration_json or {}).get("hnsw") or {}
    return str(hnsw.get("space") or (collection.metadata or {}).get("hnsw:space") or "l2")


def cosine_from_distance(space: str, distance: float) -> float:
    """Cosine similarity of unit vectors from a Chroma distance in ``space``.

    Example:
        >>> cosine_from_distance("l2", 0.5), cosine_from_distance("cosine", 0.25)
        (0.75, 0.75)

    """
    return 1.0 - distance / 2.0 if space == "l2" else 1.0 - distance


def admit(collection: Any, embedder: PromptEmbedder) -> None:
    """Let ``embedder`` write into ``collection``, or raise with nothing written.

    Checked once per collection and embedder in a process. A collection without a
    full record is verified against its stored vectors, then marked.

    Raises:
        EmbedderConflictError: The collection holds another embedder's vectors, or
            was made with another embedding function.

    """
    wanted = of_embedder(embedder)
    memo = (str(collection.id), wanted.key(dimension=embedder.dimension))
    with _ADMITTED_LOCK:
        if memo in _ADMITTED:
            return
    state = check_compatible(
        collection.name,
        collection.metadata,
        collection.configuration_json,
        collection.count(),
        wanted,
        embedder.dimension,
    )
    if state != MARKED:
        if state == UNVERIFIED:
            _verify_sample(collection, embedder, wanted)
        else:
            _refuse_foreign_function(collection)
        mark(collection, wanted, embedder.dimension)
    _warn_space(collection)
    with _ADMITTED_LOCK:
        _ADMITTED.add(memo)


def mark(collection: Any, identity: VectorIdentity, dimension: int) -> None:
    """Write promptembed's record into the collection's metadata."""
    # Chroma refuses a metadata update that carries the distance keys, even unchanged.
    kept = {k: v for k, v in (collection.metadata or {}).items() if not k.startswith("hnsw:")}
    collection.modify(metadata={**kept, **collection_marker(identity, dimension)})


def _warn_space(collection: Any) -> None:
    """Name a drop-in store's non-cosine space, and the fix."""
    space = space_of(collection)
    if space != "cosine":
        warnings.warn(
            f"collection {collection.name!r} uses {space} distance (Chroma's default for a "
            "store made without an embedding function, e.g. by langchain_chroma.Chroma). "
            "promptembed's vectors are unit length, so rankings agree with cosine, but "
            f"distances are {'2 - 2*cosine' if space == 'l2' else '1 - cosine'}. To get "
            "cosine distances, create the collection with "
            "collection_configuration={'hnsw': {'space': 'cosine'}} (LangChain) or "
            "configuration={'hnsw': {'space': 'cosine'}} (Chroma), or through promptembed's "
            "open_vectorstore / open_index / open_collection, and re-index.",
            stacklevel=4,
        )


def _refuse_foreign_function(collection: Any) -> None:
    ef = (collection.configuration_json or {}).get("embedding_function") or {}
    if ef.get("name") not in (None, EF_NAME, "default"):
        raise EmbedderConflictError(
            f"collection {collection.name!r} is empty but was created with embedding "
            f"function {ef['name']!r}; promptembed cannot take it over. Delete it or "
            "use another collection name. Nothing was changed."
        )


def _verify_sample(collection: Any, embedder: PromptEmbedder, wanted: VectorIdentity) -> None:
    """Adopt a collection only if its stored documents re-embed to its stored vectors."""
    got = collection.get(limit=ADOPT_SAMPLE, include=["documents", "embeddings"])
    pairs = [(d, e) for d, e in zip(got["documents"] or [], got["embeddings"]) if d is not None]
    ef = (collection.configuration_json or {}).get("embedding_function") or {}
    origin = f"embedding function {ef.get('name') or 'unknown'!r}"
    if META_IDENTITY in (collection.metadata or {}):
        origin = "a promptembed record without a weights fingerprint (an older version)"
    elif ef.get("name") == EF_NAME:
        origin = "promptembed's embedding function, no weights fingerprint"
    problem = None
    if not pairs:
        problem = "no stored documents to verify them with"
    else:
        stored = np.asarray([e for _, e in pairs], dtype=np.float32)
        if stored.shape[1] != embedder.dimension:
            problem = f"they are {stored.shape[1]}-wide, this embedder's are {embedder.dimension}"
        else:
            fresh = embedder.embed([d for d, _ in pairs], kind="document")
            cosine = _cosines(stored, fresh)
            if cosine.min() < ADOPT_COSINE:
                worst = float(cosine.min())
                problem = f"re-embedding {len(pairs)} stored documents gives cosine {worst:.4f}"
    if problem is not None:
        raise EmbedderConflictError(
            f"collection {collection.name!r} holds {collection.count()} vectors from another "
            f"embedder ({origin}; {problem}); refusing to mix them with "
            f"{wanted.describe(embedder.dimension)}. Use another collection name, or delete "
            "and re-index it. Nothing was written."
        )


def _cosines(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    from promptembed.embedder import _unit

    return np.sum(_unit(a) * _unit(b), axis=1)
