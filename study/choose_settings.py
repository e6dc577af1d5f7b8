"""Apply the selection rule of study/SELECTION.md to the tuning runs (validation error only).

.venv/bin/python study/choose_settings.py            # prints the decision and its evidence
.venv/bin/python study/choose_settings.py --specs    # prints the `rsmix compare --methods` line
.venv/bin/python study/choose_settings.py --rsm      # prints only the tuned RandSaliencyMix options
"""

from __future__ import annotations

import csv
import json
import sys
from pathlib import Path
from typing import Dict, List, Tuple

STUDY = Path(__file__).resolve().parent
MARGIN = 0.5  # points of validation error a one-setting change must gain to be accepted

# setting -> its candidate runs (each changes only that setting from rsm_default)
RSM_CANDIDATES = {
    "tau_src": ["rsm_tsrc0", "rsm_tsrc4"],
    "tau_dst": ["rsm_tdst0", "rsm_tdst4"],
    "gamma": ["rsm_g0", "rsm_g1"],
    "eta": ["rsm_blend"],
    "mixup_prob": ["rsm_mixup0.25"],
    "p": ["rsm_p0.5"],
    "detector": ["rsm_spectral"],
}
BASELINES = {
    "mixup": ["mixup_a0.2", "mixup_a1"],
    "cutmix": ["cutmix_p0.5", "cutmix_p1"],
    "saliencymix": ["saliencymix_p0.5", "saliencymix_p1"],
    "saliencymix_per_sample": ["sm_ps_p0.5", "sm_ps_p1"],
}


def load() -> Tuple[Dict[str, float], Dict[str, Dict]]:
    with open(STUDY / "tuning_lowdata" / "results.csv") as fh:
        table = list(csv.DictReader(fh))
    err = {r["name"]: float(r["val_top1_err"]) for r in table}
    mix = {}
    for r in table:
        cfg = json.loads((STUDY / "tuning_lowdata" / "runs" / f"{r['name']}_s{r['seed']}" / "config.json").read_text())
        mix[r["name"]] = cfg["mix"]
    return err, mix


def decide() -> Tuple[Dict[str, Dict], Dict, List[str]]:
    err, mix = load()
    log: List[str] = []
    baselines = {}
    for method, names in BASELINES.items():
        best = min(names, key=lambda n: err[n])
        baselines[method] = mix[best]
        log.append(f"{method}: " + ", ".join(f"{n} {err[n]:.2f}" for n in names) + f" -> {best}")
    reference = err["rsm_default"]
    log.append(f"rsm_default {reference:.2f}")
    rsm: Dict = {}
    for setting, names in RSM_CANDIDATES.items():
        best = min(names, key=lambda n: err[n])
        gain = reference - err[best]
        accepted = gain >= MARGIN
        log.append(
            f"{setting}: "
            + ", ".join(f"{n} {err[n]:.2f}" for n in names)
            + f" -> best {best} gains {gain:+.2f}: {'ACCEPT' if accepted else 'keep default'}"
        )
        if accepted:
            rsm.update(mix[best])
    return baselines, rsm, log


def spec(name: str, method: str, options: Dict) -> str:
    opts = ",".join(f"{k}={v}" for k, v in sorted(options.items()))
    return f"{name}={method}" + (f":{opts}" if opts else "")


def ablation_specs(rsm: Dict) -> List[str]:
    """Each idea switched on alone on top of per-sample SaliencyMix written as RandSaliencyMix
    options (source window at the saliency peak, same coordinates, area labels, hard paste, the
    tuned p), at its design value (the tuning may have switched it off); then the tuned method
    with every saliency idea switched back on, with each detector. The base itself is the
    saliencymix_per_sample rows of the low-data main runs (same p when the rule picks the same)."""
    p = rsm.get("p", 1.0)
    base = {"source": "peak", "paste": "same", "gamma": 0.0, "p": p}
    all_ideas = {**rsm, "source": "saliency", "tau_src": 1.0, "paste": "anti_saliency", "tau_dst": 1.0, "gamma": 0.5}
    return [
        spec("abl_random_source", "randsaliencymix", {**base, "source": "saliency", "tau_src": 1.0}),
        spec("abl_anti_saliency_paste", "randsaliencymix", {**base, "paste": "anti_saliency", "tau_dst": 1.0}),
        spec("abl_saliency_labels", "randsaliencymix", {**base, "gamma": 1.0}),
        spec("abl_blended_patch", "randsaliencymix", {**base, "eta": "beta"}),
        spec("abl_all_ideas", "randsaliencymix", {**all_ideas, "detector": "fine_grained"}),
        spec("abl_all_ideas_spectral", "randsaliencymix", {**all_ideas, "detector": "spectral"}),
    ]


if __name__ == "__main__":
    baselines, rsm, log = decide()
    if "--ablation" in sys.argv:
        print(";".join(ablation_specs(rsm)))
    elif "--rsm" in sys.argv:
        print(",".join(f"{k}={v}" for k, v in sorted(rsm.items())))
    elif "--specs" in sys.argv:
        specs = (
            ["none"] + [spec(m, m, o) for m, o in baselines.items()] + [spec("randsaliencymix", "randsaliencymix", rsm)]
        )
        print(";".join(specs))
    else:
        print("\n".join(log))
        print("tuned RandSaliencyMix options (changes from the defaults):", rsm or "none")
