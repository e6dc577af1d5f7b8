#!/usr/bin/env bash
# Stage (git add) what study 2's lanes (imagenette/main.sh, imagenette/screen.sh, cifar/regime_b.sh)
# and imagenette/occlusion.py have finished, and nothing in flight: a run
# folder only once it has metrics.json (a half-run's log committed without its checkpoint would make
# the next session refuse to resume it; its per-image predictions files go with the folder), the
# occlusion CSVs (not a .csv.tmp being written), the reports (results.*, the screen's
# screen/results.*) and figures. Not the run folders' own summaries (main_*/results.*,
# screen_*/results.*, their *.png): each compare call rewrites them with its one run.
#
#   study/study2/stage_finished.sh && git commit -m "Study 2 stage 2: ... finished"
#
# Paths are literal (no git pathspec magic) and quoted: a run folder named with spaces or glob
# characters is staged as itself, and only if it has finished.
set -euo pipefail
shopt -s nullglob
cd "$(dirname "$0")"
export GIT_LITERAL_PATHSPECS=1
for folder in imagenette/main_operator imagenette/main_fg imagenette/main_sr imagenette/screen_operator \
    imagenette/screen_cam cifar/calibration_120 cifar/calibration_60 cifar/main_operator cifar/main_fg cifar/main_sr; do
    for run in "$folder"/runs/*/; do
        if [ -f "$run/metrics.json" ]; then
            git add -- "$run"
        else
            echo "in flight, not staged: $run"
        fi
    done
done
for f in imagenette/occlusion/*.csv imagenette/{official_map.md,mechanism.md,results.csv,results.md,final_error.png} \
    imagenette/{paired_differences.png,validation_curves.png,occlusion.md,occlusion.csv} \
    imagenette/screen/{results.csv,results.md} cifar/{results.csv,results.md}; do
    if [ -e "$f" ]; then git add -- "$f"; fi
done
git status --short .
