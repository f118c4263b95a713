"""Helpers shared by the tests (not test modules): ``from tests.helpers import ...``."""

from tests.helpers.cli import one_line_error
from tests.helpers.data import (
    DOCS,
    RETRIEVAL_DOCS,
    calibration_file,
    rewrite_weights,
    store_config,
    write_corpus,
)
from tests.helpers.files import make_pdf
from tests.helpers.procs import QUIET_ENV, free_port, index_killed_at, run_python

__all__ = [
    "DOCS",
    "QUIET_ENV",
    "RETRIEVAL_DOCS",
    "calibration_file",
    "free_port",
    "index_killed_at",
    "make_pdf",
    "one_line_error",
    "rewrite_weights",
    "run_python",
    "store_config",
    "write_corpus",
]
