#!/usr/bin/env bash
# SciFact train queries (BEIR format): BM25 and every prompt configuration of both offline
# models, same harness and metrics (promptembed.evaluation). From the repo root
# (bash benchmarks/quality/retrieval_runs.sh); about
# 10-13 minutes per (model, document template) on 2 quiet CPU cores, 6 passes in all.
#  1. BM25 baseline (bm25s).
#  2. One pass per (model, document template) over the corpus, documents cut at 128
#     tokens, capturing 8 layers at once; queries with each query template (cheap).
#  3. Score the grid offline: templates x query templates x layers x calibration
#     (fitted on the unlabeled corpus) x ensembles
#     -> benchmarks/quality/results/scifact-grid-*.jsonl
#  4. Ship the best row as examples/configs/best-retrieval.toml (+ its calibration file)
#     and check it end to end through `promptembed eval retrieval --config`.
set -euo pipefail
data=${SCIFACT_DIR:-../shared/data/scifact}
res=benchmarks/quality/results
grid="python -m benchmarks.quality.retrieval_grid"
python -m benchmarks.quality.retrieval --bm25 --data "$data" >> $res/scifact-train.jsonl
for model in smollm2-135m gemma-3-270m; do
  $grid embed --model $model --templates ke cot eol --data "$data"
  $grid score --model $model --data "$data"
done
# Echo embeddings (SmolLM2): 256 tokens, i.e. about as much text per copy as one copy at 128.
$grid embed --model smollm2-135m --templates echo \
  --query-templates echo eol query claim --max-length 256 --data "$data"
$grid score --model smollm2-135m --templates echo \
  --query-templates echo eol query claim --max-length 256 --data "$data" \
  --out $res/scifact-grid-smollm2-135m-echo.jsonl
$grid write
promptembed eval retrieval --config examples/configs/best-retrieval.toml --json \
  --corpus "$data/corpus.jsonl" --queries "$data/queries.jsonl" --qrels "$data/qrels/train.tsv" \
  | tee $res/scifact-best-retrieval.json
python -m benchmarks.quality.readme_tables
