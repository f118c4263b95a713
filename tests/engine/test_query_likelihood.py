"""Query likelihood (the reranker's score) against a plain causal-LM computation."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from promptembed.engine.likelihood import pair_ids
from promptembed.templates import RERANK_PROMPTS

QUERY = "where do bees keep honey"
PASSAGES = [
    "Bees store honey in wax cells of the hive.",
    "Preheat the oven before baking bread.",
    "Green tea is brewed with water below boiling.",
    "A hive",
]


@pytest.fixture(scope="module")
def causal(model_dirs):
    from transformers import AutoModelForCausalLM

    made = {}

    def get(arch):
        if arch not in made:
            made[arch] = AutoModelForCausalLM.from_pretrained(model_dirs[arch]).eval()
        return made[arch]

    return get


def reference(model, sequence: list[int], tail: int) -> float:
    """Mean log P of the last ``tail`` tokens, from one unpadded pass with the LM head."""
    with torch.no_grad():
        logits = model(torch.tensor([sequence])).logits[0].float()
    logp = logits.log_softmax(-1)
    n = len(sequence)
    return float(np.mean([logp[j - 1, sequence[j]].item() for j in range(n - tail, n)]))


def test_scores_equal_the_causal_lm_reference(arch, embedder_factory, causal):
    emb = embedder_factory(arch)
    got = emb.query_likelihood(QUERY, PASSAGES, prompt="en", max_passage_tokens=64)
    sequences, tail = pair_ids(emb.tokenizer, RERANK_PROMPTS["en"], QUERY, PASSAGES, 64)
    want = [reference(causal(arch), seq, tail) for seq in sequences]
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4)


def test_batching_and_order_do_not_change_a_score(embedder_factory):
    emb = embedder_factory("gemma3")
    one = emb.query_likelihood(QUERY, PASSAGES, batch_size=1)
    many = emb.query_likelihood(QUERY, PASSAGES, batch_size=4)
    backwards = emb.query_likelihood(QUERY, PASSAGES[::-1], batch_size=3)[::-1]
    np.testing.assert_allclose(one, many, atol=1e-5)
    np.testing.assert_allclose(one, backwards, atol=1e-5)


def test_a_passage_is_cut_to_max_passage_tokens(embedder_factory):
    emb = embedder_factory("llama")
    ids = emb.tokenizer(PASSAGES[0], add_special_tokens=False)["input_ids"]
    cut = emb.tokenizer.decode(ids[:5])
    long = emb.query_likelihood(QUERY, [PASSAGES[0]], max_passage_tokens=5)
    short = emb.query_likelihood(QUERY, [cut], max_passage_tokens=500)
    np.testing.assert_allclose(long, short, atol=1e-6)
    assert not np.allclose(long, emb.query_likelihood(QUERY, [PASSAGES[0]]))


def test_auto_prompt_follows_the_query_language(embedder_factory):
    emb = embedder_factory("llama")
    zh = "蜜蜂把蜂蜜存在哪里"
    auto = emb.query_likelihood(zh, PASSAGES[:2])
    np.testing.assert_allclose(auto, emb.query_likelihood(zh, PASSAGES[:2], prompt="zh"))
    assert not np.allclose(auto, emb.query_likelihood(zh, PASSAGES[:2], prompt="en"))


def test_own_prompt_is_used_and_a_prompt_without_passage_is_refused(embedder_factory):
    emb = embedder_factory("llama")
    own = emb.query_likelihood(QUERY, PASSAGES[:2], prompt="Text: {passage}\nQuery:")
    assert not np.allclose(own, emb.query_likelihood(QUERY, PASSAGES[:2], prompt="en"))
    with pytest.raises(ValueError, match=r"\{passage\}.*got 'Question:'"):
        emb.query_likelihood(QUERY, PASSAGES, prompt="Question:")


@pytest.mark.parametrize(
    ("query", "passages", "error"),
    [(3, ["a"], TypeError), ("q", [None], TypeError), ("", ["a"], ValueError)],
)
def test_bad_input_is_refused(embedder_factory, query, passages, error):
    with pytest.raises(error):
        embedder_factory("llama").query_likelihood(query, passages)


def test_no_passages_gives_no_scores(embedder_factory):
    assert embedder_factory("llama").query_likelihood(QUERY, []).shape == (0,)


QUERIES = ["where do bees keep honey", "how hot should tea water be", "绿茶的水温", "bread"]


def test_pair_likelihoods_equal_the_causal_lm_reference_with_each_passage_run_once(
    arch, embedder_factory, causal
):
    emb = embedder_factory(arch)
    pairs = [(q, p) for p in PASSAGES[:3] for q in QUERIES]  # passages shared by 4 queries
    pairs += [("bees", PASSAGES[3]), ("where is the hive", "Hives hang in trees.")]  # alone
    got = emb.pair_likelihoods(pairs, prompt="en", max_passage_tokens=64, batch_size=3)
    want = []
    for q, p in pairs:
        sequences, tail = pair_ids(emb.tokenizer, RERANK_PROMPTS["en"], q, [p], 64)
        want.append(reference(causal(arch), sequences[0], tail))
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4)


def test_pair_likelihoods_equal_query_likelihood_pair_by_pair_in_any_order(embedder_factory):
    emb = embedder_factory("gemma3")  # sliding-window layers in the shared cache
    pairs = [(q, p) for q in QUERIES for p in PASSAGES]
    got = emb.pair_likelihoods(pairs[::-1])[::-1]  # auto prompt: zh for the Chinese query
    want = np.concatenate([emb.query_likelihood(q, PASSAGES) for q in QUERIES])
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4)
    assert emb.pair_likelihoods([]).shape == (0,)


@pytest.mark.parametrize(
    ("pairs", "error"),
    [
        ([("", "a passage")], ValueError),
        ([(3, "a passage")], TypeError),
        ([("q", None)], TypeError),
    ],
)
def test_pair_likelihoods_refuse_bad_pairs(embedder_factory, pairs, error):
    with pytest.raises(error):
        embedder_factory("llama").pair_likelihoods(pairs)


def test_sparse_vectors_work_after_reranking_loaded_the_lm_head(model_dirs):
    from promptembed import PromptEmbedder

    emb = PromptEmbedder(str(model_dirs["llama"]), device="cpu")  # fresh: nothing loaded
    emb.query_likelihood(QUERY, PASSAGES[:1])
    rows = emb.embed_sparse(PASSAGES[:2])
    assert rows.shape[0] == 2 and rows.nnz > 0
