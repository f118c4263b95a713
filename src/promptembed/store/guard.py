"""May this collection take vectors from this embedder? The one place that decides.

A collection remembers the embedder that filled it (its
:class:`~promptembed.identity.VectorIdentity` and the vector dimension) in its
metadata. Every path that writes promptembed vectors (``open_*``, ``promptembed
index``, and the drop-in adapters on their first write) calls :func:`admit` first, and
so does every query an adapter embeds for a collection (a query from another embedder's
space would silently return wrong neighbours):

* a record that disagrees raises :class:`EmbedderConflictError` naming both
  embedders, before anything is written;
* an empty collection without a record is claimed (marked);
* a collection with vectors but no full record (made by a drop-in adapter, by raw
  Chroma, or recorded by an older promptembed without a weights fingerprint) is
  adopted only if its stored documents re-embed to its stored vectors (cosine at
  least :data:`ADOPT_COSINE`, a random sample of :data:`ADOPT_SAMPLE` records drawn
  from the whole collection); otherwise it is refused.

Precomputed vectors (nodes embedded before they reach a store) are checked by
:mod:`promptembed.store.precomputed` against the admitted embedder.

Knows no adapter: it takes a Chroma collection object and a loaded embedder.
"""

from __future__ import annotations

import dataclasses
import json
import random
import sys
import threading
import warnings
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import numpy as np

from promptembed._util.vectors import unit
from promptembed.config import EmbedderConfig, hash_in_name
from promptembed.identity import VectorIdentity, of_config, of_embedder
from promptembed.registry import shared_embedder

if TYPE_CHECKING:
    from promptembed.engine.embedder import PromptEmbedder


# Keys of the collection metadata written by promptembed (Chroma metadata is flat).
META_IDENTITY = "promptembed_identity"
META_DIMENSION = "promptembed_dimension"
META_VERSION = "promptembed_format"
META_HINT = "promptembed_reopen"
# 1: flat config identity, no weights or precision; 2: weights fingerprint without the
# tokenizer; 3: the fingerprint covers the tokenizer.
FORMAT_VERSION = 3
EF_NAME = "promptembed"
REOPEN_HINT = (
    "this collection's embedding function is promptembed: import promptembed.chroma "
    "(or any promptembed adapter) before opening it; pip install 'promptembed[chroma]'"
)
ADOPT_COSINE = 0.9999
# How many stored records adoption re-embeds (and how many precomputed vectors of an
# unknown origin are checked), drawn at random from the whole collection. If a share p
# of the records comes from another embedder, n random draws miss all of them with
# probability (1 - p)^n: for a 5 % minority, n = 59 catches it 95 % of the time
# (1 - 0.95^59), n = 90 99 % (1 - 0.95^90 = 0.990). Each sampled record is re-embedded
# once, and only when a collection has no full record (adoption happens once, then the
# collection is marked), so 90 costs one batch of 90 chunks. A smaller collection is
# checked whole.
ADOPT_SAMPLE = 90

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
    """The identity asked for; a client-mode config asks for its server's (one GET)."""
    if isinstance(config, VectorIdentity):
        return config
    if config.server:
        return of_embedder(shared_embedder(config))
    return of_config(config)


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
    if version < FORMAT_VERSION:
        # An older fingerprint scheme cannot be compared with today's: the stored vectors
        # are verified by re-embedding a sample instead (admit), then re-marked.
        stored = dataclasses.replace(stored, weights=None)
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
    got = sample_records(collection, ADOPT_SAMPLE)
    pairs = [(d, e) for d, e in zip(got["documents"], got["embeddings"]) if d is not None]
    ef = (collection.configuration_json or {}).get("embedding_function") or {}
    origin = f"embedding function {ef.get('name') or 'unknown'!r}"
    if META_IDENTITY in (collection.metadata or {}):
        origin = "a promptembed record without a weights fingerprint (an older version)"
    elif ef.get("name") == EF_NAME:
        origin = "promptembed's embedding function, no weights fingerprint"
    problem = (
        reembedding_problem([d for d, _ in pairs], [e for _, e in pairs], embedder)
        if pairs
        else "no stored documents to verify them with"
    )
    if problem is not None:
        raise EmbedderConflictError(
            f"collection {collection.name!r} holds {collection.count()} vectors from another "
            f"embedder ({origin}; {problem}); refusing to mix them with "
            f"{wanted.describe(embedder.dimension)}. Use another collection name, or delete "
            "and re-index it. Nothing was written."
        )


