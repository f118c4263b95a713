"""One loaded embedder per config per process, freed with its last user.

Knows no adapter and no store: adapters, the CLI and the server call it.
"""

from __future__ import annotations

import threading
import weakref
from typing import TYPE_CHECKING, Any

from promptembed.config import EmbedderConfig
from promptembed.engine.remote import RemoteEmbedder

if TYPE_CHECKING:
    from promptembed.engine.embedder import PromptEmbedder

# Weak values: adapters with one config share one model while any of them is alive, and
# the weights are freed with the last one (a plain dict would keep every model forever).
# Keyed by the config's JSON: a config holding a template ensemble (a list) is not hashable.
_EMBEDDERS: weakref.WeakValueDictionary[str, PromptEmbedder | RemoteEmbedder] = (
    weakref.WeakValueDictionary()
)
_EMBEDDERS_LOCK = threading.Lock()


def registry_key(config: EmbedderConfig) -> str:
    """The hashable form of a config: its canonical JSON (lists and all).

    Example:
        >>> registry_key(EmbedderConfig(template=["eol", "ke"])).startswith("{")
        True

    """
    return config.model_dump_json()


def shared_embedder(config: EmbedderConfig) -> PromptEmbedder | RemoteEmbedder:
    """One loaded :class:`PromptEmbedder` per config in this process (thread-safe).

    The model is freed once nothing holds it any more. Adapters that Chroma rebuilds
    from a stored config, or that a framework re-creates per call, share the weights
    instead of loading them again. The embedder serialises its forward passes itself.
    With ``config.server`` set (client mode) it is a :class:`RemoteEmbedder` of that
    server instead: no model is loaded here, and the identity is the server's.
    """
    from promptembed.engine.embedder import PromptEmbedder  # torch: only when one is made

    key = registry_key(config)
    with _EMBEDDERS_LOCK:
        embedder = _EMBEDDERS.get(key)
        if embedder is None:
            embedder = RemoteEmbedder(config) if config.server else PromptEmbedder(config=config)
            _EMBEDDERS[key] = embedder
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
