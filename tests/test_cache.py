import numpy as np
import pytest

from promptembed import PromptEmbedder


def count_forward_rows(monkeypatch) -> list[int]:
    """Record the batch sizes that reach the model."""
    from promptembed.forward import LayerForward

    calls: list[int] = []
    real = LayerForward.__call__

    def spy(self, batch, **kwargs):
        calls.append(len(batch))
        return real(self, batch, **kwargs)

    monkeypatch.setattr(LayerForward, "__call__", spy)
    return calls


def test_cache_skips_recomputation_and_returns_same_vectors(tmp_path, model_dirs, monkeypatch):
    cache = str(tmp_path / "cache")
    emb = PromptEmbedder(str(model_dirs["llama"]), device="cpu", embedding_cache=cache)
    calls = count_forward_rows(monkeypatch)
    first = emb.embed(["a", "b", "c"])
    assert sum(calls) == 3
    again = emb.embed(["b", "new", "a"])
    assert sum(calls) == 4  # only "new" was computed
    np.testing.assert_array_equal(again[0], first[1])
    np.testing.assert_array_equal(again[2], first[0])


def test_cache_survives_a_new_embedder_but_not_a_new_template(tmp_path, model_dirs):
    cache = str(tmp_path / "cache")
    path = str(model_dirs["llama"])
    first = PromptEmbedder(path, device="cpu", embedding_cache=cache).embed(["hello"])
    same = PromptEmbedder(path, device="cpu", embedding_cache=cache).embed(["hello"])
    np.testing.assert_array_equal(first, same)
    other = PromptEmbedder(path, device="cpu", template="eol", embedding_cache=cache)
    plain = PromptEmbedder(path, device="cpu", template="eol")
    np.testing.assert_allclose(other.embed(["hello"]), plain.embed(["hello"]), atol=1e-6)


def test_cache_off_by_default(embedder_factory):
    routes = embedder_factory("llama")._routes.values()
    assert all(r.cache is None for members in routes for r in members)


def test_in_memory_model_cannot_use_cache(model_dirs, tokenizer, tmp_path):
    from transformers import AutoModel

    model = AutoModel.from_pretrained(model_dirs["llama"])
    with pytest.raises(ValueError, match="no fingerprint"):
        PromptEmbedder.from_model(model, tokenizer, embedding_cache=str(tmp_path))
