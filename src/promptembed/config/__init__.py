"""Configuration: the pydantic models, config files and path resolution.

Standard library and pydantic only: every other layer builds on it.
"""

from __future__ import annotations

from promptembed.config.files import load_config
from promptembed.config.models import (
    MANAGED_MODEL_KWARGS,
    Config,
    DType,
    EmbedderConfig,
    IndexConfig,
    Pooling,
    RayConfig,
    RerankConfig,
    RetrievalConfig,
    ServerConfig,
    StoreConfig,
)
from promptembed.config.mteb import MtebConfig, Route
from promptembed.config.paths import SEARCH_PATH_ENV, hash_in_name, resolve_calibration

__all__ = [
    "MANAGED_MODEL_KWARGS",
    "SEARCH_PATH_ENV",
    "Config",
    "DType",
    "EmbedderConfig",
    "IndexConfig",
    "MtebConfig",
    "Pooling",
    "RayConfig",
    "RerankConfig",
    "RetrievalConfig",
    "Route",
    "ServerConfig",
    "StoreConfig",
    "hash_in_name",
    "load_config",
    "resolve_calibration",
]
