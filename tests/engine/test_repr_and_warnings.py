"""Small things a user sees of an embedder: its repr and where its warnings point."""

from __future__ import annotations

import warnings
from pathlib import Path


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
