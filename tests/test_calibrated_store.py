"""A calibration travels with the collection: applied everywhere, refused when it changes."""

from __future__ import annotations

import numpy as np
import pytest

from _adapters import DOCS, store_config
from promptembed import PromptEmbedder
from promptembed.calibration import Calibration, fit_fields
from promptembed.chroma import PromptEmbeddingFunction, open_collection
from promptembed.store import EmbedderConflictError

SAMPLE = [f"sample {i} on {w}" for i, w in enumerate(["bees", "tax", "rain", "jazz"] * 5)]


def calibration_file(model_dir, directory, method: str, **fields) -> str:
    base = PromptEmbedder(str(model_dir), device="cpu", template="eol", **fields)
    cal = Calibration.fit(
        base.embed_raw(SAMPLE), method=method, dims=6, fitted_on=fit_fields(base.config)
    )
    return str(cal.save(directory))


@pytest.fixture
def files(tmp_path, model_dirs):
    return (
        calibration_file(model_dirs["llama"], tmp_path / "a", "center"),
        calibration_file(model_dirs["llama"], tmp_path / "b", "whiten"),
    )


def test_collection_refuses_another_calibration(tmp_path, model_dirs, files):
    db = tmp_path / "db"
    first = store_config(model_dirs["llama"], db, template="eol", calibration=files[0])
    col = open_collection(first)
    col.add(ids=["a", "b"], documents=DOCS[:2])
    other = store_config(model_dirs["llama"], db, template="eol", calibration=files[1])
    with pytest.raises(EmbedderConflictError, match="calibration"):
        open_collection(other)
    plain = store_config(model_dirs["llama"], db, template="eol")
    with pytest.raises(EmbedderConflictError, match="calibration"):
        open_collection(plain)
    assert open_collection(first).count() == 2  # untouched, and the same config reopens


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
