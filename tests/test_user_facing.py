"""Small things a user sees: --version, the embedder's repr, warnings, the licence."""

from __future__ import annotations

import warnings
from pathlib import Path

from typer.testing import CliRunner

import promptembed
from promptembed.cli import app

ROOT = Path(__file__).resolve().parents[1]


def test_version_flag():
    out = CliRunner().invoke(app, ["--version"])
    assert out.exit_code == 0 and out.output.strip() == f"promptembed {promptembed.__version__}"


def test_repr_names_what_shapes_the_vectors(embedder_factory):
    text = repr(embedder_factory("llama", template=["eol", "ke"], query_template="query"))
    for part in ("template=['eol', 'ke']", "query_template='query'", "layer=[-1, -2]",
                 "dimension=32", "device='cpu'", "dtype='float32'", "llama"):  # fmt: skip
        assert part in text, text


def test_truncation_warning_points_at_the_callers_line(embedder_factory):
    embedder = embedder_factory("llama", max_length=120)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        embedder.embed(["word " * 400])  # this line
    [warning] = [w for w in caught if "truncated" in str(w.message)]
    assert warning.filename == __file__
    assert "this line" in Path(__file__).read_text().splitlines()[warning.lineno - 1]


def test_licence_file_matches_pyproject():
    pyproject = (ROOT / "pyproject.toml").read_text(encoding="utf-8")
    assert 'license = { text = "Apache-2.0" }' in pyproject
    licence = (ROOT / "LICENSE").read_text(encoding="utf-8")
    assert "Apache License" in licence and "Version 2.0, January 2004" in licence
