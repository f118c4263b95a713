"""The LangChain compressor and LlamaIndex postprocessor rerank as the core does."""

from __future__ import annotations

import numpy as np
import pytest

from promptembed.config import RerankConfig

QUERY = "where do bees find flowers"
TEXTS = [
    "Preheat the oven before baking bread.",
    "Honeybees dance to tell each other where the flowers are.",
    "Green tea lowers blood pressure.",
    "绿茶可以降低血压。",
]


def likelihood_order(emb) -> list[int]:
    scores = emb.query_likelihood(QUERY, TEXTS)
    return [int(i) for i in np.argsort(-scores, kind="stable")]


def test_langchain_compressor_orders_by_likelihood_and_keeps_top_n(embedder_factory):
    pytest.importorskip("langchain_core")
    from langchain_core.documents import Document

    from promptembed.langchain import PromptReranker

    emb = embedder_factory("llama")
    reranker = PromptReranker.from_embedder(emb, rerank=RerankConfig(top_k=4, weight=1.0), top_n=2)
    docs = [Document(t, metadata={"i": i}) for i, t in enumerate(TEXTS)]
    got = reranker.compress_documents(docs, QUERY)
    assert [d.metadata["i"] for d in got] == likelihood_order(emb)[:2]
    assert got[0].metadata["relevance_score"] == 1.0
    assert "relevance_score" not in docs[0].metadata  # the input is not changed


def test_langchain_compressor_mixes_in_the_first_stage_scores(embedder_factory):
    pytest.importorskip("langchain_core")
    from langchain_core.documents import Document

    from promptembed.langchain import PromptReranker

    emb = embedder_factory("llama")
    reranker = PromptReranker.from_embedder(emb, rerank=RerankConfig(top_k=4, weight=0.0))
    scores = [0.1, 0.9, 0.5, 0.3]
    docs = [Document(t, metadata={"score": s}) for t, s in zip(TEXTS, scores)]
    got = reranker.compress_documents(docs, QUERY)
    assert [d.metadata["score"] for d in got] == sorted(scores, reverse=True)


def test_llama_index_postprocessor_orders_by_likelihood(embedder_factory):
    pytest.importorskip("llama_index.core")
    from llama_index.core.schema import NodeWithScore, TextNode

    from promptembed.llama_index import PromptReranker

    emb = embedder_factory("llama")
    reranker = PromptReranker.from_embedder(emb, rerank=RerankConfig(top_k=4, weight=1.0))
    nodes = [
        NodeWithScore(node=TextNode(id_=str(i), text=t), score=0.5) for i, t in enumerate(TEXTS)
    ]
    got = reranker.postprocess_nodes(nodes, query_str=QUERY)
    assert [int(n.node.node_id) for n in got] == likelihood_order(emb)
    assert got[0].score == 1.0 and nodes[0].score == 0.5
    with pytest.raises(ValueError, match="query"):
        reranker.postprocess_nodes(nodes)


def test_from_config_takes_the_rerank_table(model_dirs):
    pytest.importorskip("langchain_core")
    from promptembed.langchain import PromptReranker

    cfg = {
        "embedder": {"model": str(model_dirs["llama"]), "device": "cpu"},
        "retrieval": {"rerank": {"top_k": 7, "weight": 0.3, "prompt": "zh"}},
    }
    reranker = PromptReranker.from_config(cfg, top_n=3)
    assert (reranker.rerank.top_k, reranker.rerank.weight, reranker.rerank.prompt) == (7, 0.3, "zh")
    assert reranker.top_n == 3
    with pytest.raises(ValueError, match="top_n"):
        PromptReranker.from_config(cfg, top_n=0)
