"""A calibration is applied alike by every adapter, to documents and to queries.

A collection refusing another calibration is tested in ``tests/store/test_guard.py``.
"""

from __future__ import annotations

import numpy as np

from promptembed import PromptEmbedder
from promptembed.store.function import PromptEmbeddingFunction
from tests.helpers import DOCS, calibration_file


def test_calibration_applied_to_documents_and_queries_in_adapters(tmp_path, model_dirs):
    from promptembed.langchain import PromptEmbeddings
    from promptembed.llama_index import PromptEmbedding

    fields = {
        "model": str(model_dirs["llama"]),
        "device": "cpu",
        "template": "eol",
        "query_template": "sum",
        # Fitted under the same query template: it is part of what a calibration fits.
        "calibration": calibration_file(
            model_dirs["llama"], tmp_path / "q", "whiten", query_template="sum"
        ),
    }
    core = PromptEmbedder(**fields)
    docs = core.embed(DOCS)
    query = core.embed_query("where is the horse")
    assert docs.shape[1] == 6  # the reduced dimension reaches every adapter
    lc = PromptEmbeddings(**fields)
    np.testing.assert_allclose(lc.embed_documents(DOCS), docs, atol=1e-5)
    np.testing.assert_allclose(lc.embed_query("where is the horse"), query, atol=1e-5)
    li = PromptEmbedding(**fields)
    np.testing.assert_allclose(li.get_text_embedding_batch(DOCS), docs, atol=1e-5)
    np.testing.assert_allclose(li.get_query_embedding("where is the horse"), query, atol=1e-5)
    ef = PromptEmbeddingFunction(**fields)
    np.testing.assert_allclose(np.array(ef(DOCS)), docs, atol=1e-5)
    np.testing.assert_allclose(
        np.array(ef.embed_query(["where is the horse"]))[0], query, atol=1e-5
    )
