#!/usr/bin/env bash
# SciFact train queries: BM25 and the paper templates with the offline models, same
# harness (benchmarks/retrieval.py). Documents are cut at 256 tokens (title + the start
# of the abstract) to keep a CPU run near 10 minutes; vectors go to the embedding cache,
# so other query templates over the same documents are cheap. From the repo root.
set -euo pipefail
out=${1:-benchmarks/results/scifact-train.jsonl}
python benchmarks/retrieval.py --bm25 >> "$out"
for spec in smollm2-135m:ke smollm2-135m:eol gemma-3-270m:ke smollm2-135m:cot gemma-3-270m:eol gemma-3-270m:cot; do
  python benchmarks/retrieval.py --model "${spec%%:*}" --template "${spec##*:}" --max-length 256 >> "$out"
done
