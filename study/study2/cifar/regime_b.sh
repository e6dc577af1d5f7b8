#!/usr/bin/env bash
# Study 2, regime B (issue 27): CIFAR-10 low-data in fp32, the lane for a session whose CPU has no
# native bf16 (regime A's bf16 runs there are about 10x slower). The protocol: REGIME_B.md.
#
#   DEADLINE=$(date -d '+175 min' +%s) study/study2/cifar/regime_b.sh 0 &   # and lane 1
#   study/study2/stage_finished.sh && git commit ...                         # after each run
#
# Stage B1, the schedule: CutMix at seed 0 for 120 and for 60 epochs, validation only
# (calibration_120/, calibration_60/). A lane with no calibration run left to take waits for the
# other lane's, then applies the rule: 120 epochs if CutMix's final validation error at 120 is at
# least 1.0 point lower than at 60, else 60. Stage B2: six methods x seeds 0-9 at that schedule,
# seed-major, the test split read once per run after its last epoch (main_operator/, main_fg/,
# main_sr/: one folder per saliency source). Every run is `rsmix compare --methods ONE --seeds S`:
# resumable, and refused if a finished run there was made with other settings.
#
# Each seed's runs stay on one CPU kind (cpu_kind.py: the name and bf16 units), so that a paired
# difference never compares two machines: a lane skips a seed whose finished runs were made on
# another kind (CPU_KIND overrides this machine's; the tests set it). RUN_MINUTES (default 12) is
# a 60-epoch run's length for DEADLINE; a 120-epoch run is taken to last twice that. The lanes, their
# claims and checks: study/study2/lanes.sh. STUDY2_CIFAR_OUT (default study/study2/cifar; the tests
# set another) holds the run folders. Exit status 1 if any run failed or the calibration could not
# be read.
set -euo pipefail
cd "$(dirname "$0")/../../.."
source study/study2/lanes.sh
RSMIX=${RSMIX:-.venv/bin/rsmix}
PY=${PY:-.venv/bin/python}
lane_init regime_b.sh "${1:?usage: regime_b.sh LANE}" 12
OUT=${STUDY2_CIFAR_OUT:-study/study2/cifar}
HERE=${CPU_KIND:-$("$PY" study/study2/cifar/cpu_kind.py)}
# Study 1's CPU preset (fast_cnn at 32 px, SGD lr 0.8, cosine, label smoothing 0.1, pad-crop 2 and
# flip, 5,000 validation images) on its low-data split: a class-balanced 10% of the rest (4,500).
COMMON=(--config study/preset.yaml --train-fraction 0.1 --precision fp32)
CUTMIX="cutmix=cutmix:alpha=1,p=1"

# --- B1: the schedule ---
for epochs in 120 60; do
    lane_run "$OUT/calibration_$epochs/runs/cutmix_s0" "cifar-calibration_$epochs-cutmix_s0" \
        "calibration: cutmix, $epochs epochs, seed 0" $((RUN_MINUTES * epochs / 60)) \
        "$RSMIX" compare "${COMMON[@]}" --epochs "$epochs" --eval-every $((epochs / 10)) \
        --methods "$CUTMIX;" --seeds 0 --out "$OUT/calibration_$epochs"
done
val_error() { # the final validation error of a finished run
    "$PY" -c 'import json, sys; print(json.load(open(sys.argv[1]))["val_top1_err"])' "$1/metrics.json"
}
errors=()
for epochs in 120 60; do
    run="$OUT/calibration_$epochs/runs/cutmix_s0"
    # the other lane's calibration run: wait for its claim to be released
    [ -f "$run/metrics.json" ] || flock "$CLAIMS/cifar-calibration_$epochs-cutmix_s0.lock" true
    if [ ! -f "$run/metrics.json" ]; then
        echo "$(date -Is) the calibration is unfinished ($run): no main run started"
        exit "$LANE_FAILED"
    fi
    error=$(val_error "$run") || { echo "$(date -Is) FAILED reading $run/metrics.json" && exit 1; }
    errors+=("$error")
done
EPOCHS=$(awk -v e120="${errors[0]}" -v e60="${errors[1]}" 'BEGIN { print (e60 - e120 >= 1.0) ? 120 : 60 }')
echo "$(date -Is) schedule: $EPOCHS epochs (CutMix's validation error $(printf %.2f "${errors[1]}")% at 60 epochs," \
    "$(printf %.2f "${errors[0]}")% at 120)"

# --- B2: the main table ---
# folder, saliency source, self-CAM kappa (0: off), method spec
RUNS=(
    "main_operator operator 0 none"
    "main_operator operator 0 $CUTMIX"
    "main_sr spectral_cached 0 guided_sr=guidedmixup:p=0.5,pairing=complementary"
    "main_fg fine_grained_cached 0 rsm_seed=randsaliencymix:p=1,tau_src=1,tau_dst=1,gamma=0.5,eta=beta,mixup_prob=0.25"
    "main_operator operator 0 rsm_uniform=randsaliencymix:p=1,tau_src=0,tau_dst=0,gamma=0,eta=beta,mixup_prob=0.25"
    "main_operator operator 0.5 cutmix_selfcam=cutmix:alpha=1,p=1"
)
for seed in 0 1 2 3 4 5 6 7 8 9; do
    mapfile -t kinds < <("$PY" study/study2/cifar/cpu_kind.py "$OUT"/main_*/runs/*_s"$seed")
    if [ "${#kinds[@]}" -gt 0 ] && [ "${kinds[*]}" != "$HERE" ]; then
        echo "$(date -Is) seed $seed began on ${kinds[*]}; this CPU is $HERE: skipped"
        continue
    fi
    for r in "${RUNS[@]}"; do
        read -r folder source kappa spec <<<"$r"
        name="${spec%%=*}_s$seed"
        selfcam=()
        [ "$kappa" != 0 ] && selfcam=(--self-cam "$kappa")
        lane_run "$OUT/$folder/runs/$name" "cifar-$folder-$name" "$folder ${spec%%=*} seed $seed" \
            $((RUN_MINUTES * EPOCHS / 60)) "$RSMIX" compare "${COMMON[@]}" --epochs "$EPOCHS" \
            --eval-every $((EPOCHS / 10)) --test --saliency "$source" "${selfcam[@]}" --methods "$spec;" \
            --seeds "$seed" --out "$OUT/$folder"
    done
done
exit "$LANE_FAILED"
