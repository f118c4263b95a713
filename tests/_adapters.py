"""Helpers shared by the adapter tests (not a test module)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

DOCS = [
    "The cat sat on the mat.",
    "Stocks fell sharply on Monday.",
    "A man is playing a guitar.",
    "一个孩子在骑马。",
    "A child is riding a horse.",
]

# Filter transformers' load report and similar noise from subprocess output.
QUIET_ENV = {"TRANSFORMERS_VERBOSITY": "error", "TOKENIZERS_PARALLELISM": "false"}


def store_config(model_dir: Path, db: Path, collection: str = "docs", **embedder) -> dict:
    return {
        "embedder": {"model": str(model_dir), "device": "cpu", **embedder},
        "store": {"path": str(db), "collection": collection},
    }


def run_python(code: str, *, timeout: float = 120, check: bool = True, env: dict | None = None):
    """Run ``code`` in a fresh interpreter (a new process) and return the result."""
    full_env = {**os.environ, **QUIET_ENV, **(env or {})}
    result = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=full_env,
    )
    if check and result.returncode != 0:
        raise AssertionError(f"subprocess failed ({result.returncode}):\n{result.stderr[-3000:]}")
    return result
