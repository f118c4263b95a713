#!/usr/bin/env bash
# Issue 15 runs, from the repo root (each step is one cell of the README's booster II
# tables; on the shared 2-core machine each took 10-60 min, so pick them with $RUNS).
#   RUNS="selection-csv tune-gemma-en" bash benchmarks/quality/boosters2.sh
# Then `python -m benchmarks.quality.boosters2_table benchmarks/quality/results/boosters2/tune-*.json`
# prints the README cells, and `promptembed eval sts --config examples/configs/best-NAME.toml
# --data ../shared/data/stsb/stsb-L-dev.csv` re-scores a shipped config on dev.
# Selection = promptembed.evaluation.split_train(train, selection=500) (seed 0); calibrations
# and demonstrations come from the rest of train (the fit part); dev is scored once, last.
# Outputs: benchmarks/quality/results/boosters2/ (the `cost` step, a speed measurement:
# benchmarks/speed/results/boosters2-cost-smollm2-ke.json).
set -euo pipefail
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1}
data=${STSB_DIR:-../shared/data/stsb}
res=benchmarks/quality/results/boosters2
demos=benchmarks/quality/boosters2
mkdir -p "$res"
run_tune() {  # NAME LANG MODEL TEMPLATE [tune options]; the config it writes is in /tmp
  local name=$1 lang=$2 model=$3 template=$4; shift 4
  local dir=/tmp/boosters2/$name
  mkdir -p "$dir"
  printf '[embedder]\nmodel = "%s"\ntemplate = "%s"\n' "$model" "$template" > "$dir/promptembed.toml"
  promptembed tune --config "$dir/promptembed.toml" --train "$data/stsb-$lang-train.csv" \
    --selection-size 500 --limit 1000 --json "$@" > "$res/tune-$name.json"
}
for r in ${RUNS:-selection-csv tune-gemma-en tune-gemma-zh tune-smollm2-en tpcp-gemma-en tpcp-gemma-zh tpcp-smollm2-en cost}; do
  case $r in
    selection-csv)  # the 500 selection pairs per language, as STS CSVs
      for lang in en zh; do
        python -c "import csv,sys; from promptembed.evaluation import read_sts, split_train; \
_, s = split_train(read_sts('$data/stsb-$lang-train.csv'), selection=500); \
csv.writer(sys.stdout).writerows(s)" > "$res/stsb-$lang-selection500.csv"
      done ;;
    shipped-before)  # a config on the selection pairs: CONFIG=... LANG_=en|zh OUT=name
      promptembed eval sts --json --config "$CONFIG" \
        --data "$res/stsb-$LANG_-selection500.csv" > "$res/shipped-before-$OUT-selection.json" ;;
    candidate-smollm2)  # the previous SmolLM2 config (ke + one demonstration): 74.39 sel.
      python -m benchmarks.quality.boosters2_candidate --base examples/configs/best-smollm2-en.toml \
        --lang en --set 'demonstrations=[["A dog rides a skateboard.", "Skateboarding"]]' \
        --set 'template="ke"' --out /tmp/cand15/smollm2-icl/best-smollm2-en.toml \
        > "$res/candidate-smollm2-en-icl.json" ;;
    tune-gemma-en)  # templates x layers x demonstrations x calibrations x ensembles; dev once
      run_tune gemma-en en gemma-3-270m eol --templates eol,sth,cot,ke \
        --demonstrations "$demos/demos-en.json" --dev "$data/stsb-en-dev.csv" ;;
    tune-gemma-zh)
      run_tune gemma-zh zh gemma-3-270m zh-eol --templates zh-eol,zh-ke,zh-cot,sum \
        --demonstrations "$demos/demos-zh.json" --dev "$data/stsb-zh-dev.csv" ;;
    tune-smollm2-en)  # demos-en-plus.json adds a two-demonstration group
      run_tune smollm2-en en smollm2-135m ke --templates ke,cot,eol \
        --demonstrations "$demos/demos-en-plus.json" --dev "$data/stsb-en-dev.csv" ;;
    tpcp-gemma-en)  # Token Prepending spans and contrastive settings, on one template
      run_tune gemma-en-tpcp en gemma-3-270m eol --templates eol --token-prepending 1-4,1-8 --contrastive 4:1,8:1 --no-write ;;
    tpcp-gemma-zh)
      run_tune gemma-zh-tpcp zh gemma-3-270m zh-eol --templates zh-eol --token-prepending 1-4,1-8 --contrastive 4:1,8:1 --no-write ;;
    tpcp-smollm2-en)
      run_tune smollm2-en-tpcp en smollm2-135m ke --templates ke --token-prepending 1-4,1-8 --contrastive 4:1,8:1 --no-write ;;
    cost)  # cost per text of each technique against the plain template (ratios)
      python -m benchmarks.speed.bench_boosters2 --model smollm2-135m --template ke --n 24 \
        --rounds 3 > benchmarks/speed/results/boosters2-cost-smollm2-ke.json ;;
  esac
done
