#!/usr/bin/env bash
# Study 2, stage 1 (issue 17): calibrate the schedule of regime A in bf16 (issue 16's precision).
# One seed, the validation split carved from train/ (--val-fraction 0.1, --split-seed 0); the test
# split (val/) is never loaded (no --test). The rule that picks the schedule is in PROTOCOL.md,
# committed before these runs ended.
#
#   study/study2/imagenette/calibrate.sh A   # lane A: none 40 epochs (issue 16's bf16 parity run), none 80
#   study/study2/imagenette/calibrate.sh B   # lane B: cutmix 40, cutmix 80
#
# Each lane is one torch thread; the two lanes run side by side on the two cores. A run with
# metrics.json is finished and skipped; an unfinished one resumes from its checkpoint.
set -euo pipefail
cd "$(dirname "$0")/../../.."
RSMIX=${RSMIX:-.venv/bin/rsmix}
export OMP_NUM_THREADS=1

run() {
    local out=$1
    shift
    if [ -f "$out/metrics.json" ]; then
        echo "$out: finished, skipped"
        return
    fi
    echo "$out: $(date -Is) start"
    "$RSMIX" train "$@" --threads 1 --no-progress --resume --out "$out"
    echo "$out: $(date -Is) done"
}

# The calibration preset of study/imagenette/CALIBRATION.md, in bf16.
IMAGENETTE=(--data ../shared/data/imagenette2-224.tar --image-size 128 --model fast_resnet
    --augment resized_crop --rrc-scale 0.35,1 --rrc-ratio 0.75,1.3333333333333333 --channels-last
    --val-fraction 0.1 --split-seed 0 --seed 0 --precision bf16)
CAL=study/study2/imagenette/calibration
case "${1:-}" in
A)
    # Issue 16's parity run against the committed fp32 none_40ep (same command but the precision).
    run study/imagenette/calibration/none_40ep_bf16 "${IMAGENETTE[@]}" --epochs 40 --eval-every 4 --method none
    run "$CAL/none_80ep" "${IMAGENETTE[@]}" --epochs 80 --eval-every 8 --method none
    ;;
B)
    run "$CAL/cutmix_40ep" "${IMAGENETTE[@]}" --epochs 40 --eval-every 4 --method cutmix
    run "$CAL/cutmix_80ep" "${IMAGENETTE[@]}" --epochs 80 --eval-every 8 --method cutmix
    ;;
*)
    echo "usage: $0 A|B" >&2
    exit 2
    ;;
esac
