"""Client mode: embed through a running ``promptembed serve`` instead of loading a model.

``[embedder] server = "http://host:port"`` (or ``server=`` on an adapter) makes
:func:`promptembed.registry.shared_embedder` return a :class:`RemoteEmbedder`, so the
CLI, the adapters and :func:`promptembed.retrieve` share one loaded model in another
process. It offers what the stores, adapters and guard use of a
:class:`~promptembed.engine.embedder.PromptEmbedder`: ``config``, ``dimension``,
``fingerprint``, ``torch_dtype``, ``precision`` and ``embed(texts, kind=...)``.

The vector identity is the server's, never the client config's: the server publishes
it (:func:`publication`, the ``promptembed`` field of its ``/v1/models`` card) and the
client reads it once. :func:`promptembed.identity.of_embedder` then gives exactly the
published record, so the guard compares a collection with the embedder that really
makes the vectors, as in process. Every embeddings answer carries the identity's key
(:data:`IDENTITY_HEADER`): a server restarted with another embedder is refused, never
mixed in. The API key is read from the environment variable the config names
(``server_api_key_env``, default ``PROMPTEMBED_API_KEY``); it is never stored.

Needs httpx: ``pip install 'promptembed[client]'``.
"""

from __future__ import annotations

import base64
import os
import time
import weakref
from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from promptembed._util.inputs import check_texts
from promptembed._util.optional import require
from promptembed.config import EmbedderConfig, hash_in_name
from promptembed.identity import (
    CALIBRATION_FIELD,
    VECTOR_FIELDS,
    LoadedEmbedder,
    VectorIdentity,
    calibration_hash,
    of_embedder,
    plain,
    stored_fields,
)

if TYPE_CHECKING:  # the client never needs torch
    from promptembed.engine.embedder import Kind

PUBLICATION_FIELD = "promptembed"
"""The model card's extension field that carries the served embedder's identity."""
IDENTITY_HEADER = "x-promptembed-identity"
"""The embeddings answer's header naming the identity (its key) that made the vectors."""
# 429 (queue full) and 503 (shutting down) carry Retry-After: wait, then try again.
_RETRIED = (429, 503)
_MAX_RETRIES = 8


class EmbeddingServerError(ConnectionError):
    """The embedding server was unreachable, refused the API key, or answered an error.

    Example:
        >>> RemoteEmbedder(EmbedderConfig(server="http://127.0.0.1:9"))  # doctest: +SKIP
        Traceback (most recent call last):
        EmbeddingServerError: cannot reach the embedding server at http://127.0.0.1:9 ...

    """


def publication(embedder: LoadedEmbedder, dimension: int, limits: dict[str, int]) -> dict[str, Any]:
    """What a server publishes of its embedder: identity, dimension, stored config, limits.

    Args:
        embedder: The served, loaded embedder.
        dimension: Its vector dimension.
        limits: The request limits a client must respect (``max_inputs_per_request``,
            ``max_chars_per_input``, ``max_request_bytes``).

    Returns:
        The JSON object a :class:`RemoteEmbedder` reads back.
    """
    identity = of_embedder(embedder)
    return {
        "identity": identity.record(),
        "key": identity.key(dimension=dimension),
        "dimension": int(dimension),
        "embedder": plain(stored_fields(embedder.config)),
        "limits": dict(limits),
    }


