"""Tables from ``rerank_dev`` results: every first stage and reranker, per collection.

    python -m benchmarks.quality.rerank_table benchmarks/quality/results/rerank-nfcorpus.json \\
        benchmarks/quality/results/rerank-scifact.json benchmarks/quality/results/rerank-cmrc.json

Prints, per collection, nDCG@10 of each first stage alone and with the reranker (best
weight per ``top_k``), then the settings ranked by their smallest gain over BM25 across
the collections given (the rule ``promptembed tune`` uses for fusion).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path


def _best(rows: dict[str, float], stage: str, top_k: int) -> tuple[float, str] | None:
    mine = {k: v for k, v in rows.items() if k.startswith(f"{stage}+qlm@{top_k}w")}
    if not mine:
        return None
    key = max(mine, key=lambda k: mine[k])
    return mine[key], key.split("w")[-1]


def per_collection(result: dict) -> str:
    """A Markdown table of one collection's rows."""
    rows = result["ndcg@10"]
    bm25 = rows["bm25"]
    lines = [
        f"{result['set']} ({result['queries']} queries, {result['documents']} documents; "
        f"config {result['config']})",
        "",
        "| first stage | alone | + rerank top 10 (best weight) | + rerank top 20 (best weight) |",
        "|---|---|---|---|",
    ]
    for stage in [k for k in rows if "+qlm" not in k]:  # every first stage, as swept
        cells = [f"{rows[stage]:.4f} ({rows[stage] - bm25:+.4f})"]
        for top_k in (10, 20):
            best = _best(rows, stage, top_k)
            cells.append(f"{best[0]:.4f} ({best[0] - bm25:+.4f}), w {best[1]}" if best else "–")
        lines.append(f"| {stage} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def robust(results: list[dict]) -> str:
    """Settings ranked by their smallest nDCG@10 gain over BM25 across the collections."""
    keys = set.intersection(*(set(r["ndcg@10"]) for r in results))
    gains = {k: [round(r["ndcg@10"][k] - r["ndcg@10"]["bm25"], 4) for r in results] for k in keys}
    order = sorted(gains, key=lambda k: -min(gains[k]))[:15]
    names = " | ".join(r["set"] for r in results)
    lines = [f"| setting | min gain | {names} |", "|---|---|" + "---|" * len(results)]
    for k in order:
        lines.append(
            f"| {k} | {min(gains[k]):+.4f} | " + " | ".join(f"{g:+.4f}" for g in gains[k]) + " |"
        )
    return "\n".join(lines)


def main() -> None:
    results = [json.loads(Path(p).read_text("utf-8")) for p in sys.argv[1:]]
    for result in results:
        print(per_collection(result), end="\n\n")
    if len(results) > 1:
        print(robust(results))


if __name__ == "__main__":
    main()
