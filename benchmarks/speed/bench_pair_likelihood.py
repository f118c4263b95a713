"""Batch reranking: each passage run once for all its queries, against one pass per pair.

For the first ``--queries`` queries of a dev collection, BM25's top ``--top-k`` gives the
(query, passage) pairs an evaluation reranks. Both library paths score the same pairs,
interleaved ``--rounds`` times in one process:

* per query: ``PromptEmbedder.query_likelihood(query, passages)`` (one full pass per pair;
  what an interactive query costs);
* batched: ``PromptEmbedder.pair_likelihoods(pairs)`` (each passage's prompt once, its
  queries against the cached keys and values; what ``eval retrieval`` now runs).

It prints the seconds of each, their ratio, how often a passage repeats (the saving
grows with it: a whole dev set repeats more than a sample) and the largest score
difference between the paths.

    python -m benchmarks.speed.bench_pair_likelihood --set cmrc --queries 40 \\
        --out benchmarks/speed/results/pair-likelihood-cmrc.json

Run it alone; the load average is printed with the figures.
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

import numpy as np

from benchmarks.common import DEV_SETS, emit, read_dev_set
from promptembed import PromptEmbedder
from promptembed.config import load_config
from promptembed.retrieval import lexical_index


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--set", choices=sorted(DEV_SETS), required=True)
    parser.add_argument("--queries", type=int, default=40)
    parser.add_argument("--top-k", type=int, default=20)
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--config", default="examples/configs/best-retrieval.toml")
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    docs, qs, _ = read_dev_set(args.set, args.queries)
    cfg = load_config(args.config)
    rr = cfg.retrieval.rerank
    index = lexical_index(list(docs), list(docs.values()), cfg.retrieval)
    cands = {q: [docs[d] for d, _ in index.search(t, args.top_k)] for q, t in qs.items()}
    pairs = [(qs[q], p) for q in qs for p in cands[q]]
    embedder = PromptEmbedder(**cfg.embedder.model_dump(exclude_unset=True))
    opts = {"prompt": rr.prompt, "max_passage_tokens": rr.max_passage_tokens}

    def per_query() -> np.ndarray:
        return np.concatenate([embedder.query_likelihood(qs[q], cands[q], **opts) for q in qs])

    def batched() -> np.ndarray:
        return embedder.pair_likelihoods(pairs, **opts)

    seconds: dict[str, list[float]] = {"per_query": [], "batched": []}
    scores = {}
    for r in range(args.rounds):
        order = [("per_query", per_query), ("batched", batched)]
        for name, call in order if r % 2 == 0 else order[::-1]:
            start = time.perf_counter()
            scores[name] = call()
            seconds[name].append(time.perf_counter() - start)
    best = {k: min(v) for k, v in seconds.items()}
    result = {
        "set": args.set,
        "queries": len(qs),
        "pairs": len(pairs),
        "unique_passages": len({p for _, p in pairs}),
        "repeats_per_passage": round(len(pairs) / len({p for _, p in pairs}), 2),
        "seconds": {k: round(v, 1) for k, v in best.items()},
        "seconds_per_pair": {k: round(v / len(pairs), 4) for k, v in best.items()},
        "speedup": round(best["per_query"] / best["batched"], 2),
        "max_abs_difference": float(np.max(np.abs(scores["per_query"] - scores["batched"]))),
        "load": os.getloadavg(),
        "model": cfg.embedder.model,
    }
    emit(result, args.out)


if __name__ == "__main__":
    main()
