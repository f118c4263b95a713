"""promptembed: sentence embeddings from generative LLMs through prompts, without fine-tuning.

Importing this package imports no framework and no torch: the heavy parts load on
first use.

Example:
    >>> from promptembed import PromptEmbedder, load_config  # doctest: +SKIP
    >>> emb = PromptEmbedder("gemma-3-270m", template="ke")  # doctest: +SKIP
    >>> emb.embed(["Hello world", "你好，世界"]).shape  # doctest: +SKIP
    (2, 640)

"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from promptembed.config import Config, EmbedderConfig, ServerConfig, StoreConfig, load_config
from promptembed.templates import BUILTIN_TEMPLATES, Template, normalize_sentence

if TYPE_CHECKING:
    from promptembed.engine.embedder import NonFiniteEmbeddingError, PromptEmbedder

__version__ = "0.1.0"
__all__ = [
    "BUILTIN_TEMPLATES",
    "Config",
    "EmbedderConfig",
    "NonFiniteEmbeddingError",
    "PromptEmbedder",
    "ServerConfig",
    "StoreConfig",
    "Template",
    "__version__",
    "load_config",
    "normalize_sentence",
    "retrieve",
]


def __getattr__(name: str) -> Any:
    # PromptEmbedder pulls in numpy; keep `import promptembed` light.
    if name in ("PromptEmbedder", "NonFiniteEmbeddingError"):
        from promptembed.engine import embedder

        return getattr(embedder, name)
    if name == "retrieve":  # pulls in numpy and the retrieval package
        from promptembed.retrieval import retrieve

        return retrieve
    raise AttributeError(f"module 'promptembed' has no attribute {name!r}")
