"""What each retrieval configuration costs against BM25 alone, as ratios, in one process.

For one dev collection, with the config's embedder (``best-retrieval*.toml``):

* corpus side: the BM25 index build over the whole corpus, and the dense pass over
  ``--docs`` documents (scaled to the corpus); the reranker adds nothing here;
* query side, per query (medians over ``--queries`` queries): BM25 search, the dense
  query vector, and the query-likelihood rerank of ``top_k`` candidates (10 and 20).

    python -m benchmarks.speed.bench_rerank_cost --set nfcorpus \\
        --config examples/configs/best-retrieval.toml \\
        --out benchmarks/speed/results/rerank-cost-nfcorpus.json

Run it alone: the ratios are only as good as the machine is quiet (the load average is
printed with them).
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from pathlib import Path

from benchmarks.common import DEV_SETS, emit, read_dev_set
from promptembed import PromptEmbedder
from promptembed.config import RerankConfig, load_config
from promptembed.retrieval import lexical_index
from promptembed.retrieval.rerank import rerank


def _median_seconds(calls) -> float:
    times = []
    for call in calls:
        start = time.perf_counter()
        call()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--set", choices=sorted(DEV_SETS), required=True)
    parser.add_argument("--config", default="examples/configs/best-retrieval.toml")
    parser.add_argument("--docs", type=int, default=128)
    parser.add_argument("--queries", type=int, default=5)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    docs, qs, _ = read_dev_set(args.set)
    cfg = load_config(args.config)
    ids, texts = list(docs), list(docs.values())

    start = time.perf_counter()
    index = lexical_index(ids, texts, cfg.retrieval)
    bm25_build = time.perf_counter() - start
    embedder = PromptEmbedder(**cfg.embedder.model_dump(exclude_unset=True))
    embedder.embed(texts[:8])  # warm
    start = time.perf_counter()
    embedder.embed(texts[: args.docs])
    dense_corpus = (time.perf_counter() - start) / args.docs * len(texts)

    sample = list(qs.values())[: args.queries]
    bm25_query = _median_seconds([lambda q=q: index.search(q, 100) for q in sample])
    dense_query = _median_seconds([lambda q=q: embedder.embed([q], kind="query") for q in sample])
    rerank_query = {}
    for top_k in (10, 20):
        rc = RerankConfig(top_k=top_k)
        calls = [
            lambda q=q, k=top_k, c=rc: rerank(q, index.search(q, k), docs, embedder, c)
            for q in sample
        ]
        rerank_query[top_k] = _median_seconds(calls) - bm25_query
    result = {
        "set": args.set,
        "config": args.config,
        "documents": len(texts),
        "bm25_build_s": round(bm25_build, 2),
        "dense_corpus_s": round(dense_corpus, 1),
        "corpus_ratio_dense_plus_bm25_over_bm25": round((dense_corpus + bm25_build) / bm25_build),
        "bm25_query_ms": round(bm25_query * 1000, 2),
        "dense_query_ms": round(dense_query * 1000, 1),
        "rerank_query_s": {k: round(v, 2) for k, v in rerank_query.items()},
        "query_ratio_rerank10_over_bm25": round(rerank_query[10] / bm25_query),
        "load": os.getloadavg(),
        "threads": os.cpu_count(),
    }
    emit(result, args.out)


if __name__ == "__main__":
    main()
