#!/usr/bin/env bash
# Stage (git add) what main.sh, screen.sh and occlusion.py have finished, and nothing in flight: a run
# folder only once it has metrics.json (a half-run's log committed without its checkpoint would make
# the next session refuse to resume it; its per-image predictions files go with the folder), the
# occlusion CSVs (not a .csv.tmp being written), the reports (results.*, the screen's
# screen/results.*) and figures. Not the run folders' own summaries (main_*/results.*,
# screen_*/results.*, their *.png): each compare call rewrites them with its one run.
#
#   study/study2/imagenette/stage_finished.sh && git commit -m "Study 2 stage 2: ... finished"
#
# Paths are literal (no git pathspec magic) and quoted: a run folder named with spaces or glob
# characters is staged as itself, and only if it has finished.
set -euo pipefail
shopt -s nullglob
cd "$(dirname "$0")"
export GIT_LITERAL_PATHSPECS=1
for folder in main_operator main_fg main_sr screen_operator screen_cam; do
    for run in "$folder"/runs/*/; do
        if [ -f "$run/metrics.json" ]; then
            git add -- "$run"
        else
            echo "in flight, not staged: $run"
        fi
    done
done
for f in occlusion/*.csv official_map.md mechanism.md results.csv results.md final_error.png paired_differences.png \
    validation_curves.png occlusion.md occlusion.csv screen/results.csv screen/results.md; do
    if [ -e "$f" ]; then git add -- "$f"; fi
done
git status --short .
