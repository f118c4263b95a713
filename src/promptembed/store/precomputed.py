"""Vectors computed before they reach a store: do they come from the collection's embedder?

A framework can write vectors it did not ask its embedding model for: LlamaIndex nodes
embedded earlier (an ``IngestionPipeline`` with an embedding step, nodes loaded from a
docstore) are written by ``insert_nodes`` as they are. Before such vectors are written
they are checked here against the embedder the collection was admitted for
(:func:`promptembed.store.guard.admit`):

* vectors promptembed made in this process are known by content: a bounded map from a
  digest of each document vector to the identity key of the embedder that made it;
* nodes promptembed embedded carry that key and the vector's digest in their metadata
  (:data:`TAG`, see :func:`tag_for`), which the adapters exclude from the embedded and
  the LLM text; a tag whose digest does not match the vector (the vector was replaced
  after tagging) counts for nothing;
* any other vector is re-embedded with the collection's embedder (a random sample of at
  most :data:`~promptembed.store.guard.ADOPT_SAMPLE`), and every cosine must reach
  :data:`~promptembed.store.guard.ADOPT_COSINE`.

A vector from another embedder is refused naming both embedders, before anything is written.
"""

from __future__ import annotations

import hashlib
import random
import threading
from collections import OrderedDict
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from promptembed.identity import of_embedder
from promptembed.store.guard import ADOPT_SAMPLE, EmbedderConflictError, reembedding_problem

if TYPE_CHECKING:
    from promptembed.engine.embedder import PromptEmbedder

# Node metadata key: "<identity key>:<vector digest>" of the promptembed embedder that
# made the node's vector.
TAG = "promptembed_embedder"
# How many recent document vectors are known by content. A vector forgotten is not
# refused: it is verified by re-embedding instead, which only costs time.
REMEMBERED = 65536

_RECENT: OrderedDict[bytes, str] = OrderedDict()
_DESCRIBED: dict[str, str] = {}
_LOCK = threading.Lock()


def identity_key(embedder: PromptEmbedder) -> str:
    """The identity key of ``embedder``'s vectors (what :data:`TAG` holds)."""
    identity = of_embedder(embedder)
    key = identity.key(dimension=embedder.dimension)
    with _LOCK:
        _DESCRIBED.setdefault(key, identity.describe(embedder.dimension))
    return key


def _digest(vector: Any) -> bytes:
    data = np.asarray(vector, dtype=np.float32).tobytes()
    return hashlib.blake2b(data, digest_size=16).digest()


def tag_for(vector: Any, embedder: PromptEmbedder) -> str:
    """The :data:`TAG` value for a vector ``embedder`` made: its key and the vector's digest."""
    return f"{identity_key(embedder)}:{_digest(vector).hex()}"


def source_of(vector: Any, tag: Any) -> str | None:
    """The identity key of the promptembed embedder that made ``vector``, or None if unknown."""
    digest = _digest(vector)
    with _LOCK:
        known = _RECENT.get(digest)
    if known is None and isinstance(tag, str) and tag.endswith(f":{digest.hex()}"):
        known = tag.rsplit(":", 1)[0]
    return known


def remember(vectors: Sequence[Any], embedder: PromptEmbedder) -> None:
    """Record that ``embedder`` made these document vectors (known by content from now on)."""
    key = identity_key(embedder)
    digests = [_digest(v) for v in vectors]
    with _LOCK:
        for digest in digests:
            _RECENT[digest] = key
            _RECENT.move_to_end(digest)
        while len(_RECENT) > REMEMBERED:
            _RECENT.popitem(last=False)


def check_precomputed(
    name: str,
    embedder: PromptEmbedder,
    items: Sequence[tuple[str, Any, Any]],
) -> None:
    """Refuse precomputed vectors that another embedder made, before anything is written.

    Args:
        name: Collection name (for the message).
        embedder: The embedder the collection was admitted for.
        items: ``(text, vector, tag)`` per vector: the text it embeds and the
            :data:`TAG` it carries (``None`` if untagged).

    Raises:
        EmbedderConflictError: naming both embedders; nothing is written.

    """
    wanted = identity_key(embedder)
    unknown: list[tuple[str, Any]] = []
    for text, vector, tag in items:
        source = source_of(vector, tag)
        if source is None:
            unknown.append((text, vector))
        elif source != wanted:
            made_by = _DESCRIBED.get(source, f"a promptembed embedder with identity {source}")
            _refuse(name, embedder, made_by, "precomputed by")
    if not unknown:
        return
    sample = random.SystemRandom().sample(unknown, min(len(unknown), ADOPT_SAMPLE))
    problem = reembedding_problem([t for t, _ in sample], [v for _, v in sample], embedder)
    if problem is not None:
        _refuse(name, embedder, f"an embedder promptembed does not know ({problem})", "from")


def _refuse(name: str, embedder: PromptEmbedder, made_by: str, how: str) -> None:
    raise EmbedderConflictError(
        f"collection {name!r} holds vectors of {_DESCRIBED[identity_key(embedder)]}, but "
        f"the vectors about to be written were {how} {made_by}. Vectors from two embedders "
        "must not share a collection: drop the precomputed embeddings (node.embedding = "
        "None) so the index embeds them, or use another collection. Nothing was written."
    )
