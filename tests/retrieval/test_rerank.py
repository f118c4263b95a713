"""Query-likelihood reranking: the interpolation contract, and the one ranking on every path."""

from __future__ import annotations

import json

import numpy as np
import pytest
from pydantic import ValidationError

from promptembed.config import RerankConfig, load_config
from promptembed.retrieval.rerank import check_reranker, rerank


class Scorer:
    """Scores passages from a table and records what it was asked."""

    def __init__(self, scores: dict[str, float]) -> None:
        self.scores = scores
        self.asked: list[tuple[str, list[str], dict]] = []

    def query_likelihood(self, query, passages, **options):
        self.asked.append((query, list(passages), options))
        return np.array([self.scores[p] for p in passages])


RANKED = [("a", 9.0), ("b", 7.0), ("c", 5.0), ("d", 1.0)]
TEXTS = {"a": "ta", "b": "tb", "c": "tc", "d": "td"}


def test_weight_one_is_the_likelihood_order_and_the_rest_keeps_its_place():
    scorer = Scorer({"ta": -3.0, "tb": -1.0, "tc": -2.0})
    got = rerank("q", RANKED, TEXTS, scorer, RerankConfig(top_k=3, weight=1.0))
    assert [d for d, _ in got] == ["b", "c", "a", "d"]
    assert [s for _, s in got][:3] == [1.0, 0.5, 0.0]
    assert scorer.asked[0][1] == ["ta", "tb", "tc"]  # only the top_k are scored


def test_scores_mix_min_max_normalised_likelihood_and_first_stage():
    scorer = Scorer({"ta": -3.0, "tb": -1.0, "tc": -2.0})
    got = dict(rerank("q", RANKED, TEXTS, scorer, RerankConfig(top_k=3, weight=0.25)))
    # first stage over the top 3: a 1.0, b 0.5, c 0.0; likelihood: a 0, b 1, c 0.5
    assert got["a"] == pytest.approx(0.75)
    assert got["b"] == pytest.approx(0.25 + 0.375)
    assert got["c"] == pytest.approx(0.125)
    assert got["d"] <= 0.0  # below every reranked candidate
    ordered = [s for _, s in rerank("q", RANKED, TEXTS, scorer, RerankConfig(top_k=3, weight=0.25))]
    assert ordered == sorted(ordered, reverse=True)


def test_weight_zero_keeps_the_first_stage_order():
    scorer = Scorer({"ta": -3.0, "tb": -1.0, "tc": -2.0, "td": 0.0})
    got = rerank("q", RANKED, TEXTS, scorer, RerankConfig(top_k=4, weight=0.0))
    assert [d for d, _ in got] == ["a", "b", "c", "d"]


def test_options_reach_the_scorer():
    scorer = Scorer({"ta": 0.0})
    cfg = RerankConfig(top_k=1, prompt="zh", max_passage_tokens=7, batch_size=3)
    rerank("q", RANKED, TEXTS, scorer, cfg)
    assert scorer.asked[0][2] == {"prompt": "zh", "max_passage_tokens": 7, "batch_size": 3}


@pytest.mark.parametrize(
    ("table", "words"),
    [
        ({"prompt": "Question:"}, "{passage}"),
        ({"top_k": 0}, "top_k"),
        ({"weight": 1.5}, "weight"),
        ({"method": "cross-encoder"}, "query-likelihood"),
        ({"topk": 5}, "topk"),
    ],
)
def test_a_bad_rerank_table_is_refused_naming_it(table, words):
    with pytest.raises(ValidationError, match="rerank") as info:
        load_config({"retrieval": {"rerank": table}})
    assert words in str(info.value)


def test_an_embedder_without_likelihood_is_refused():
    with pytest.raises(ValueError, match="client mode"):
        check_reranker(object())


# -- on a real store -----------------------------------------------------------------------
pytest.importorskip("chromadb")
pytest.importorskip("llama_index.core")

from promptembed.ingest.pipeline import index_paths  # noqa: E402
from promptembed.retrieval import HybridRetriever, fused_ranking, retrieve  # noqa: E402
from tests.helpers import store_config, write_corpus  # noqa: E402

RERANK = {"top_k": 4, "weight": 0.6}


def _cfg(tmp_path, model_dirs, **retrieval):
    cfg = store_config(model_dirs["llama"], tmp_path / "db")
    return load_config(
        {**cfg, "index": {"chunk_size": 32, "chunk_overlap": 0}, "retrieval": retrieval}
    )


@pytest.fixture
def indexed(tmp_path, model_dirs, embedder_factory):
    cfg = _cfg(
        tmp_path,
        model_dirs,
        mode="hybrid",
        weights={"dense": 0.3, "bm25": 0.7},
        candidates=10,
        rerank=RERANK,
    )
    index_paths([write_corpus(tmp_path)], cfg, embedder=embedder_factory("llama"))
    return cfg


