#!/usr/bin/env bash
# Stage (git add) what main.sh and occlusion.py have finished, and nothing in flight: a run folder
# only once it has metrics.json (a half-run's log committed without its checkpoint would make the
# next session refuse to resume it), the occlusion CSVs and the report. Not the folders' own
# summaries (main_*/results.*, *.png): each compare call of main.sh rewrites them with its one run.
#
#   study/study2/imagenette/stage_finished.sh && git commit -m "Study 2 stage 2: ... finished"
set -euo pipefail
cd "$(dirname "$0")"
for folder in main_operator main_fg main_sr; do
    [ -d "$folder/runs" ] || continue
    for run in "$folder"/runs/*/; do
        if [ -f "$run/metrics.json" ]; then
            git add "$run"
        else
            echo "in flight, not staged: $run"
        fi
    done
done
for f in occlusion official_map.md mechanism.md results.csv results.md final_error.png paired_differences.png validation_curves.png occlusion.md occlusion.csv; do
    [ -e "$f" ] && git add "$f"
done
git status --short .
