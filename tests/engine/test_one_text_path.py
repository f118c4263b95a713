"""The one-text path (a RAG query) skips batch-only work and gives the batch path's vector."""

from __future__ import annotations

import numpy as np
import pytest

QUERIES = ["where is the horse", "一个孩子在骑马。", "", "x"]


def test_one_text_equals_its_batch_of_one(arch, embedder_factory):
    emb = embedder_factory(arch, template="ke", query_template="query")
    for text in QUERIES:
        np.testing.assert_array_equal(emb.embed(text), emb.embed([text])[0])
        np.testing.assert_array_equal(emb.embed_query(text), emb.embed([text], kind="query")[0])


def test_one_text_leaves_the_prefix_cache_intact(embedder_factory):
    emb = embedder_factory("gemma3", template="ke")  # sliding-window layers too
    prefix = emb._routes["document"][0].forward.prefix
    layers = [layer for layer in prefix.cache.layers if getattr(layer, "keys", None) is not None]
    assert layers
    before = [(layer.keys.clone(), layer.values.clone()) for layer in layers]
    first = emb.embed(QUERIES[0])
    emb.embed("a much longer text that crosses the sliding window of the tiny model " * 3)
    np.testing.assert_array_equal(emb.embed(QUERIES[0]), first)
    for (keys, values), layer in zip(before, layers):
        assert layer.keys.shape == keys.shape and bool((layer.keys == keys).all())
        assert bool((layer.values == values).all())


def test_one_text_checks_its_input(embedder_factory):
    emb = embedder_factory("llama")
    with pytest.raises(ValueError, match="kind must be one of"):
        emb.embed("x", kind="passage")
