#!/usr/bin/env bash
# Study 2, stage 4: the confirmation's lane (RSM-tuned against CutMix at 20 paired seeds), test split.
#
#   study/study2/imagenette/confirm.sh LANE               # LANE 0 or 1 (a label for the log)
#   DEADLINE=$(date -d '+175 min' +%s) confirm.sh 0 &      # start no run that would not end by then
#   .venv/bin/python study/study2/imagenette/confirm_report.py   # the reading over the finished runs
#
# Only after stage 4's protocol is committed (its own issue) as CONFIRMATION.md beside this script
# (refused, exit 2, without it): the design and its runs come from
# `confirm_report.py --plan` (SCREEN.md's stage 4 with the screen's choices: RSM-tuned by its rule,
# cutmix_selfcam where it joins), each method's settings from regime_a.sh. Refused (exit 2) until the
# screen has chosen. A run of the plan already finished in part 1's folders (main_operator/, main_fg/,
# main_sr/: CutMix, SaliencyMix, GuidedMixup and no mixing at seeds 0-4, RSM-seed's if it is RSM-tuned)
# counts and is not trained again; every other run goes to confirm_<source>/ (operator, fg, cam, sr),
# seed-major, with part 1's test flags (REGIME_A_TEST). A run is taken to last RUN_MINUTES (default 60),
# a CAM run 1.3x that. The lanes, their claims, the deadline and the checks: study/study2/lanes.sh.
# Exit status 1 if any run failed.
set -euo pipefail
cd "$(dirname "$0")/../../.."
source study/study2/lanes.sh
source study/study2/imagenette/regime_a.sh
RSMIX=${RSMIX:-.venv/bin/rsmix}
PY=${PY:-.venv/bin/python}
lane_init confirm.sh "${1:?usage: confirm.sh LANE}" 60
OUT=${STUDY2_OUT:-study/study2/imagenette} # the folder of main_*/ and confirm_*/ (tests set another)
COMMON=("${REGIME_A[@]}" --epochs 80 "${REGIME_A_TEST[@]}")
declare -A FOLDER=([operator]=confirm_operator [fine_grained_cached]=confirm_fg [cam]=confirm_cam
    [spectral_cached]=confirm_sr)

if [ ! -f "$OUT/CONFIRMATION.md" ]; then
    echo "confirm.sh: $OUT/CONFIRMATION.md is missing: commit stage 4's protocol before its first run" >&2
    exit 2
fi
if ! PLAN=$("$PY" study/study2/imagenette/confirm_report.py --root "$OUT" --plan); then
    echo "confirm.sh: no plan (above): the screen must finish and name RSM-tuned first" >&2
    exit 2
fi

while read -r name seed <&3; do
    done_in_part1=0
    for part1 in main_operator main_fg main_sr; do
        [ -f "$OUT/$part1/runs/${name}_s$seed/metrics.json" ] && done_in_part1=1
    done
    [ "$done_in_part1" = 1 ] && continue
    regime_a_run "$name" "$seed"
done 3<<<"$PLAN" # the plan on fd 3: the runs' commands keep the lane's stdin
exit "$LANE_FAILED"