def test_retriever_reranks_the_fused_candidates(indexed):
    retriever = HybridRetriever(indexed)
    query = "where are the flowers"
    fused = fused_ranking(retriever.channels(query, 10), indexed.retrieval, 4)
    texts = dict(
        zip(
            *(lambda g: (g["ids"], g["documents"]))(
                retriever.collection.get(ids=[d for d, _ in fused], include=["documents"])
            )
        )
    )
    want = rerank(query, fused, texts, retriever.embedder, indexed.retrieval.rerank)[:3]
    got = [(h.id, h.score) for h in retriever.search(query, 3)]
    assert got == [(d, pytest.approx(s)) for d, s in want]


def test_rerank_applies_in_dense_mode_and_on_the_cli(tmp_path, model_dirs, embedder_factory):
    from typer.testing import CliRunner

    from promptembed.cli import app

    cfg = _cfg(tmp_path, model_dirs, rerank=RERANK)
    index_paths([write_corpus(tmp_path)], cfg, embedder=embedder_factory("llama"))
    retriever = HybridRetriever(cfg)
    query = "preheat the oven"
    dense = retriever.channels(query, 100)["dense"][:4]
    texts = dict(
        zip(
            *(lambda g: (g["ids"], g["documents"]))(
                retriever.collection.get(ids=[d for d, _ in dense], include=["documents"])
            )
        )
    )
    want = rerank(query, dense, texts, retriever.embedder, cfg.retrieval.rerank)[:3]
    hits = retrieve(cfg, query, k=3)
    assert [(h.id, h.score) for h in hits] == [(d, pytest.approx(s)) for d, s in want]
    toml = tmp_path / "rerank.toml"
    toml.write_text(
        f'[embedder]\nmodel = "{model_dirs["llama"].as_posix()}"\ndevice = "cpu"\n'
        f'[store]\npath = "{(tmp_path / "db").as_posix()}"\ncollection = "docs"\n'
        "[retrieval.rerank]\ntop_k = 4\nweight = 0.6\n",
        encoding="utf-8",
    )
    args = ["query", query, "-k", "3", "--config", str(toml), "--json"]
    out = CliRunner().invoke(app, args)
    assert out.exit_code == 0, out.output
    assert [json.loads(x)["id"] for x in out.stdout.splitlines()] == [h.id for h in hits]


class Oracle:
    """The tiny embedder, with a likelihood that knows the relevant passage."""

    def __init__(self, embedder, relevant: str) -> None:
        self.embedder, self.relevant = embedder, relevant

    def __getattr__(self, name):
        return getattr(self.embedder, name)

    def query_likelihood(self, query, passages, **_):
        return np.array([0.0 if p == self.relevant else -5.0 for p in passages])


def test_eval_retrieval_ranks_by_the_reranker(tmp_path, embedder_factory):
    from promptembed.evaluation.retrieval import evaluate_retrieval
    from tests.helpers import RETRIEVAL_DOCS

    corpus = tmp_path / "corpus.jsonl"
    corpus.write_text(
        "\n".join(json.dumps({"_id": k, "text": v}) for k, v in RETRIEVAL_DOCS.items()),
        encoding="utf-8",
    )
    (tmp_path / "q.jsonl").write_text(json.dumps({"_id": "q", "text": "flowers"}))
    (tmp_path / "qrels.tsv").write_text("query-id\tcorpus-id\tscore\nq\ttomato-zh\t1\n")
    oracle = Oracle(embedder_factory("llama"), RETRIEVAL_DOCS["tomato-zh"])
    base = load_config({"retrieval": {"mode": "hybrid", "candidates": 10}}).retrieval
    paths = (corpus, tmp_path / "q.jsonl", tmp_path / "qrels.tsv")
    plain = evaluate_retrieval(oracle, *paths, base)
    rerank_all = base.model_copy(update={"rerank": RerankConfig(top_k=4, weight=1.0)})
    assert plain.ndcg_at_10 < 1.0  # BM25 and dense do not put the tomato first for flowers
    assert evaluate_retrieval(oracle, *paths, rerank_all).ndcg_at_10 == 1.0


def test_rerank_all_equals_rerank_query_by_query(embedder_factory):
    from promptembed.retrieval.rerank import rerank_all

    emb = embedder_factory("llama")
    texts = {
        "a": "Bees store honey in wax cells.",
        "b": "Preheat the oven before baking bread.",
        "c": "Green tea is brewed below boiling.",
        "d": "蜜蜂把蜂蜜存放在蜡质巢房里。",
    }
    queries = {"q1": "where do bees keep honey", "q2": "tea water", "q3": "蜂蜜在哪里"}
    scored = {  # candidates shared between queries, as in a real evaluation
        "q1": [("a", 3.0), ("d", 2.5), ("b", 1.0), ("c", 0.5)],
        "q2": [("c", 2.0), ("a", 1.5), ("b", 1.2)],
        "q3": [("d", 4.0), ("a", 1.0)],
    }
    cfg = RerankConfig(top_k=3, weight=0.8)
    together = rerank_all(queries, scored, texts, emb, cfg)
    for q, hits in scored.items():
        alone = rerank(queries[q], hits, texts, emb, cfg)
        assert [d for d, _ in together[q]] == [d for d, _ in alone]
        np.testing.assert_allclose([s for _, s in together[q]], [s for _, s in alone], atol=1e-4)
