"""Helpers that start processes: a fresh interpreter, a free port, a run killed mid-way."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

# Filter transformers' load report and similar noise from subprocess output.
QUIET_ENV = {"TRANSFORMERS_VERBOSITY": "error", "TOKENIZERS_PARALLELISM": "false"}


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


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# The SIGKILL harness: `promptembed index` in a fresh process whose ``target.method`` kills
# the process (SIGKILL, no clean-up of any kind) on the call after the first ``after`` ones.
KILL_SCRIPT = """
import os, signal, sys
from chromadb.api.models.Collection import Collection
from promptembed.config import load_config
from promptembed.ingest.pipeline import index_paths
from promptembed.retrieval import lexical, sparse_side
{setup}

target, method, after = {target}, {method!r}, {after}
real = getattr(target, method)
calls = 0

def hooked(*args, **kwargs):
    global calls
    calls += 1
    if calls > after:  # die before this call runs
        os.kill(os.getpid(), signal.SIGKILL)
    return real(*args, **kwargs)

setattr(target, method, hooked)
index_paths([{corpus!r}], load_config({toml!r}), batch_size=1)
print("finished without being killed")
"""


def index_killed_at(
    toml: Path,
    corpus: Path,
    method: str,
    after: int,
    target: str = "Collection",
    setup: str = "",
) -> subprocess.CompletedProcess:
    """Index ``corpus`` with ``toml`` in a new process that is SIGKILLed at ``target.method``.

    ``target`` is ``Collection`` (chromadb's), ``lexical.os`` (the lexical index's file
    operations) or ``sparse_side`` (the sparse side's module); the process dies before
    call number ``after + 1``. ``setup`` runs first (e.g. to make the sparse side save
    after every batch). The caller asserts that it was killed (``returncode ==
    -signal.SIGKILL``).
    """
    script = KILL_SCRIPT.format(
        target=target, method=method, after=after, corpus=str(corpus), toml=str(toml), setup=setup
    )
    return run_python(script, check=False)
