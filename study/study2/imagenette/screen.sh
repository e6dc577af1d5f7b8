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
source study/study2/imagenette/regime_a.sh # REGIME_A and the candidates' settings (REGIME_A_METHODS)
COMMON=("${REGIME_A[@]}" --epochs 80)
NAMES=("${SCREEN_NAMES[@]}")
declare -A FOLDER=([operator]=screen_operator [cam]=screen_cam)

for seed in "${SEEDS[@]}"; do
    for name in "${NAMES[@]}"; do
        if [ -n "${ONLY:-}" ] && [[ " $ONLY " != *" $name "* ]]; then continue; fi
        regime_a_run "$name" "$seed"
    done
done
exit "$LANE_FAILED"
