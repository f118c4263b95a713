#!/usr/bin/env bash
# STS-B dev Spearman for every paper template on the two offline models.
# Usage: bash benchmarks/quality/sts_table.sh [OUT.jsonl]
#   (from the repo root; ~35 min on 2 CPU cores)
set -euo pipefail
data=${STSB_DIR:-../shared/data/stsb}
out=${1:-benchmarks/quality/results/sts-dev.jsonl}
: > "$out"
run() {  # model lang template [extra args]
  local model=$1 lang=$2 template=$3; shift 3
  promptembed eval sts --json --model "$model" --template "$template" "$@" \
    --data "$data/stsb-$lang-dev.csv" | sed "s/^{/{\"lang\": \"$lang\", /" >> "$out"
}
for model in smollm2-135m gemma-3-270m; do
  langs=en; [ "$model" = gemma-3-270m ] && langs="en zh"
  for lang in $langs; do
    for t in eol sth sum cot ke; do run "$model" "$lang" "$t"; done
    run "$model" "$lang" none --pooling mean   # the no-prompt baseline: mean of raw states
  done
done
cat "$out"
