#!/usr/bin/env bash
# Study 2, stage 3 (issue 27): the screen of RandSaliencyMix's candidates, validation only, bf16.
# The set, the selection rule and what is read: SCREEN.md (committed before the first run ended).
#
#   study/study2/imagenette/screen.sh LANE              # LANE 0 or 1 (a label for the log)
#   ONLY="rsm_uniform rsm_cam8" screen.sh 0              # only these candidates (e.g. before self-CAM exists)
#   DEADLINE=$(date -d '+175 min' +%s) screen.sh 0 &     # start no run that would not end by then
#
# A run is taken to last RUN_MINUTES (default 60, CAM candidates 1.3x that). Like main.sh, each lane
# walks the runs seed-major and takes the next one that is neither finished nor claimed; the claim
# is an flock held while the run trains, and the check for metrics.json is made again inside the
# claim, so a run that finished between one lane's check and its claim is never started twice. Each
# run is `rsmix compare --methods ONE --seeds S` into its folder: resumable, and refused if a
# finished run there was made with other settings. Exit status 1 if any run failed.
set -euo pipefail
cd "$(dirname "$0")/../../.."
RSMIX=${RSMIX:-.venv/bin/rsmix}
export OMP_NUM_THREADS=1
LANE=${1:?usage: screen.sh LANE}
OUT=${STUDY2_OUT:-study/study2/imagenette} # the folder of screen_operator/ and screen_cam/ (tests set another)
CLAIMS=${CLAIMS:-/tmp/rsmix-study2-claims}
mkdir -p "$CLAIMS"
case "$LANE" in
0 | 1) ;;
*) echo "usage: screen.sh LANE, LANE 0 or 1 (got $LANE)" >&2 && exit 2 ;;
esac
if [ -n "${DEADLINE:-}" ] && ! [[ "$DEADLINE" =~ ^[0-9]+$ ]]; then
    echo "screen.sh: DEADLINE must be unix seconds (date -d '+175 min' +%s), got '$DEADLINE'" >&2 && exit 2
fi
RUN_MINUTES=${RUN_MINUTES:-60}
[[ "$RUN_MINUTES" =~ ^[0-9]+$ ]] || { echo "screen.sh: RUN_MINUTES must be a whole number" >&2 && exit 2; }
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

failed=0
for seed in "${SEEDS[@]}"; do
    for r in "${RUNS[@]}"; do
        read -r name folder source kappa spec <<<"$r"
        if [ -n "${ONLY:-}" ] && [[ " $ONLY " != *" $name "* ]]; then continue; fi
        run_dir="$OUT/$folder/runs/${name}_s$seed"
        [ -f "$run_dir/metrics.json" ] && continue
        minutes=$RUN_MINUTES
        [ "$source" = cam ] && minutes=$((RUN_MINUTES * 13 / 10))
        if [ -n "${DEADLINE:-}" ] && [ $(($(date +%s) + minutes * 60)) -gt "$DEADLINE" ]; then
            echo "$(date -Is) deadline: not starting $name seed $seed"
            continue
        fi
        selfcam=()
        [ "$kappa" != 0 ] && selfcam=(--self-cam "$kappa")
        # exit status 75: another lane holds the claim; 76: finished meanwhile (checked inside the claim)
        status=0
        flock -n -E 75 "$CLAIMS/$folder-${name}_s$seed.lock" bash -c '
            [ -f "$0/metrics.json" ] && exit 76
            echo "$(date -Is) start $1 seed $2 (lane $3)"
            shift 3 && exec "$@" >/dev/null' \
            "$run_dir" "$name" "$seed" "$LANE" "$RSMIX" compare "${COMMON[@]}" --saliency "$source" \
            "${selfcam[@]}" --methods "$name=$spec;" --seeds "$seed" --out "$OUT/$folder" || status=$?
        case $status in
        0) echo "$(date -Is) done $name seed $seed" ;;
        75 | 76) ;;
        *) echo "$(date -Is) FAILED $name seed $seed (exit $status)" && failed=1 ;;
        esac
    done
done
exit $failed
