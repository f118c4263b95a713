"""The one optional-import helper: every extra is imported through :func:`require`."""

from __future__ import annotations

import importlib
import importlib.util
from typing import Any


def require(module: str, extra: str) -> Any:
    """Import ``module`` or raise an ImportError that names the extra to install.

    Args:
        module: Dotted module name (``"chromadb"``, ``"fastapi"``).
        extra: The promptembed extra that provides it (``"chroma"``, ``"server"``).

    Returns:
        The imported module.

    Raises:
        ImportError: ``<module> is needed for this feature: pip install 'promptembed[<extra>]'``.

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


def register_chroma() -> None:
    """Register promptembed's Chroma embedding function if chromadb is installed.

    Every adapter calls it on import, so a collection made by any of them reopens
    (Chroma rebuilds the function from its stored config) in the same process.
    """
    if importlib.util.find_spec("chromadb") is not None:
        importlib.import_module("promptembed.chroma")
