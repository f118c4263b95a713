"""SciFact (BEIR) retrieval: promptembed configs next to a BM25 baseline, same harness.

Both use promptembed.evaluation's readers and its nDCG@10 / Recall@100, so the numbers
are comparable. Document vectors go through the embedding cache, so trying several
query templates over one document template embeds the corpus once.

    python -m benchmarks.quality.retrieval --bm25
    python -m benchmarks.quality.retrieval --model smollm2-135m --template ke --max-length 256
    python -m benchmarks.quality.retrieval --config examples/configs/best-retrieval.toml

It prints one JSON line; ``benchmarks/quality/retrieval_runs.sh`` appends the BM25 row
to ``benchmarks/quality/results/scifact-train.jsonl``.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from benchmarks.common import SCIFACT
from promptembed.evaluation import ndcg_recall, read_beir


def bm25(docs: dict[str, str], queries: dict[str, str]) -> dict[str, list[str]]:
    """Top-100 per query with bm25s (English stopwords, no stemmer)."""
    import bm25s

    ids = list(docs)
    retriever = bm25s.BM25()
    retriever.index(
        bm25s.tokenize([docs[d] for d in ids], show_progress=False), show_progress=False
    )
    qids = list(queries)
    hits, _ = retriever.retrieve(
        bm25s.tokenize([queries[q] for q in qids], show_progress=False), k=100, show_progress=False
    )
    return {q: [ids[j] for j in row] for q, row in zip(qids, hits)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=SCIFACT)
    parser.add_argument("--split", default="train")
    parser.add_argument("--bm25", action="store_true", help="Run the BM25 baseline.")
    parser.add_argument("--config", type=Path, help="promptembed TOML config.")
    parser.add_argument("--model")
    parser.add_argument("--template")
    parser.add_argument("--query-template")
    parser.add_argument("--max-length", type=int)
    parser.add_argument(
        "--cache",
        default=str(Path.home() / ".cache/promptembed/embeddings"),
        help="Embedding cache directory ('' to disable).",
    )
    args = parser.parse_args()
    corpus, queries = args.data / "corpus.jsonl", args.data / "queries.jsonl"
    qrels = args.data / "qrels" / f"{args.split}.tsv"
    start = time.perf_counter()
    if args.bm25:
        docs, qs, judged = read_beir(corpus, queries, qrels)
        ndcg, recall = ndcg_recall(bm25(docs, qs), judged)
        row = {"system": "bm25s", "ndcg@10": round(ndcg, 4), "recall@100": round(recall, 4)}
    else:
        from promptembed import EmbedderConfig, PromptEmbedder, load_config
        from promptembed.evaluation import evaluate_retrieval

        base = load_config(args.config).embedder if args.config else EmbedderConfig()
        overrides = {
            k: v
            for k, v in {
                "model": args.model,
                "template": args.template,
                "query_template": args.query_template,
                "max_length": args.max_length,
                "embedding_cache": args.cache or None,
                "show_progress": True,
            }.items()
            if v
        }
        cfg = base.model_copy(update=overrides)
        result = evaluate_retrieval(PromptEmbedder(config=cfg), corpus, queries, qrels)
        row = {
            "system": "promptembed",
            **result.to_dict(),
            "model": cfg.model,
            "template": cfg.template,
            "query_template": cfg.query_template,
            "max_length": cfg.max_length,
            "calibration": cfg.calibration,
            "config": str(args.config) if args.config else None,
        }
    row.update(split=args.split, seconds=round(time.perf_counter() - start, 1))
    print(json.dumps(row))


if __name__ == "__main__":
    main()
