#!/usr/bin/env bash
# Stage 1 of the study: the validation search (low-data regime, one tuning seed, no test split).
set -euo pipefail
cd "$(dirname "$0")/.."
RSMIX=${RSMIX:-.venv/bin/rsmix}
$RSMIX compare --config study/preset.yaml --train-fraction 0.1 --epochs 15 --eval-every 5 \
  --seeds 100 --jobs 2 --reference rsm_default --out study/tuning_lowdata --methods \
"none;mixup_a0.2=mixup:alpha=0.2;mixup_a1=mixup:alpha=1.0;\
cutmix_p0.5=cutmix:alpha=1.0,p=0.5;cutmix_p1=cutmix:alpha=1.0,p=1.0;\
saliencymix_p0.5=saliencymix:alpha=1.0,p=0.5;saliencymix_p1=saliencymix:alpha=1.0,p=1.0;\
sm_ps_p0.5=saliencymix_per_sample:alpha=1.0,p=0.5;sm_ps_p1=saliencymix_per_sample:alpha=1.0,p=1.0;\
rsm_default=randsaliencymix;\
rsm_tsrc0=randsaliencymix:tau_src=0;rsm_tsrc4=randsaliencymix:tau_src=4;\
rsm_tdst0=randsaliencymix:tau_dst=0;rsm_tdst4=randsaliencymix:tau_dst=4;\
rsm_g0=randsaliencymix:gamma=0;rsm_g1=randsaliencymix:gamma=1;\
rsm_blend=randsaliencymix:eta=beta;rsm_mixup0.25=randsaliencymix:mixup_prob=0.25;\
rsm_p0.5=randsaliencymix:p=0.5;rsm_spectral=randsaliencymix:detector=spectral"
