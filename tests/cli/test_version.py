"""The --version flag."""

from __future__ import annotations

from typer.testing import CliRunner

import promptembed
from promptembed.cli import app


def test_version_flag():
    out = CliRunner().invoke(app, ["--version"])
    assert out.exit_code == 0 and out.output.strip() == f"promptembed {promptembed.__version__}"
