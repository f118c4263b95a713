"""Query-likelihood reranking on the dev collections: every first stage, with and without it.

For one collection and the first ``--queries`` judged queries, the script builds the
first stages with the library's own harness (``evaluation.retrieval.corpus_channels``
and ``fused_scores``, the corpus embedded once per config; vectors land in an embedding
cache so a rerun is cheap), scores each query's candidates by query likelihood ONCE
(``PromptEmbedder.query_likelihood``, the union of every first stage's top
``--top-k``), and then sweeps, with the library's ``retrieval.rerank.rerank``:

* first stage: ``bm25`` alone, ``dense`` alone, the config's fusion, and dense weights
  0.1-0.5 of min-max fusion; with ``sparse`` among the config's channels also sparse
  alone, sparse + BM25 and dense + sparse + BM25 fusions;
* reranker (on every stage but dense alone): ``top_k`` in 10, 20 (up to ``--top-k``)
  and ``weight`` in 0.3-1.0.

    python -m benchmarks.quality.rerank_dev --set scifact --queries 100 \\
        --config examples/configs/best-retrieval.toml \\
        --out benchmarks/quality/results/rerank-scifact.json

It prints one JSON object: nDCG@10 of every row, the cost of the likelihood pass
(seconds per (query, passage) pair) and of the corpus pass (seconds per document).
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

from benchmarks.common import DEV_SETS, emit, read_dev_set
from promptembed import PromptEmbedder
from promptembed.config import RerankConfig, load_config
from promptembed.evaluation.metrics import ndcg_recall
from promptembed.evaluation.retrieval import corpus_channels, fused_scores
from promptembed.retrieval.rerank import PairTable, rerank

DENSE = (0.1, 0.2, 0.3, 0.4, 0.5)
# Far below BM25 alone on every dev set: swept alone, never reranked (nor scored for it).
NOT_RERANKED = ("dense", "sparse")


def _ndcg(scored: dict[str, list[tuple[str, float]]], qrels: dict) -> float:
    ranked = {q: [d for d, _ in hits] for q, hits in scored.items()}
    return round(ndcg_recall(ranked, {q: qrels[q] for q in scored})[0], 4)


def first_stages(args, docs, qs) -> tuple[dict[str, dict], PromptEmbedder, float]:
    """Every first stage's scored top-100 per query, and the corpus pass's s/doc."""
    cfg = load_config(args.config)
    fields = {**cfg.embedder.model_dump(exclude_unset=True), "embedding_cache": args.cache}
    embedder = PromptEmbedder(**fields)
    qids = list(qs)
    start = time.perf_counter()
    runs = corpus_channels(embedder, docs, qs, cfg.retrieval)
    per_doc = (time.perf_counter() - start) / len(docs)
    stages = {name: dict(zip(qids, runs[name])) for name in runs}
    stages["config-fusion"] = fused_scores(runs, cfg.retrieval, qids)
    for name, weights in fusion_grid(runs):
        r = cfg.retrieval.model_copy(update={"channels": list(weights), "weights": weights})
        stages[name] = fused_scores({c: runs[c] for c in weights}, r, qids)
    return stages, embedder, per_doc


def fusion_grid(runs: dict) -> list[tuple[str, dict[str, float]]]:
    """Min-max fusions swept: dense (and, when the config has it, sparse) against BM25."""
    grid = [(f"fusion-dense{w}", {"dense": w, "bm25": round(1 - w, 2)}) for w in DENSE]
    if "sparse" in runs:
        for s in (0.1, 0.2, 0.3):
            grid.append((f"fusion-sparse{s}", {"sparse": s, "bm25": round(1 - s, 2)}))
            for w in (0.1, 0.2):
                weights = {"dense": w, "sparse": s, "bm25": round(1 - w - s, 2)}
                grid.append((f"fusion-dense{w}-sparse{s}", weights))
    return grid


def likelihoods(embedder, qs, docs, stages, depth: int, prompt: str, tokens: int, saved: Path):
    """Query likelihood of every (query, candidate) pair a reranked stage puts in its top ``depth``.

    Pairs already in ``saved`` (an earlier run's, same set, prompt and cut) are reused;
    the file is rewritten with the new ones.
    """
    reranked = [name for name in stages if name not in NOT_RERANKED]
    known = json.loads(saved.read_text("utf-8")) if saved.is_file() else {}
    table: dict[tuple[str, str], float] = {}
    pairs = 0
    start = time.perf_counter()
    for q, text in qs.items():
        cands = sorted(
            {d for name, st in stages.items() if name in reranked for d, _ in st[q][:depth]}
        )
        new = [d for d in cands if f"{q}\t{d}" not in known]
        if new:
            scores = embedder.query_likelihood(
                text, [docs[d] for d in new], prompt=prompt, max_passage_tokens=tokens, batch_size=8
            )
            known.update({f"{q}\t{d}": float(s) for d, s in zip(new, scores)})
            pairs += len(new)
        table.update({(text, docs[d]): known[f"{q}\t{d}"] for d in cands})
    seconds = time.perf_counter() - start
    saved.parent.mkdir(parents=True, exist_ok=True)
    tmp = saved.with_suffix(".tmp")
    tmp.write_text(json.dumps(known), encoding="utf-8")
    tmp.replace(saved)
    return table, (seconds / pairs if pairs else None), pairs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--set", choices=sorted(DEV_SETS), required=True)
    parser.add_argument("--queries", type=int, default=100)
    parser.add_argument("--config", default="examples/configs/best-retrieval.toml")
    parser.add_argument("--prompt", default="auto")
    parser.add_argument("--max-passage-tokens", type=int, default=128)
    parser.add_argument("--top-k", type=int, default=20)
    parser.add_argument("--cache", default=os.path.expanduser("~/.cache/promptembed/bench-vectors"))
    parser.add_argument(
        "--cache-likelihoods",
        type=Path,
        default=Path.home() / ".cache/promptembed/bench-qlm",
        help="Folder of scored (query, doc) pairs, reused by later runs.",
    )
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    docs, qs, qrels = read_dev_set(args.set, args.queries)
    stages, embedder, per_doc = first_stages(args, docs, qs)
    saved = args.cache_likelihoods / f"{args.set}-{args.prompt}-{args.max_passage_tokens}.json"
    table, per_pair, pairs = likelihoods(
        embedder, qs, docs, stages, args.top_k, args.prompt, args.max_passage_tokens, saved
    )
    memo = PairTable(table)
    rows = {}
    for name, stage in stages.items():
        rows[name] = _ndcg(stage, qrels)
        if name in NOT_RERANKED:
            continue
        for top_k in sorted({10, args.top_k}):
            for weight in (0.3, 0.5, 0.7, 0.9, 1.0):
                cfg = RerankConfig(top_k=top_k, weight=weight)
                reranked = {q: rerank(qs[q], stage[q], docs, memo, cfg) for q in qs}
                rows[f"{name}+qlm@{top_k}w{weight}"] = _ndcg(reranked, qrels)
    result = {
        "set": args.set,
        "queries": len(qs),
        "documents": len(docs),
        "config": args.config,
        "prompt": args.prompt,
        "max_passage_tokens": args.max_passage_tokens,
        "corpus_seconds_per_doc": round(per_doc, 4),
        "likelihood_seconds_per_pair": round(per_pair, 4) if per_pair else None,
        "pairs": pairs,
        "load": os.getloadavg(),
        "ndcg@10": rows,
    }
    emit(result, args.out)


if __name__ == "__main__":
    main()
