#!/usr/bin/env bash
# Issue 10, step 4: calibrate the Imagenette schedule (not tuning). One seed, the validation split
# carved from train/ (--val-fraction 0.1); the test split (val/) is never loaded (no --test).
#
#   study/imagenette/calibrate.sh        # about 3.5 hours on one core; rerun to resume or skip
#   .venv/bin/python study/imagenette/calibration_table.py --write   # the table in CALIBRATION.md
#
# Runs, one after the other, one torch thread each, into study/imagenette/calibration/<name>/:
#   cifar10_fast_cnn_1ep  one fast_cnn CIFAR-10 epoch (45,000 images, the CIFAR study's preset):
#                         the reference for the time per epoch, on the same machine and load
#   none, cutmix          fast_resnet on Imagenette at 128 px, random-resized-crop + flip,
#                         20 epochs (about 40 min each), validated every 2 (10 points), otherwise
#                         the harness defaults (batch 256, SGD lr 0.2 nesterov, weight decay 5e-4,
#                         cosine, 1 warm-up epoch)
#   none_40ep             the same without mixing over 40 epochs (about 80 min), validated every 4:
#                         added after the 20-epoch run ended at 23% validation error, to see
#                         whether a schedule twice as long gets below 20%
# A run with metrics.json is finished and skipped; an unfinished one resumes from its checkpoint.
set -euo pipefail
cd "$(dirname "$0")/../.."
RSMIX=${RSMIX:-.venv/bin/rsmix}
OUT=study/imagenette/calibration
export OMP_NUM_THREADS=1

run() {
    local name=$1
    shift
    if [ -f "$OUT/$name/metrics.json" ]; then
        echo "$name: finished, skipped"
        return
    fi
    echo "$name: $(date -Is) start"
    "$RSMIX" train "$@" --threads 1 --no-progress --resume --out "$OUT/$name"
    echo "$name: $(date -Is) done"
}

run cifar10_fast_cnn_1ep --config study/preset.yaml --method none --epochs 1

IMAGENETTE=(--data ../shared/data/imagenette2-224.tar --image-size 128 --model fast_resnet
    --augment resized_crop --rrc-scale 0.35,1 --rrc-ratio 0.75,1.3333333333333333 --channels-last
    --val-fraction 0.1 --split-seed 0 --seed 0)
run none "${IMAGENETTE[@]}" --epochs 20 --eval-every 2 --method none
run cutmix "${IMAGENETTE[@]}" --epochs 20 --eval-every 2 --method cutmix
run none_40ep "${IMAGENETTE[@]}" --epochs 40 --eval-every 4 --method none
