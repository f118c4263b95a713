"""The one optional-import helper: every extra is imported through :func:`require`."""

from __future__ import annotations

import contextlib
import importlib
import importlib.util
import logging
from collections.abc import Iterator
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


def available(module: str) -> bool:
    """Whether ``module`` can be imported, without importing it.

    Example:
        >>> available("json"), available("no_such_module_here")
        (True, False)

    """
    return importlib.util.find_spec(module) is not None


# Loggers of optional extras that speak up while they are imported: torchao (pulled in by
# transformers whenever the int8 extra is installed) cannot load its CUDA-only kernels on
# a CPU build of torch, and registers enums that torch's _pytree then warns about.
IMPORT_NOISE = ("torchao", "torchao.kernel.intmm", "torch.utils._pytree")


@contextlib.contextmanager
def quiet_imports(loggers: tuple[str, ...] = IMPORT_NOISE) -> Iterator[None]:
    """Silence (below ERROR) the named third-party loggers for the length of an import.

    Only those loggers, and only while the block runs: the user's own warnings and
    logging configuration are left as they are.

    Example:
        >>> with quiet_imports():
        ...     import json
    """
    quiet = [logging.getLogger(name) for name in loggers]
    levels = [log.level for log in quiet]
    for log in quiet:
        log.setLevel(logging.ERROR)
    try:
        yield
    finally:
        for log, level in zip(quiet, levels):
            log.setLevel(level)


class _KnownNoise(logging.Filter):
    """Drops one known third-party message that no user action can address."""

    def __init__(self, fragment: str) -> None:
        super().__init__()
        self.fragment = fragment

    def filter(self, record: logging.LogRecord) -> bool:
        return self.fragment not in record.getMessage()


class _HeadOnlyLoadReport(logging.Filter):
    """Drops transformers' load report when its only finding is the unused LM head.

    The embedder loads the base model (no LM head) from a causal-LM checkpoint, so
    ``lm_head.weight`` is always "UNEXPECTED" there: a warning no user action can
    address. Any other row (a missing or mismatched weight) keeps the whole report.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        if "LOAD REPORT" not in message:
            return True
        rows = [line.split("|")[0].strip() for line in message.splitlines() if "|" in line]
        keys = [key for key in rows if key and key != "Key" and set(key) != {"-"}]
        return not keys or not all(key.startswith("lm_head.") for key in keys)


# torch warns each time torchao (imported by transformers during a load) registers an enum
# the old way, from whichever torchao module transformers happens to touch.
_ENUM_NOTICE = _KnownNoise("is an Enum subclass and is now natively supported")
_HEAD_REPORT = _HeadOnlyLoadReport()


def filter_known_noise() -> None:
    """Install the filters for the messages above (idempotent); nothing else is hidden."""
    for name, noise in (
        ("torch.utils._pytree", _ENUM_NOTICE),
        ("transformers.modeling_utils", _HEAD_REPORT),
    ):
        log = logging.getLogger(name)
        if noise not in log.filters:
            log.addFilter(noise)
