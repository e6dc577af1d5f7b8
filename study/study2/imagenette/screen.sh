#!/usr/bin/env bash
# Study 2, stage 3 (issue 27): the screen of RandSaliencyMix's candidates, validation only, bf16.
# The set, the selection rule and what is read: SCREEN.md (committed before the first run ended).
#
#   study/study2/imagenette/screen.sh LANE              # LANE 0 or 1 (a label for the log)
#   ONLY="rsm_uniform rsm_cam8" screen.sh 0              # only these candidates (e.g. before self-CAM exists)
#   DEADLINE=$(date -d '+175 min' +%s) screen.sh 0 &     # start no run that would not end by then
#
# A run is taken to last RUN_MINUTES (default 60, CAM candidates 1.3x that). Like main.sh, each lane
# walks the runs seed-major and takes the next one that is neither finished nor claimed
# (study/study2/lanes.sh: claims, deadline and checks). Each run is `rsmix compare --methods ONE
# --seeds S` into its folder: resumable, and refused if a finished run there was made with other
# settings. Exit status 1 if any run failed.
set -euo pipefail
cd "$(dirname "$0")/../../.."
source study/study2/lanes.sh
RSMIX=${RSMIX:-.venv/bin/rsmix}
lane_init screen.sh "${1:?usage: screen.sh LANE}" 60
OUT=${STUDY2_OUT:-study/study2/imagenette} # the folder of screen_operator/ and screen_cam/ (tests set another)
SEEDS=(0 1 2)
COMMON=(--data ../shared/data/imagenette2-224.tar --image-size 128 --model fast_resnet
    --augment resized_crop --rrc-scale 0.35,1 --rrc-ratio 0.75,1.3333333333333333 --channels-last
    --val-fraction 0.1 --split-seed 0 --precision bf16 --epochs 80 --eval-every 8 --threads 1)
RSM="randsaliencymix:p=1,eta=beta,mixup_prob=0.25"
CAM8="$RSM,tau_src=8,tau_dst=8"

# name, folder, saliency source, self-CAM kappa (0: off), method spec
RUNS=(
    "rsm_uniform screen_operator operator 0 $RSM,tau_src=0,tau_dst=0,gamma=0"
    "rsm_cam8 screen_cam cam 0 $CAM8,gamma=0.5"
    "rsm_cam16 screen_cam cam 0 $RSM,tau_src=16,tau_dst=16,gamma=0.5"
    "rsm_cam8_hard screen_cam cam 0 randsaliencymix:p=1,eta=1,mixup_prob=0,tau_src=8,tau_dst=8,gamma=0.5"
    "rsm_cam8_seedrepo screen_cam cam 0 $CAM8,gamma=0.5,patch_noise=0.4,pairing=confusion"
    "rsm_selfcam screen_operator operator 0.5 $RSM,tau_src=0,tau_dst=0,gamma=0"
    "rsm_cam8_selfcam screen_cam cam 0.5 $CAM8,gamma=0"
    "cutmix_selfcam screen_operator operator 0.5 cutmix:alpha=1,p=1"
)

for seed in "${SEEDS[@]}"; do
    for r in "${RUNS[@]}"; do
        read -r name folder source kappa spec <<<"$r"
        if [ -n "${ONLY:-}" ] && [[ " $ONLY " != *" $name "* ]]; then continue; fi
        minutes=$RUN_MINUTES
        [ "$source" = cam ] && minutes=$((RUN_MINUTES * 13 / 10))
        selfcam=()
        [ "$kappa" != 0 ] && selfcam=(--self-cam "$kappa")
        lane_run "$OUT/$folder/runs/${name}_s$seed" "$folder-${name}_s$seed" "$name seed $seed" "$minutes" \
            "$RSMIX" compare "${COMMON[@]}" --saliency "$source" "${selfcam[@]}" --methods "$name=$spec;" \
            --seeds "$seed" --out "$OUT/$folder"
    done
done
exit "$LANE_FAILED"
