#!/usr/bin/env bash
# Stages 2-4 of the study, after study/tuning.sh: the final runs (seeds 0-4, test split once at
# the last epoch) in both regimes, then the ablations (seeds 0-2, low-data). Every stage is an
# `rsmix compare` and resumes where it stopped when run again.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
RSMIX=${RSMIX:-.venv/bin/rsmix}
SPECS=$($PY study/choose_settings.py --specs)
ABLATION=$($PY study/choose_settings.py --ablation)
echo "methods: $SPECS"
echo "ablation: $ABLATION"

# Low-data regime: a class-balanced 10% of the training part (4,500 images), 15 epochs.
$RSMIX compare --config study/preset.yaml --train-fraction 0.1 --epochs 15 --eval-every 5 \
  --seeds 0,1,2,3,4 --jobs 2 --test --reference saliencymix,cutmix --out study/lowdata --methods "$SPECS"

# Full regime: all 45,000 training images (5,000 held out for validation), 2 epochs, 20% warm-up;
# the final models are also scored under occlusion and corruptions (first 5,000 test images).
$RSMIX compare --config study/preset.yaml --epochs 2 --warmup-epochs 0.4 --eval-every 2 \
  --seeds 0,1,2,3,4 --jobs 2 --test --robustness --robustness-images 5000 \
  --reference saliencymix,cutmix --out study/full --methods "$SPECS"

# Ablations: each idea alone on top of per-sample SaliencyMix; all ideas on, with each detector.
$RSMIX compare --config study/preset.yaml --train-fraction 0.1 --epochs 15 --eval-every 5 \
  --seeds 0,1,2 --jobs 2 --test --out study/ablation_lowdata --methods "$ABLATION"
