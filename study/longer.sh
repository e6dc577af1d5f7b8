#!/usr/bin/env bash
# Supplementary (stage 5): does the ranking change with a longer schedule? Low-data regime,
# 30 epochs instead of 15, the settings chosen for 15 epochs (not re-tuned), seeds 0-2.
# Seed-major and resumable: stopped early, it still has every method for its first seeds.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
RSMIX=${RSMIX:-.venv/bin/rsmix}
SPECS=$($PY study/choose_settings.py --specs | tr ';' '\n' | grep -v per_sample | paste -sd';')
$RSMIX compare --config study/preset.yaml --train-fraction 0.1 --epochs 30 --warmup-epochs 2 --eval-every 10 \
  --seeds 0,1,2 --jobs 2 --test --reference saliencymix,cutmix --out study/lowdata_30ep --methods "$SPECS"
