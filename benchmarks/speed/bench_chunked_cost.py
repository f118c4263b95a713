"""What embedding documents whole (as chunks) costs against the 48-token cut, per document.

For ``--docs`` documents of a dev collection, two library paths, interleaved
``--rounds`` times in one process, best time kept:

* cut: ``best-retrieval.toml``'s embedder, each document cut to its ``max_length`` (48);
* chunked: each document cut by the indexer's splitter
  (``evaluation.retrieval.split_documents``, ``--chunk-size`` / ``--chunk-overlap``) and
  every chunk embedded with ``--chunk-max-length``.

It prints seconds per document for each, their ratio, and chunks and tokens per
document. The corpus pass of ``eval retrieval --chunked`` scales by that ratio.

    python -m benchmarks.speed.bench_chunked_cost --set nfcorpus --docs 48 \\
        --out benchmarks/speed/results/chunked-cost-nfcorpus.json

Run it alone; the load average is printed with the figures.
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

from benchmarks.common import DEV_SETS, emit, read_dev_set
from promptembed import PromptEmbedder
from promptembed.config import IndexConfig, load_config
from promptembed.evaluation.retrieval import split_documents


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--set", choices=sorted(DEV_SETS), required=True)
    parser.add_argument("--docs", type=int, default=48)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--config", default="examples/configs/best-retrieval.toml")
    parser.add_argument("--chunk-size", type=int, default=64)
    parser.add_argument("--chunk-overlap", type=int, default=8)
    parser.add_argument("--chunk-max-length", type=int, default=80)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    docs, _, _ = read_dev_set(args.set)
    docs = dict(list(docs.items())[: args.docs])
    fields = load_config(args.config).embedder.model_dump(exclude_unset=True)
    cut = PromptEmbedder(**fields)
    chunked = PromptEmbedder(**{**fields, "max_length": args.chunk_max_length})
    chunking = IndexConfig(chunk_size=args.chunk_size, chunk_overlap=args.chunk_overlap)
    passages, _ = split_documents(docs, chunking)
    runs = {"cut": (cut, list(docs.values())), "chunked": (chunked, list(passages.values()))}
    seconds: dict[str, list[float]] = {name: [] for name in runs}
    for r in range(args.rounds + 1):  # round 0 warms both up and is not counted
        for name in list(runs) if r % 2 else list(runs)[::-1]:
            embedder, texts = runs[name]
            start = time.perf_counter()
            embedder.embed(texts)
            if r:
                seconds[name].append(time.perf_counter() - start)
    best = {name: min(v) for name, v in seconds.items()}
    tokens = [len(chunked.tokenizer(p)["input_ids"]) for p in passages.values()]
    result = {
        "set": args.set,
        "documents": len(docs),
        "chunking": chunking.model_dump(),
        "chunk_max_length": args.chunk_max_length,
        "chunks_per_document": round(len(passages) / len(docs), 2),
        "chunk_tokens_per_document": round(sum(tokens) / len(docs), 1),
        "seconds_per_document": {k: round(v / len(docs), 4) for k, v in best.items()},
        "ratio_chunked_over_cut": round(best["chunked"] / best["cut"], 2),
        "load": os.getloadavg(),
        "threads": int(os.environ.get("OMP_NUM_THREADS", "0")) or None,
    }
    emit(result, args.out)


if __name__ == "__main__":
    main()