def sample_records(collection: Any, size: int) -> dict[str, list[Any]]:
    """Documents and embeddings of ``size`` records drawn at random from the whole collection.

    A collection of at most ``size`` records is read whole. Otherwise each record is
    fetched at a random offset (Chroma has no random order), so where another
    embedder's records sit (first, last, interleaved) does not matter.
    """
    count = collection.count()
    if count <= size:
        got = collection.get(include=["documents", "embeddings"])
        return {"documents": list(got["documents"] or []), "embeddings": list(got["embeddings"])}
    documents: list[Any] = []
    embeddings: list[Any] = []
    for offset in sorted(random.SystemRandom().sample(range(count), size)):
        got = collection.get(offset=offset, limit=1, include=["documents", "embeddings"])
        documents += list(got["documents"] or [None] * len(got["ids"]))
        embeddings += list(got["embeddings"])
    return {"documents": documents, "embeddings": embeddings}


def reembedding_problem(
    texts: list[str], vectors: list[Any], embedder: PromptEmbedder
) -> str | None:
    """Why ``vectors`` are not ``embedder``'s document vectors of ``texts``, or None if they are.

    Each text is re-embedded; every cosine must be at least :data:`ADOPT_COSINE`.
    """
    stored = np.asarray(vectors, dtype=np.float32).reshape(len(vectors), -1)
    if stored.shape[1] != embedder.dimension:
        return f"they are {stored.shape[1]}-wide, this embedder's are {embedder.dimension}"
    cosine = row_cosines(stored, embedder.embed(texts, kind="document"))
    if cosine.min() < ADOPT_COSINE:
        return f"re-embedding {len(texts)} of their texts gives cosine {float(cosine.min()):.4f}"
    return None


def row_cosines(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Cosine of each row of ``a`` with the same row of ``b``."""
    return np.sum(unit(a) * unit(b), axis=1)


def calling_object(match: Callable[[Any], Any], modules: tuple[str, ...], depth: int = 48) -> Any:
    """The first non-None ``match(self)`` among the callers' ``self`` objects, or None.

    How an adapter finds the collection a framework is about to write into: the
    framework's store object (or Chroma's collection) is on the call stack. Only
    methods of the framework's ``modules`` are looked at: reading a frame's locals
    keeps a snapshot of them alive, which must never happen to the user's frames.
    """
    frame = sys._getframe(2)
    for _ in range(depth):
        if frame is None:
            return None
        code = frame.f_code
        if (
            code.co_argcount
            and code.co_varnames[0] == "self"
            and str(frame.f_globals.get("__name__", "")).startswith(modules)
        ):
            found = match(frame.f_locals.get("self"))
            if found is not None:
                return found
        frame = frame.f_back
    return None


class SharedEmbedderMixin:
    """A config and the shared embedder it loads on first use; guards first writes."""

    config: EmbedderConfig
    _embedder: PromptEmbedder | None

    @property
    def embedder(self) -> PromptEmbedder:
        """The underlying embedder (loaded on first access, shared per config)."""
        if self._embedder is None:
            self._embedder = shared_embedder(self.config)
        return self._embedder

    def _guard(self, find_collection: Callable[[Any], Any], modules: tuple[str, ...]) -> None:
        """Before a framework writes or queries: admit this embedder to its collection.

        Reads go through the same check as writes (:func:`admit`): a query embedded by
        another embedder than the collection's is refused naming both, as a write is.
        """
        collection = calling_object(find_collection, modules)
        if collection is not None:
            admit(collection, self.embedder)
