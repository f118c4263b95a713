"""Ensembles of templates, a template at another layer, several layers in one pass.

And the Chinese templates end to end against the plain reference.
"""

from __future__ import annotations

import numpy as np
import pytest

from promptembed import Template

TEXTS = ["A man is playing a guitar.", "A child rides a horse", "一个孩子在骑马。", ""]


def unit(x: np.ndarray) -> np.ndarray:
    return x / np.linalg.norm(x, axis=-1, keepdims=True)


def test_ensemble_is_the_mean_of_its_members(embedder_factory):
    members = ["eol", "cot", "ke"]
    ens = embedder_factory("llama", template=members)
    singles = [embedder_factory("llama", template=t).embed(TEXTS) for t in members]
    expected = unit(np.mean([unit(s) for s in singles], axis=0))
    np.testing.assert_allclose(ens.embed(TEXTS), expected, atol=1e-5)


def test_ensemble_unnormalised_output_is_the_plain_mean(embedder_factory):
    ens = embedder_factory("qwen2", template=["eol", "sum"], normalize_embeddings=False)
    a = embedder_factory("qwen2", template="eol", normalize_embeddings=False).embed(TEXTS)
    b = embedder_factory("qwen2", template="sum", normalize_embeddings=False).embed(TEXTS)
    np.testing.assert_allclose(ens.embed(TEXTS), (unit(a) + unit(b)) / 2, atol=1e-5)


def test_template_at_layer(embedder_factory, reference):
    emb = embedder_factory("llama", template="ke@1", normalize_embeddings=False)
    ids = emb.tokenizer(Template.parse("ke").render("hello"))["input_ids"]
    vec = emb.embed("hello")
    ref = reference("llama", ids, 1)
    assert vec @ ref / np.linalg.norm(vec) / np.linalg.norm(ref) >= 0.9999
    assert Template.parse("ke@-5").layer == -5
    with pytest.raises(ValueError, match="has no"):
        Template.parse("nosuch@-2")


def test_embed_layers_matches_single_layer_embedders(embedder_factory):
    emb = embedder_factory("gemma3", template="eol", normalize_embeddings=False)
    stacked = emb.embed_layers(TEXTS, "eol", [-1, -2, 2])
    assert stacked.shape == (len(TEXTS), 3, emb.hidden_size)
    for j, layer in enumerate([-1, -2, 2]):
        single = embedder_factory(
            "gemma3", template="eol", layer=layer, normalize_embeddings=False
        ).embed(TEXTS)
        np.testing.assert_allclose(stacked[:, j], single, rtol=1e-4, atol=1e-4)


def test_chinese_template_embeds(embedder_factory, reference):
    emb = embedder_factory("gemma3", template="zh-cot", normalize_embeddings=False)
    ids = emb.tokenizer(Template.parse("zh-cot").render("一个孩子在骑马"))["input_ids"]
    vec = emb.embed("一个孩子在骑马")
    ref = reference("gemma3", ids, -2)
    assert vec @ ref / np.linalg.norm(vec) / np.linalg.norm(ref) >= 0.9999
