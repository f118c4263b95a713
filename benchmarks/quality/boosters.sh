#!/usr/bin/env bash
# Issue 5 quality runs, from the repo root (~1 h on 2 quiet CPU cores):
#   bash benchmarks/quality/boosters.sh       (RUNS="gemma-en" picks runs)
#  - `promptembed tune` per model and language: template x layer x centering x ensembles
#    on STS-B dev, centering fitted on 1000 sentences of STS-B *train* (disjoint from dev).
#    Its grid includes every paper template at its default layer, i.e. exactly what
#    `promptembed eval sts --template T` computes (a test of tune checks the equality).
#    tune writes each winner into examples/configs/best-*.toml (+ its calibration file).
#  - the no-prompt baseline (mean of raw states) with `promptembed eval sts`.
# Outputs: benchmarks/quality/results/tune-NAME.json, rows appended to sts-dev.jsonl;
# `python -m benchmarks.quality.tables` renders them.
set -euo pipefail
data=${STSB_DIR:-../shared/data/stsb}
res=benchmarks/quality/results
sts() {  # model lang template [args]
  local model=$1 lang=$2 template=$3; shift 3
  promptembed eval sts --json --model "$model" --template "$template" "$@" \
    --data "$data/stsb-$lang-dev.csv" | sed "s/^{/{\"lang\": \"$lang\", /" >> $res/sts-dev.jsonl
}
tune_run() {  # name lang templates
  promptembed tune --config "examples/configs/best-$1.toml" --data "$data/stsb-$2-dev.csv" \
    --sample "$data/stsb-$2-train.csv" --limit 1000 --templates "$3" --json > "$res/tune-$1.json"
}
# Pick the runs with $RUNS (default all); with OMP_NUM_THREADS=1 two runs share 2 cores
# without oversubscription.
for run in ${RUNS:-smollm2-en gemma-en gemma-zh}; do
  case $run in
    smollm2-en) tune_run smollm2-en en eol,cot,ke ;;
    gemma-en) tune_run gemma-en en eol,sth,sum,cot,ke; sts gemma-3-270m en none --pooling mean ;;
    gemma-zh) tune_run gemma-zh zh eol,sth,sum,cot,ke,zh-eol,zh-ke
              sts gemma-3-270m zh none --pooling mean ;;
  esac
done
