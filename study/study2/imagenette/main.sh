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
# Baselines with their papers' ImageNet settings (GuidedMixup publishes none for ImageNet; its
# Tiny-ImageNet SR setting is used): MixUp alpha 0.2; CutMix alpha 1, p 1, one box per batch;
# SaliencyMix alpha (beta) 1, p 1 (official: one box per batch; per_sample: one per image);
# GuidedMixup SR p (mix_prob) 0.5, complementary (greedy) pairing. RSM-seed: every idea of the seed
# on, untuned: tau_src 1, tau_dst 1, gamma 0.5, blend eta ~ Beta(1, 1), MixUp switch 0.25, p 1.
set -euo pipefail
cd "$(dirname "$0")/../../.."
source study/study2/lanes.sh
RSMIX=${RSMIX:-.venv/bin/rsmix}
EPOCHS=${2:?usage: main.sh LANE EPOCHS}
lane_init main.sh "${1:?usage: main.sh LANE EPOCHS}" 58
OUT=${STUDY2_OUT:-study/study2/imagenette}
SEEDS=(0 1 2 3 4)
COMMON=(--data ../shared/data/imagenette2-224.tar --image-size 128 --model fast_resnet
    --augment resized_crop --rrc-scale 0.35,1 --rrc-ratio 0.75,1.3333333333333333 --channels-last
    --val-fraction 0.1 --split-seed 0 --precision bf16 --epochs "$EPOCHS" --eval-every 8
    --test --test-split val --robustness --threads 1)

# folder, saliency source, method spec
RUNS=(
    "main_operator operator none"
    "main_operator operator mixup=mixup:alpha=0.2"
    "main_operator operator cutmix=cutmix:alpha=1,p=1"
    "main_operator operator saliencymix=saliencymix:alpha=1,p=1"
    "main_fg fine_grained_cached saliencymix_per_sample=saliencymix_per_sample:alpha=1,p=1"
    "main_fg fine_grained_cached rsm_seed=randsaliencymix:p=1,tau_src=1,tau_dst=1,gamma=0.5,eta=beta,mixup_prob=0.25"
    "main_sr spectral_cached guided_sr=guidedmixup:p=0.5,pairing=complementary"
)

for seed in "${SEEDS[@]}"; do
    for r in "${RUNS[@]}"; do
        set -- $r
        name="$(echo "$3" | cut -d= -f1)_s$seed"
        lane_run "$OUT/$1/runs/$name" "$1-$name" "$1 $3 seed $seed" "$RUN_MINUTES" \
            "$RSMIX" compare "${COMMON[@]}" --saliency "$2" --methods "$3;" --seeds "$seed" --out "$OUT/$1"
    done
done
exit "$LANE_FAILED"
