#!/usr/bin/env bash
# SciFact train, full corpus: BM25, dense, PromptReps sparse and their fusions for both
# offline models, one harness (promptembed.evaluation + promptembed.retrieval). One forward
# pass per (model, template) over the corpus captures dense and sparse vectors together
# (and fills the embedding cache with the dense ones); every row is scored from them.
#   bash benchmarks/quality/hybrid_runs.sh        (from the repo root)
# Outputs: benchmarks/quality/results/scifact-{bm25-variants,hybrid}.jsonl,
# scifact-best-retrieval.json and sparse-vs-dense-time-gemma.json.
set -euo pipefail
data=${SCIFACT_DIR:-../shared/data/scifact}
res=benchmarks/quality/results
run() { python -m benchmarks.quality.hybrid_scifact "$@" --data "$data"; }
run bm25 > $res/scifact-bm25-variants.jsonl   # the lexical channel alone, tuned on train
gemma=(--model gemma-3-270m --template cot@-3 --query-template query@-3 --max-length 48)
smol=(--model smollm2-135m --template cot --query-template cot --max-length 48)
for m in gemma smol; do
  declare -n args=$m
  run embed "${args[@]}"
  run score "${args[@]}" --calibrations none center --out $res/scifact-hybrid.jsonl
done
# Ship the best dense+bm25 row of Gemma and reproduce it through the CLI (the dense
# vectors come from the embedding cache the embed step filled).
run write "${gemma[@]}" --out $res/scifact-hybrid.jsonl
promptembed eval retrieval --config examples/configs/best-retrieval.toml --json \
  --embedding-cache ~/.cache/promptembed/embeddings \
  --corpus "$data/corpus.jsonl" --queries "$data/queries.jsonl" --qrels "$data/qrels/train.tsv" \
  | tee $res/scifact-best-retrieval.json
# Sparse-from-logits corpus time over dense-only (interleaved in one process).
run ratio --model gemma-3-270m --template cot@-3 --max-length 128 --ratio-docs 16 --repeats 2 \
  | tee $res/sparse-vs-dense-time-gemma.json