class RemoteEmbedder:
    """An embedder whose vectors a running ``promptembed serve`` makes.

    Args:
        config: An embedder config with ``server`` set. Vector fields it sets explicitly
            must agree with the server's (else ValueError); the rest come from the server.
        timeout: Seconds allowed for each HTTP request.

    Raises:
        EmbeddingServerError: The server is unreachable, refuses the key, or publishes no
            identity (it is not a promptembed server, or one from before client mode).
        ValueError: The config asks for other vectors than the server makes.

    Example:
        >>> emb = RemoteEmbedder(EmbedderConfig(server="http://127.0.0.1:8080"))  # doctest: +SKIP
        >>> emb.embed(["A man is playing a guitar."], kind="query").shape  # doctest: +SKIP
        (1, 576)

    """

    def __init__(self, config: EmbedderConfig, *, timeout: float = 120.0) -> None:
        if not config.server:
            raise ValueError("RemoteEmbedder needs a config with `server` set")
        httpx = require("httpx", "client")
        self.url = config.server
        self._key_env = config.server_api_key_env
        key = os.environ.get(self._key_env)
        headers = {"Authorization": f"Bearer {key}"} if key else {}
        self._client = httpx.Client(base_url=self.url, headers=headers, timeout=timeout)
        weakref.finalize(self, self._client.close)
        published = self._published()
        self.identity = VectorIdentity.from_record(published["identity"])
        self.dimension = int(published["dimension"])
        self.identity_key = str(published["key"])
        self._limits = dict(published.get("limits") or {})
        self.config = self._served_config(published["embedder"], self.identity, config)
        if of_embedder(self) != self.identity:  # a server of another promptembed version
            raise EmbeddingServerError(
                f"the embedding server at {self.url} publishes an identity this client "
                f"cannot reproduce ({self.identity.describe()}): use the same promptembed "
                "version on both sides"
            )
        _check_requested(config, self.config, self.url)

    # -- what of_embedder and the guard read ----------------------------------------------
    @property
    def fingerprint(self) -> str:
        """The served weights' fingerprint (``in-memory`` when the server has none)."""
        return self.identity.weights or "in-memory"

    @property
    def torch_dtype(self) -> str:
        """The served precision by name (``float32``, ``bfloat16``, ...; ``int8``)."""
        return str(self.identity.precision)

    @property
    def precision(self) -> str:
        """What the server computes in: ``int8``, ``float32``, ``bfloat16`` or ``float16``."""
        return str(self.identity.precision)

    def __repr__(self) -> str:
        return (
            f"RemoteEmbedder(server={self.url!r}, model={self.config.model!r}, "
            f"template={self.config.template!r}, dimension={self.dimension}, "
            f"dtype={self.precision!r})"
        )

    # -- embedding -------------------------------------------------------------------------
    def embed(
        self, texts: str | Sequence[str], *, batch_size: int | None = None, kind: Kind = "document"
    ) -> np.ndarray:
        """Embed one text (shape ``(dim,)``) or a sequence (shape ``(n, dim)``), in order.

        Args:
            texts: A string or a sequence of strings.
            batch_size: Max texts per request (default: the server's limit).
            kind: ``document`` or ``query``: which of the server's template routes.

        Returns:
            float32 array, exactly the server's vectors.

        Raises:
            EmbeddingServerError: The server failed or now serves another embedder.

        """
        if kind not in ("document", "query"):
            raise ValueError(f"kind must be one of ['document', 'query'], got {kind!r}")
        items = check_texts(texts)
        out = np.empty((len(items), self.dimension), dtype=np.float32)
        start = 0
        for chunk in self._requests(items, batch_size):
            out[start : start + len(chunk)] = self._post(chunk, kind)
            start += len(chunk)
        return out[0] if isinstance(texts, str) else out

    def embed_query(self, text: str) -> np.ndarray:
        """Embed one query with the server's query template; shape ``(dim,)``."""
        return self.embed(text, kind="query")

    def _requests(self, items: list[str], batch_size: int | None) -> Iterator[list[str]]:
        """The texts cut into requests within the server's count and size limits."""
        most = min(batch_size or 1 << 30, int(self._limits.get("max_inputs_per_request", 256)))
        budget = int(self._limits.get("max_request_bytes", 1 << 26)) // 2  # JSON escapes
        chunk: list[str] = []
        size = 0
        for text in items:
            cost = len(text.encode("utf-8")) + 8
            if chunk and (len(chunk) == most or size + cost > budget):
                yield chunk
                chunk, size = [], 0
            chunk.append(text)
            size += cost
        if chunk:
            yield chunk

    def _post(self, texts: list[str], kind: Kind) -> np.ndarray:
        body = {"input": texts, "kind": kind, "encoding_format": "base64"}
        response = self._call("POST", "/v1/embeddings", json=body)
        served = response.headers.get(IDENTITY_HEADER)
        if served != self.identity_key:
            raise EmbeddingServerError(
                f"the embedding server at {self.url} now serves another embedder than the "
                f"one this client opened with ({self.identity.describe(self.dimension)}); "
                "it was restarted with another config: reopen the store or adapter"
            )
        data = sorted(response.json()["data"], key=lambda d: d["index"])
        rows = [np.frombuffer(base64.b64decode(d["embedding"]), dtype="<f4") for d in data]
        if len(rows) != len(texts) or any(r.shape != (self.dimension,) for r in rows):
            raise EmbeddingServerError(
                f"the embedding server at {self.url} answered {len(rows)} vectors for "
                f"{len(texts)} texts, or vectors of another dimension than {self.dimension}"
            )
        return np.stack(rows).astype(np.float32)

    # -- HTTP ------------------------------------------------------------------------------
    def _published(self) -> dict[str, Any]:
        """The served embedder's publication, from its ``/v1/models`` card."""
        cards = self._call("GET", "/v1/models").json().get("data") or [{}]
        published = cards[0].get(PUBLICATION_FIELD)
        if not isinstance(published, dict) or "identity" not in published:
            raise EmbeddingServerError(
                f"the server at {self.url} does not publish its vector identity (no "
                f"'{PUBLICATION_FIELD}' field on /v1/models): point `server` at a "
                "`promptembed serve` of this promptembed version"
            )
        return published

    def _call(self, method: str, path: str, **kwargs: Any) -> Any:
        """One request, retried on 429/503 as Retry-After says; errors as one line."""
        httpx = require("httpx", "client")
        for attempt in range(_MAX_RETRIES + 1):
            try:
                response = self._client.request(method, path, **kwargs)
            except httpx.HTTPError as error:
                raise EmbeddingServerError(
                    f"cannot reach the embedding server at {self.url} ({error or type(error)}):"
                    " is `promptembed serve` running there?"
                ) from None
            if response.status_code not in _RETRIED or attempt == _MAX_RETRIES:
                break
            time.sleep(min(float(response.headers.get("retry-after") or 1), 30.0))
        if response.status_code == 401:
            given = "is not set" if not os.environ.get(self._key_env) else "holds another key"
            raise EmbeddingServerError(
                f"the embedding server at {self.url} refused the API key (401): "
                f"${self._key_env} {given}; set it to the key the server was started with"
            )
        if response.status_code != 200:
            raise EmbeddingServerError(
                f"the embedding server at {self.url} answered {response.status_code} to "
                f"{method} {path}: {_error_message(response)}"
            )
        return response

    @staticmethod
    def _served_config(
        stored: dict[str, Any], identity: VectorIdentity, asked: EmbedderConfig
    ) -> EmbedderConfig:
        """The server's embedder config, with the client's own server fields.

        The calibration is named by its content hash (the file is on the server, not here).
        """
        fields = {k: v for k, v in stored.items() if k != "trust_remote_code"}
        fields[CALIBRATION_FIELD] = (
            f"calibration-{identity.calibration}.npz" if identity.calibration else None
        )
        try:
            return EmbedderConfig.model_validate(
                {**fields, "server": asked.server, "server_api_key_env": asked.server_api_key_env}
            )
        except ValueError as error:
            raise EmbeddingServerError(
                f"the embedding server at {asked.server} serves an embedder config this "
                f"client cannot read ({str(error).splitlines()[0]}): use the same promptembed "
                "version on both sides"
            ) from None


def _check_requested(asked: EmbedderConfig, served: EmbedderConfig, url: str) -> None:
    """Refuse a config whose explicitly set vector fields differ from the server's."""
    set_here = [f for f in VECTOR_FIELDS if f in asked.model_fields_set]
    differ = [
        f"{f}={getattr(asked, f)!r} (the server: {getattr(served, f)!r})"
        for f in set_here
        if plain(getattr(asked, f)) != plain(getattr(served, f))
    ]
    if asked.calibration and calibration_hash(asked.calibration) != hash_in_name(
        str(served.calibration)
    ):
        differ.append(f"calibration={asked.calibration!r} (the server: {served.calibration!r})")
    if differ:
        raise ValueError(
            f"this config sets {', '.join(differ)}, but the embedding server at {url} makes "
            "the vectors: drop those fields (the server decides them) or point `server` at "
            "a server started with them"
        )


def _error_message(response: Any) -> str:
    """The message of an OpenAI-shaped error body, else the start of the body."""
    try:
        return str(response.json()["error"]["message"])
    except (ValueError, KeyError, TypeError):
        return response.text[:200] or "(empty body)"
