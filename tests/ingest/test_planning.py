"""File planning: chunk ids are stable and bound to their content."""

from __future__ import annotations

import pytest

pytest.importorskip("chromadb")
pytest.importorskip("llama_index.core")
from promptembed.ingest.planning import chunk_text


def test_chunk_ids_are_stable_and_content_bound():
    a = chunk_text("c/a.md", "# T\n\nOne sentence. Another one.")
    b = chunk_text("c/a.md", "# T\n\nOne sentence. Another one.")
    assert [c.id for c in a] == [c.id for c in b] and a
    assert chunk_text("c/b.md", "# T\n\nOne sentence. Another one.")[0].id != a[0].id
    assert chunk_text("c/a.md", "# T\n\nOne sentence. Changed.")[0].id != a[0].id
