# Study 2's regime A, sourced by the lane scripts of this folder (main.sh, screen.sh, confirm.sh):
# the flags every run shares and every method's settings, written once.
#
#   regime_a_method NAME   # sets M_SOURCE (--saliency), M_SELFCAM (the --self-cam flags, none when
#                          # off) and M_METHODS (the --methods token); exit 2 for a name not below
#   regime_a_run NAME SEED # lane_run (lanes.sh) of NAME at SEED: `rsmix compare` with the script's
#                          # COMMON flags into $OUT/${FOLDER[source]}, taken to last RUN_MINUTES
#                          # (1.3x that with a CAM forward); uses the caller's OUT, FOLDER, COMMON, RSMIX
#
# Regime A (PROTOCOL.md): fast_resnet at 128 px, resized crop (scale 0.35-1), channels_last, bf16
# (only on a CPU with native bf16), one thread a run, validation every 8 epochs on the 10% of
# train/ that --split-seed 0 holds out. Each script adds --epochs; the runs that read the test split
# (Imagenette's val/ folder: part 1's table, stage 4's confirmation) add REGIME_A_TEST.

REGIME_A=(--data ../shared/data/imagenette2-224.tar --image-size 128 --model fast_resnet
    --augment resized_crop --rrc-scale 0.35,1 --rrc-ratio 0.75,1.3333333333333333 --channels-last
    --val-fraction 0.1 --split-seed 0 --precision bf16 --eval-every 8 --threads 1)
REGIME_A_TEST=(--test --test-split val --robustness)

# Baselines with their papers' ImageNet settings (GuidedMixup publishes none for ImageNet; its
# Tiny-ImageNet SR setting is used): MixUp alpha 0.2; CutMix alpha 1, p 1, one box per batch;
# SaliencyMix alpha (beta) 1, p 1 (official: one box per batch, from its own OpenCV map of the
# batch's first source; per_sample: one per image); GuidedMixup SR p (mix_prob) 0.5, complementary
# (greedy) pairing. RSM-seed: every idea of the seed on, untuned. The screen's candidates
# (SCREEN.md): RSM-seed's settings unless named; "cam" reads the model's CAM of the clean batch (one
# extra no-grad forward a step), a kappa above 0 switches on the self-CAM labels.
RSM="randsaliencymix:p=1,eta=beta,mixup_prob=0.25"
CAM8="$RSM,tau_src=8,tau_dst=8"
# name, saliency source, self-CAM kappa (0: off), method spec (the method's own name: no options)
REGIME_A_METHODS=(
    "none operator 0 none"
    "mixup operator 0 mixup:alpha=0.2"
    "cutmix operator 0 cutmix:alpha=1,p=1"
    "saliencymix operator 0 saliencymix:alpha=1,p=1"
    "saliencymix_per_sample fine_grained_cached 0 saliencymix_per_sample:alpha=1,p=1"
    "rsm_seed fine_grained_cached 0 randsaliencymix:p=1,tau_src=1,tau_dst=1,gamma=0.5,eta=beta,mixup_prob=0.25"
    "guided_sr spectral_cached 0 guidedmixup:p=0.5,pairing=complementary"
    "rsm_uniform operator 0 $RSM,tau_src=0,tau_dst=0,gamma=0"
    "rsm_cam8 cam 0 $CAM8,gamma=0.5"
    "rsm_cam16 cam 0 $RSM,tau_src=16,tau_dst=16,gamma=0.5"
    "rsm_cam8_hard cam 0 randsaliencymix:p=1,eta=1,mixup_prob=0,tau_src=8,tau_dst=8,gamma=0.5"
    "rsm_cam8_seedrepo cam 0 $CAM8,gamma=0.5,patch_noise=0.4,pairing=confusion"
    "rsm_selfcam operator 0.5 $RSM,tau_src=0,tau_dst=0,gamma=0"
    "rsm_cam8_selfcam cam 0.5 $CAM8,gamma=0"
    "cutmix_selfcam operator 0.5 cutmix:alpha=1,p=1"
)

# The screen's eight candidates (SCREEN.md), in its lanes' order (screen.sh; benchmarks/screen_step.py)
SCREEN_NAMES=(rsm_uniform rsm_cam8 rsm_cam16 rsm_cam8_hard rsm_cam8_seedrepo rsm_selfcam rsm_cam8_selfcam cutmix_selfcam)

regime_a_method() {
    local entry name kappa spec
    for entry in "${REGIME_A_METHODS[@]}"; do
        read -r name M_SOURCE kappa spec <<<"$entry"
        [ "$name" = "$1" ] || continue
        M_SELFCAM=()
        [ "$kappa" != 0 ] && M_SELFCAM=(--self-cam "$kappa")
        M_METHODS="$name=$spec;"
        [ "$spec" = "$name" ] && M_METHODS="$name;"
        return 0
    done
    echo "regime_a.sh: no method named '$1' in REGIME_A_METHODS" >&2
    exit 2
}

regime_a_run() {
    local name=$1 seed=$2 folder minutes=$RUN_MINUTES
    regime_a_method "$name"
    folder=${FOLDER[$M_SOURCE]}
    [ "$M_SOURCE" = cam ] && minutes=$((RUN_MINUTES * 13 / 10))
    lane_run "$OUT/$folder/runs/${name}_s$seed" "$folder-${name}_s$seed" "$folder $name seed $seed" "$minutes" \
        "$RSMIX" compare "${COMMON[@]}" --saliency "$M_SOURCE" "${M_SELFCAM[@]}" --methods "$M_METHODS" \
        --seeds "$seed" --out "$OUT/$folder"
}
