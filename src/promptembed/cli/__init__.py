"""The ``promptembed`` command line (typer): one module per group of commands."""

from __future__ import annotations

from promptembed.cli import evaluation, indexing, serving, tuning  # noqa: F401 - registers
from promptembed.cli.base import app
from promptembed.cli.indexing import DEMO_QUERIES

__all__ = ["DEMO_QUERIES", "app"]
