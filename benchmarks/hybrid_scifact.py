"""SciFact train: BM25, dense, PromptReps sparse and their fusions, one harness, one table.

The corpus is embedded ONCE per (model, template): one forward pass per text gives the
dense vector (raw, before calibration) and the PromptReps sparse vector together
(``PromptEmbedder.embed_with_sparse``); both are stored, then every channel and fusion
is scored from the stored vectors with the library's own indexes and fusion
(``promptembed.retrieval``) and metrics (``promptembed.evaluate``).

    python benchmarks/hybrid_scifact.py embed --model gemma-3-270m --template cot@-3 \\
        --query-template query@-3
    python benchmarks/hybrid_scifact.py score --model gemma-3-270m --template cot@-3 \\
        --query-template query@-3
    python benchmarks/hybrid_scifact.py ratio --model gemma-3-270m --template cot@-3

``ratio`` times dense-only against dense+sparse on the same documents, interleaved in
one process, and prints sparse/dense.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

from promptembed.evaluate import read_beir

DATA = Path("../shared/data/scifact")
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
    embedder = _embedder(args, show_progress=True)
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
    parser.add_argument("command", choices=["embed", "score", "ratio"])
    parser.add_argument("--data", type=Path, default=DATA)
    parser.add_argument("--split", default="train")
    parser.add_argument("--store", type=Path, default=STORE)
    parser.add_argument("--model", default="gemma-3-270m")
    parser.add_argument("--template", default="cot@-3")
    parser.add_argument("--query-template", default="query@-3")
    parser.add_argument("--max-length", type=int, default=128)
    parser.add_argument("--out", type=Path, help="Append scored rows (JSON lines) here.")
    args = parser.parse_args()
    {"embed": embed, "score": score, "ratio": ratio}[args.command](args)


def score(args: argparse.Namespace) -> None:  # filled in below
    raise SystemExit("not yet")


def ratio(args: argparse.Namespace) -> None:  # filled in below
    raise SystemExit("not yet")


if __name__ == "__main__":
    main()
