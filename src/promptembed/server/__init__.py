"""An OpenAI-compatible embeddings server with dynamic batching (FastAPI + uvicorn).

``promptembed serve --config promptembed.toml`` runs it; any OpenAI embeddings client
works unchanged (the official ``openai`` package, LangChain's ``OpenAIEmbeddings``,
LlamaIndex's and Chroma's OpenAI embedding functions).

Endpoints:
    * ``POST /v1/embeddings``: OpenAI's request and response shapes; ``encoding_format``
      ``float`` or ``base64``; an extension field ``kind`` (``document`` | ``query``)
      picks the template route.
    * ``GET /v1/models``, ``GET /v1/models/{model}``: the one served model.
    * ``GET /health``: liveness, model, dimension and batching counters.
    * ``GET /openapi.json`` (and ``/docs``): the schema.

Concurrent requests are queued and gathered into shared batches by one batcher task;
the model runs on one dedicated thread, never on the event loop. The queue is bounded
(``max_queued_inputs``); beyond it requests get 429 with ``Retry-After``. Errors use
OpenAI's shape ``{"error": {"message", "type", "param", "code"}}``.

Needs the ``server`` extra: ``pip install 'promptembed[server]'``.
"""

from __future__ import annotations

from promptembed._util.optional import require

require("fastapi", "server")
require("uvicorn", "server")

from promptembed.server.app import create_app, run  # noqa: E402
from promptembed.server.batcher import DynamicBatcher, QueueFullError  # noqa: E402
from promptembed.server.schemas import APIError  # noqa: E402

__all__ = ["APIError", "DynamicBatcher", "QueueFullError", "create_app", "run"]
