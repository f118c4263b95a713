"""How the lexical side scales: a bm25s index over N synthetic chunks, its memory and query time.

Chunks are drawn from a Zipf vocabulary (100 tokens each, 200k distinct words), the
shape of real text; they are handed to the same ``LexicalIndex`` the store uses, so the
index is exactly what ``promptembed index`` would keep (tokenising real text adds the
tokenizer's time, not memory).

    python -m benchmarks.speed.lexical_scale --chunks 1000000

Prints one JSON line: build seconds, index size on disk, the loaded index's arrays,
the process's peak memory (building included), and median / p95 query latency for
5-word queries (k = 100).
"""

from __future__ import annotations

import argparse
import json
import resource
import tempfile
import time
from pathlib import Path

import numpy as np

from promptembed.retrieval import LexicalIndex


def synthetic(n: int, length: int, vocab: int, seed: int = 0) -> list[str]:
    rng = np.random.default_rng(seed)
    words = np.array([f"w{i}" for i in range(vocab)])
    ranks = np.minimum(rng.zipf(1.2, size=(n, length)), vocab) - 1
    return [" ".join(words[row]) for row in ranks]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--chunks", type=int, default=1_000_000)
    parser.add_argument("--length", type=int, default=100)
    parser.add_argument("--vocab", type=int, default=200_000)
    parser.add_argument("--queries", type=int, default=200)
    args = parser.parse_args()
    texts = synthetic(args.chunks, args.length, args.vocab)
    start = time.perf_counter()
    index = LexicalIndex([str(i) for i in range(len(texts))], texts, stemmer=None)
    build = time.perf_counter() - start
    del texts
    with tempfile.TemporaryDirectory() as tmp:
        index.save(Path(tmp) / "lex")
        disk = sum(f.stat().st_size for f in (Path(tmp) / "lex").iterdir())
        del index
        before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        loaded = LexicalIndex.load(Path(tmp) / "lex")
        arrays = sum(v.nbytes for v in loaded.bm25.scores.values() if hasattr(v, "nbytes"))
        queries = synthetic(args.queries, 5, args.vocab, seed=1)
        latencies = []
        for q in queries:
            t = time.perf_counter()
            loaded.search(q, 100)
            latencies.append(time.perf_counter() - t)
    print(
        json.dumps(
            {
                "chunks": args.chunks,
                "tokens_per_chunk": args.length,
                "build_s": round(build, 1),
                "disk_mb": round(disk / 2**20, 1),
                "index_arrays_mb": round(arrays / 2**20, 1),
                "peak_rss_mb_incl_build": round(before / 1024, 1),
                "query_ms_median": round(1000 * float(np.median(latencies)), 1),
                "query_ms_p95": round(1000 * float(np.percentile(latencies, 95)), 1),
            }
        )
    )


if __name__ == "__main__":
    main()
