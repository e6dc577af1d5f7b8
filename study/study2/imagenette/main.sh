#!/usr/bin/env bash
# Study 2, stage 2 (issue 17, part 1): regime A's main table, 5 paired seeds, in bf16.
#
#   study/study2/imagenette/main.sh LANE EPOCHS     # LANE 0 or 1 (a label for the log), EPOCHS from stage 1's rule
#   .venv/bin/python study/study2/imagenette/report.py   # the merged table over the finished runs
#
# DEADLINE=<unix seconds> (optional): a lane starts no run that would not end by then (a run is taken
# to last RUN_MINUTES, default 58: 80 epochs took 50-60 minutes on the Intel Xeon with AMX, two runs
# at a time). The lanes, their claims and their checks: study/study2/lanes.sh. Each session:
#   DEADLINE=$(date -d '+175 min' +%s) study/study2/imagenette/main.sh 0 80 &   # and lane 1
# then study/study2/stage_finished.sh after each run, never `git add` a run in flight.
# (There is no summary mode: `rsmix compare` over all methods and seeds would train every unfinished
# run. report.py reads the finished ones.)
#
# Seed s gives every method the same initial weights and the same data order (rsmix seeds the model,
# the shuffle and the crops from --seed; the mixing generator is its own). The 35 runs (7 methods x 5
# seeds) are listed seed-major, so a stop at any point leaves whole seeds. Every run is
# `rsmix compare --methods ONE --seeds S` into the folder of its saliency source: resumable (a
# finished run is skipped, an unfinished one resumes from its checkpoint). STUDY2_OUT (default
# study/study2/imagenette; the tests set another) is the folder that holds main_operator/, main_fg/
# and main_sr/.
#
# Three folders, because a run has one saliency source for all its saliency operators:
#   main_operator/   --saliency operator: none, mixup, cutmix, saliencymix (the official code reads its
#                    own OpenCV map of the batch's first source and refuses any other source)
#   main_fg/         --saliency fine_grained_cached: saliencymix_per_sample, rsm_seed
#   main_sr/         --saliency spectral_cached: guided_sr (GuidedMixup's SR variant)
#
# The methods' settings (baselines with their papers' settings, RSM-seed untuned): regime_a.sh.
set -euo pipefail
cd "$(dirname "$0")/../../.."
source study/study2/lanes.sh
RSMIX=${RSMIX:-.venv/bin/rsmix}
EPOCHS=${2:?usage: main.sh LANE EPOCHS}
lane_init main.sh "${1:?usage: main.sh LANE EPOCHS}" 58
OUT=${STUDY2_OUT:-study/study2/imagenette}
SEEDS=(0 1 2 3 4)
source study/study2/imagenette/regime_a.sh
COMMON=("${REGIME_A[@]}" --epochs "$EPOCHS" "${REGIME_A_TEST[@]}")
NAMES=(none mixup cutmix saliencymix saliencymix_per_sample rsm_seed guided_sr)
declare -A FOLDER=([operator]=main_operator [fine_grained_cached]=main_fg [spectral_cached]=main_sr)

for seed in "${SEEDS[@]}"; do
    for name in "${NAMES[@]}"; do
        regime_a_run "$name" "$seed"
    done
done
exit "$LANE_FAILED"
