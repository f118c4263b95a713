#!/usr/bin/env bash
# Issue 15 runs, from the repo root (each step is one cell of the README's booster II
# tables; on the shared 2-core machine each took 10-60 min, so pick them with $RUNS).
#   RUNS="selection-csv shipped-smollm2 probe-smollm2 candidate-smollm2" bash benchmarks/boosters2.sh
# Selection = promptembed.tune.split_train(train, selection=500) (seed 0); calibrations and
# demonstrations come from the rest of train (the fit part); dev is scored once, last.
set -euo pipefail
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1}
data=${STSB_DIR:-../shared/data/stsb}
res=benchmarks/results/boosters2
mkdir -p "$res"
for r in ${RUNS:-selection-csv shipped-smollm2 probe-smollm2 probe-gemma-zh candidate-smollm2 cost}; do
  case $r in
    selection-csv)  # the 500 selection pairs per language, as STS CSVs
      for lang in en zh; do
        python -c "import csv,sys; from promptembed.evaluate import read_sts; \
from promptembed.tune import split_train; \
_, s = split_train(read_sts('$data/stsb-$lang-train.csv'), selection=500); \
csv.writer(sys.stdout).writerows(s)" > "$res/stsb-$lang-selection500.csv"
      done ;;
    shipped-smollm2)  # the shipped config before this issue, on the selection pairs
      promptembed eval sts --json --config examples/configs/best-smollm2-en.toml \
        --data "$res/stsb-en-selection500.csv" > "$res/shipped-smollm2-en-selection.json" ;;
    probe-smollm2)  # raw Spearman: plain ke, + one demonstration (first 500 of 1500 held out)
      python benchmarks/boosters2/probe.py smollm2-135m en ke 0,1 > "$res/probe-smollm2-en.jsonl" ;;
    probe-smollm2-tp)  # raw Spearman with Token Prepending 1-4
      python benchmarks/boosters2/probe.py smollm2-135m en ke 3 > "$res/probe-smollm2-en-tp.jsonl" ;;
    probe-smollm2-cp)  # raw Spearman with contrastive prompting at block 8, alpha 1
      python benchmarks/boosters2/probe.py smollm2-135m en ke 5 > "$res/probe-smollm2-en-cp.jsonl" ;;
    probe-gemma-zh)
      python benchmarks/boosters2/probe.py gemma-3-270m zh zh-eol@-3 1,0 > "$res/probe-gemma-zh.jsonl" ;;
    candidate-smollm2)  # ke + one demonstration, calibration picked on selection, dev once
      python benchmarks/boosters2_candidate.py --base examples/configs/best-smollm2-en.toml \
        --lang en --set 'demonstrations=[["A dog rides a skateboard.", "Skateboarding"]]' \
        --out /tmp/cand15/smollm2-icl/best-smollm2-en.toml > "$res/candidate-smollm2-en-icl.json" ;;
    icl-gemma-dev)  # Gemma, one template + one demonstration, no calibration, on dev
      for lang in en zh; do
        promptembed eval sts --json --config "benchmarks/boosters2/icl-gemma-$lang.toml" \
          --data "$data/stsb-$lang-dev.csv" > "$res/icl-gemma-$lang-dev.json"
      done ;;
    cost)  # cost per text of each technique against the plain template (ratios)
      python benchmarks/bench_boosters2.py --model smollm2-135m --template ke --n 32 \
        > "$res/cost-smollm2-ke.json" ;;
  esac
done
# The full search (what `tune` does with every variant; ~1 h per row on a quiet machine):
#   promptembed tune --config C.toml --train $data/stsb-en-train.csv --selection-size 500 \
#     --limit 500 --templates ke --demonstrations benchmarks/boosters2/demos-en.json \
#     --token-prepending 1-4 --dev $data/stsb-en-dev.csv --json
