#!/usr/bin/env bash
# Issue 15 runs, from the repo root: `promptembed tune` selects on a held-out part of
# STS-B *train* (500 pairs; seeded split, promptembed.tune.split_train) over the plain
# prompt, in-context demonstrations (candidates in benchmarks/boosters2/, chosen from the
# fit part) and Token Prepending spans, with calibrations fitted on 500 fit-part
# sentences; then scores the winner ONCE on STS-B dev. Also the shipped config's score on
# the same selection pairs. ~1 h per row on 2 busy CPU cores.
#   RUNS="smollm2-en" OMP_NUM_THREADS=1 bash benchmarks/boosters2.sh
set -euo pipefail
data=${STSB_DIR:-../shared/data/stsb}
res=benchmarks/results/boosters2
mkdir -p "$res"
selection_csv() {  # lang -> the 500 selection pairs as a CSV (what tune scores)
  python - "$1" <<'PY'
import csv, sys
from promptembed.evaluate import read_sts
from promptembed.tune import split_train
lang = sys.argv[1]
_, sel = split_train(read_sts(f"../shared/data/stsb/stsb-{lang}-train.csv"), selection=500)
with open(f"benchmarks/results/boosters2/stsb-{lang}-selection500.csv", "w", newline="") as fh:
    csv.writer(fh).writerows(sel)
PY
}
run() {  # name lang templates spans workdir
  local name=$1 lang=$2 templates=$3 spans=$4 work=$5
  selection_csv "$lang"
  promptembed eval sts --json --config "examples/configs/best-$name.toml" \
    --data "$res/stsb-$lang-selection500.csv" > "$res/shipped-$name-selection.json"
  promptembed tune --config "$work/best-$name.toml" --train "$data/stsb-$lang-train.csv" \
    --selection-size 500 --limit 500 --templates "$templates" --max-ensemble 2 \
    --demonstrations "benchmarks/boosters2/demos-$lang.json" --token-prepending "$spans" \
    --dev "$data/stsb-$lang-dev.csv" --json > "$res/tune-$name.json"
}
for r in ${RUNS:-smollm2-en gemma-zh}; do
  case $r in
    smollm2-en) run smollm2-en en ke 1-4 "${WORK:-/tmp/tune15}" ;;
    gemma-zh) run gemma-zh zh zh-eol,zh-ke "" "${WORK:-/tmp/tune15zh}" ;;
  esac
done
