"""PromptReps sparse vectors: exact against a plain LM-head forward, dense unchanged."""

from __future__ import annotations

import numpy as np
import pytest
import torch

TEXTS = ["A man is playing a guitar.", "The cat sat on the mat.", "一个男人在弹吉他。", ""]


@pytest.mark.parametrize("template", ["eol", "eol@-2", "ke"])
def test_dense_bit_identical_with_sparse_on_and_off(arch, embedder_factory, template):
    emb = embedder_factory(arch, template=template, batch_size=2)
    dense, sparse = emb.embed_with_sparse(TEXTS)
    assert np.array_equal(dense, emb.embed(TEXTS))
    assert sparse.shape == (len(TEXTS), emb.model.get_input_embeddings().num_embeddings)


def test_sparse_equals_full_model_logits(arch, embedder_factory, model_dirs):
    from transformers import AutoModelForCausalLM

    from promptembed.engine.sparse import WordIds

    emb = embedder_factory(arch, template="eol@-2", batch_size=3)
    sparse = emb.embed_sparse(TEXTS).toarray()
    lm = AutoModelForCausalLM.from_pretrained(model_dirs[arch]).eval()
    route = emb._routes["document"][0]
    ids, _ = route.prompts.encode(TEXTS)
    allowed = WordIds(emb.tokenizer)(TEXTS)
    for row, prompt, own in zip(sparse, ids, allowed):
        with torch.no_grad():
            logits = lm(torch.tensor([prompt])).logits[0, -1]
        expected = np.zeros_like(row)
        weights = torch.log1p(torch.relu(logits)).numpy()
        expected[own] = weights[own]
        np.testing.assert_allclose(row, expected, rtol=1e-4, atol=1e-5)
        assert set(np.flatnonzero(row)) <= set(own.tolist())  # only the text's own words


def test_top_k_keeps_the_largest(embedder_factory):
    import promptembed.engine.sparse as sp

    emb = embedder_factory("llama", template="eol")
    full = emb.embed_sparse(TEXTS[:2]).toarray()
    head, final = emb._sparse_head, None
    states = emb._compute(emb._sparse_routes_for("document")[0], TEXTS[:2], None, _Bar())
    final = states[None, :, 1]
    few = sp.sparse_rows(final, head, emb._word_ids(TEXTS[:2]), top_k=2).toarray()
    for big, small in zip(full, few):
        kept = np.flatnonzero(small)
        assert len(kept) == min(2, np.count_nonzero(big))
        assert np.allclose(small[kept], big[kept])
        assert small[kept].min() >= np.sort(big)[-2]


def test_stopwords_never_weighted(embedder_factory):
    emb = embedder_factory("llama", template="eol")
    row = emb.embed_sparse(["the and of"]).toarray()[0]
    assert not row.any()


def test_sparse_refuses_mean_pooling(embedder_factory):
    emb = embedder_factory("llama", template="eol", pooling="mean")
    with pytest.raises(ValueError, match="pooling='last'"):
        emb.embed_sparse(["x"])


class _Bar:
    def update(self, n: int) -> None:
        pass


def test_sparse_pass_fills_the_dense_embedding_cache(model_dirs, tmp_path):
    from promptembed import PromptEmbedder

    emb = PromptEmbedder(str(model_dirs["llama"]), template="eol", embedding_cache=str(tmp_path))
    dense, _ = emb.embed_with_sparse(TEXTS)
    route = emb._routes["document"][0]
    assert all(hit is not None for hit in route.cache.get(TEXTS))
    assert np.array_equal(emb.embed(TEXTS), dense)


def test_word_ids_skip_bare_word_start_markers(tokenizer):
    from promptembed.engine.sparse import WordIds, blank_token_ids

    blank = set(blank_token_ids(tokenizer).tolist())
    assert tokenizer.convert_tokens_to_ids("Ġ") in blank
    ids = WordIds(tokenizer)(["0 dimensional 绿茶"])[0]
    assert ids.size and not blank & set(ids.tolist())
