"""SciFact train: BM25, dense, PromptReps sparse and their fusions, one harness, one table.

The corpus is embedded ONCE per (model, template): one forward pass per text gives the
dense vector (raw, before calibration) and the PromptReps sparse vector together
(``PromptEmbedder.embed_with_sparse``); both are stored, then every channel and fusion
is scored from the stored vectors with the library's own indexes and fusion
(``promptembed.retrieval``) and metrics (``promptembed.evaluation``).

    python -m benchmarks.quality.hybrid_scifact embed --model gemma-3-270m --template cot@-3 \\
        --query-template query@-3
    python -m benchmarks.quality.hybrid_scifact score --model gemma-3-270m --template cot@-3 \\
        --query-template query@-3 --out benchmarks/quality/results/scifact-hybrid.jsonl
    python -m benchmarks.quality.hybrid_scifact ratio --model gemma-3-270m --template cot@-3

``bm25`` and ``ratio`` print JSON lines; ``benchmarks/quality/hybrid_runs.sh`` stores
them under ``benchmarks/quality/results/``.

``ratio`` times dense-only against dense+sparse on the same documents, interleaved in
one process, and prints sparse/dense.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

from benchmarks.common import SCIFACT, model_dir
from promptembed.evaluation import read_beir

STORE = Path("/tmp/promptembed-hybrid")


def _stem(args: argparse.Namespace) -> Path:
    name = f"{args.model}-{args.template}-{args.query_template}-L{args.max_length}"
    return args.store / name.replace("/", "_")


def _embedder(args: argparse.Namespace, **fields: object):
    from promptembed import PromptEmbedder

    return PromptEmbedder(
        args.model,
        template=args.template,
        query_template=args.query_template,
        max_length=args.max_length,
        **fields,
    )


def embed(args: argparse.Namespace) -> None:
    """Store raw dense + sparse vectors of the corpus and the train queries."""
    import scipy.sparse

    docs, qs, _ = read_beir(*_paths(args))
    # The dense vectors also land in the embedding cache, so that `promptembed eval
    # retrieval --embedding-cache` reproduces a dense(+bm25) row without a second pass.
    embedder = _embedder(args, show_progress=True, embedding_cache=args.cache)
    stem = _stem(args)
    stem.mkdir(parents=True, exist_ok=True)
    for kind, texts in (("query", qs), ("document", docs)):
        start = time.perf_counter()
        dense, sparse = embedder.embed_with_sparse(list(texts.values()), kind=kind, raw=True)
        np.save(stem / f"{kind}-dense.npy", dense)
        scipy.sparse.save_npz(stem / f"{kind}-sparse.npz", sparse)
        meta = {"ids": list(texts), "seconds": round(time.perf_counter() - start, 1)}
        (stem / f"{kind}.json").write_text(json.dumps(meta))
        print(kind, len(texts), meta["seconds"], "s", flush=True)


def _paths(args: argparse.Namespace) -> tuple[Path, Path, Path]:
    return (
        args.data / "corpus.jsonl",
        args.data / "queries.jsonl",
        args.data / "qrels" / f"{args.split}.tsv",
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("command", choices=["bm25", "embed", "score", "write", "ratio"])
    parser.add_argument("--data", type=Path, default=SCIFACT)
    parser.add_argument("--split", default="train")
    parser.add_argument("--store", type=Path, default=STORE)
    parser.add_argument("--model", default="gemma-3-270m")
    parser.add_argument("--template", default="cot@-3")
    parser.add_argument("--query-template", default="query@-3")
    parser.add_argument("--max-length", type=int, default=128)
    parser.add_argument("--out", type=Path, help="Append scored rows (JSON lines) here.")
    parser.add_argument("--config", type=Path, default=Path("examples/configs/best-retrieval.toml"))
    parser.add_argument("--stemmer", default="english", help="BM25 stemmer ('' for none).")
    parser.add_argument("--calibrations", nargs="+", default=["none", "center", "whiten-128"])
    parser.add_argument("--cache", default=str(Path.home() / ".cache/promptembed/embeddings"))
    parser.add_argument("--ratio-docs", type=int, default=128)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    {"bm25": bm25, "embed": embed, "score": score, "write": write, "ratio": ratio}[args.command](
        args
    )


def _load(stem: Path, kind: str) -> tuple[list[str], np.ndarray, object]:
    import scipy.sparse

    ids = json.loads((stem / f"{kind}.json").read_text())["ids"]
    return (
        ids,
        np.load(stem / f"{kind}-dense.npy"),
        scipy.sparse.load_npz(stem / f"{kind}-sparse.npz"),
    )


def _without_blank(model: str, *matrices: object) -> list[object]:
    """Drop bare word-start tokens (``▁``) from stored sparse rows.

    Vectors stored before ``WordIds`` learnt to skip them are brought to what the
    library computes now (exact unless a row was cut at the top-k limit).
    """
    import scipy.sparse
    from transformers import AutoTokenizer

    from promptembed.engine.sparse import blank_token_ids

    tokenizer = AutoTokenizer.from_pretrained(model_dir(model))
    out = []
    for m in matrices:
        keep = np.ones(m.shape[1], dtype=np.float32)
        keep[blank_token_ids(tokenizer)] = 0
        cleaned = (m @ scipy.sparse.diags(keep)).tocsr()
        cleaned.eliminate_zeros()
        out.append(cleaned)
    return out


def _calibrated(docs: np.ndarray, queries: np.ndarray, method: str) -> tuple[np.ndarray, ...]:
    """Dense vectors as the embedder outputs them with a calibration fitted on the corpus."""
    from promptembed.engine.calibration import Calibration

    if method == "none":
        return docs, queries
    kind, _, dims = method.partition("-")
    cal = Calibration.fit(docs, method=kind, dims=int(dims) if dims else None)
    return cal.apply(docs), cal.apply(queries)


def _rows(runs: dict, qids: list[str], judged: dict) -> list[dict]:
    """Every channel alone and every fusion of a grid of weights (and RRF)."""
    from promptembed.config import RetrievalConfig
    from promptembed.evaluation import ndcg_recall
    from promptembed.evaluation.tuning import score_retrieval

    def row(**fields: object) -> dict:
        scored = score_retrieval(runs, RetrievalConfig(**fields), qids, judged)
        cfg = scored.retrieval
        return {
            "channels": cfg.active,
            "fusion": cfg.fusion if cfg.mode == "hybrid" else None,
            "weights": cfg.weights,
            "ndcg@10": scored.ndcg_at_10,
            "recall@100": scored.recall_at_100,
        }

    out = []
    for name in runs:  # one channel alone: hybrid of one is not a config, rank it directly
        ranked = {q: [d for d, _ in runs[name][i]] for i, q in enumerate(qids)}
        ndcg, recall = ndcg_recall(ranked, judged)
        out.append(
            {
                "channels": [name],
                "fusion": None,
                "weights": {},
                "ndcg@10": round(ndcg, 4),
                "recall@100": round(recall, 4),
            }
        )
    grid = [round(x, 2) for x in np.arange(0.0, 1.01, 0.1)]
    for pair in (["dense", "sparse"], ["dense", "bm25"], ["sparse", "bm25"]):
        out.append(row(mode="hybrid", channels=pair, fusion="rrf"))
        for w in grid[1:-1]:
            out.append(row(mode="hybrid", channels=pair, weights={pair[0]: w, pair[1]: 1 - w}))
    trio = ["dense", "sparse", "bm25"]
    out.append(row(mode="hybrid", channels=trio, fusion="rrf"))
    for wd in grid[1:-1]:
        for ws in grid[1:-1]:
            if wd + ws < 0.95:
                weights = {"dense": wd, "sparse": ws, "bm25": round(1 - wd - ws, 2)}
                out.append(row(mode="hybrid", channels=trio, weights=weights))
    return out


def score(args: argparse.Namespace) -> None:
    """All channels and fusions from the stored vectors; best row per channel set."""
    from promptembed.config import RetrievalConfig
    from promptembed.evaluation.retrieval import sparse_runs
    from promptembed.retrieval import dense_hits, lexical_index

    docs, qs, judged = read_beir(*_paths(args))
    stem = _stem(args)
    doc_ids, d_dense, d_sparse = _load(stem, "document")
    qids, q_dense, q_sparse = _load(stem, "query")
    d_sparse, q_sparse = _without_blank(args.model, d_sparse, q_sparse)
    texts = [docs[d] for d in doc_ids]
    lexical = RetrievalConfig(stemmer=args.stemmer)
    index = lexical_index(doc_ids, texts, lexical)
    bm25 = [index.search(qs[q], 100) for q in qids]
    sparse = sparse_runs(q_sparse, d_sparse, doc_ids, 100)
    results = []
    for method in args.calibrations:
        d_vec, q_vec = _calibrated(d_dense, q_dense, method)
        runs = {"dense": dense_hits(q_vec, d_vec, doc_ids, 100), "sparse": sparse, "bm25": bm25}
        for r in _rows(runs, qids, judged):
            results.append(
                {
                    "model": args.model,
                    "template": args.template,
                    "query_template": args.query_template,
                    "max_length": args.max_length,
                    "calibration": method,
                    "stemmer": args.stemmer,
                    **r,
                }
            )
    best: dict[str, dict] = {}
    for r in results:
        key = "+".join(r["channels"]) + (" rrf" if r["fusion"] == "rrf" else "")
        if key not in best or r["ndcg@10"] > best[key]["ndcg@10"]:
            best[key] = r
    for key, r in best.items():
        print(
            f"{key:24s} nDCG@10 {r['ndcg@10']:.4f}  R@100 {r['recall@100']:.4f}  "
            f"cal={r['calibration']} weights={r['weights']}"
        )
    if args.out:
        with args.out.open("a") as fh:
            fh.writelines(json.dumps(r) + "\n" for r in results)


def bm25(args: argparse.Namespace) -> None:
    """The lexical channel alone: stemming on/off and a few (k1, b), tuned on train only."""
    from promptembed.config import RetrievalConfig
    from promptembed.evaluation import ndcg_recall
    from promptembed.retrieval import lexical_index

    docs, qs, judged = read_beir(*_paths(args))
    for stemmer in ("", "english"):
        for k1, b in ((1.2, 0.75), (1.5, 0.75), (0.9, 0.4), (1.2, 0.9), (1.5, 1.0)):
            cfg = RetrievalConfig(stemmer=stemmer, bm25_k1=k1, bm25_b=b)
            index = lexical_index(list(docs), list(docs.values()), cfg)
            ranked = {q: [d for d, _ in index.search(qs[q], 100)] for q in qs}
            ndcg, recall = ndcg_recall(ranked, judged)
            row = {
                "channels": ["bm25"],
                "stemmer": stemmer,
                "k1": k1,
                "b": b,
                "ndcg@10": round(ndcg, 4),
                "recall@100": round(recall, 4),
            }
            print(json.dumps(row), flush=True)


def write(args: argparse.Namespace) -> None:
    """Ship the best store-ready row (channels dense/bm25, no calibration) as a config."""
    import tomlkit

    rows = [json.loads(line) for line in args.out.read_text().splitlines() if line.strip()]
    mine = [
        r
        for r in rows
        if r["model"] == args.model
        and r["template"] == args.template
        and r["max_length"] == args.max_length
        and r["calibration"] == "none"  # the embedding cache replays uncalibrated vectors
        and set(r["channels"]) <= {"dense", "bm25"}
        and len(r["channels"]) > 1
    ]
    best = max(mine, key=lambda r: (r["ndcg@10"], r["recall@100"]))
    doc = tomlkit.document()
    doc.add(
        tomlkit.comment(
            f"SciFact train: nDCG@10 {best['ndcg@10']}, Recall@100 "
            f"{best['recall@100']} (python -m benchmarks.quality.hybrid_scifact write)"
        )
    )
    doc["embedder"] = {
        "model": args.model,
        "template": args.template,
        "query_template": args.query_template,
        "max_length": args.max_length,
    }
    retrieval = {"mode": "hybrid", "channels": best["channels"], "fusion": best["fusion"]}
    if best["weights"]:
        retrieval["weights"] = best["weights"]
    doc["retrieval"] = {**retrieval, "candidates": 100, "stemmer": best["stemmer"]}
    args.config.write_text(tomlkit.dumps(doc), encoding="utf-8")
    print(args.config, best)


def ratio(args: argparse.Namespace) -> None:
    """Corpus time with sparse over dense-only, interleaved in one process."""
    docs, _, _ = read_beir(*_paths(args))
    texts = list(docs.values())[: args.ratio_docs]
    embedder = _embedder(args)
    embedder.embed_with_sparse(texts[:8])  # load the head, warm up both routes
    embedder.embed(texts[:8])
    times: dict[str, list[float]] = {"dense": [], "sparse": []}
    for _ in range(args.repeats):
        for name, run in (("dense", embedder.embed), ("sparse", embedder.embed_with_sparse)):
            start = time.perf_counter()
            run(texts)
            times[name].append(time.perf_counter() - start)
    dense, sparse = min(times["dense"]), min(times["sparse"])
    print(
        json.dumps(
            {
                "model": args.model,
                "template": args.template,
                "docs": len(texts),
                "max_length": args.max_length,
                "dense_s": round(dense, 2),
                "dense+sparse_s": round(sparse, 2),
                "ratio": round(sparse / dense, 3),
            }
        )
    )


if __name__ == "__main__":
    main()
