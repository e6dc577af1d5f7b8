"""This library's mixing operators against timm's ``Mixup`` and kornia's CutMix/MixUp: their rows
(with the pairing steps and CAM), target 1 (MixUp and CutMix against the memory floor and timm) and
target 3 (RandSaliencyMix against its detector, and with maps given against CutMix)."""

from __future__ import annotations

from typing import Callable, Dict, List

import numpy as np
import torch

from .common import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    INTERLEAVED_ROUNDS,
    NUM_CLASSES,
    Results,
    Row,
    Targets,
    Workloads,
    interleaved,
    quotient,
)
from .timm_reference import TIMM_VERSION, timm_mixup_module

STEP_OVER_DETECTOR_TARGET = 1.5  # RandSaliencyMix(**SALIENCY_ON) step / its detector alone
MAPS_OVER_CUTMIX_TARGET = 2.0  # RandSaliencyMix(**SALIENCY_ON) with maps given / CutMix(mode="sample")
MIX_OVER_CLONE_TARGET = 3.0  # MixUp and CutMix at the large workload: at most 3 passes of memory traffic
MIX_ROWS = ("mixup", "mixup_s", "cutmix_s")
TIMM_OF = {"mixup": "timm_mixup", "mixup_s": "timm_mixup", "cutmix_s": "timm_cutmix"}


def operator_rows() -> List[Row]:
    import randsaliencymix as rsm

    norm = dict(mean=IMAGENET_MEAN, std=IMAGENET_STD)
    on = rsm.SALIENCY_ON  # every saliency idea switched on (the defaults before the study)

    def op_call(make: Callable[[], torch.nn.Module], with_maps: bool = False, with_out: bool = False):
        def build(ctx):
            op = make()
            x, y = ctx["x"], ctx["y"]
            gen = torch.Generator(device=ctx["device"]).manual_seed(0)
            out = torch.empty_like(x) if with_out else None  # one buffer, reused by every call
            if with_maps:
                maps = ctx["maps"]
                return lambda: op(x, y, generator=gen, saliency=maps, out=out)
            return lambda: op(x, y, generator=gen, out=out)

        return build

    def timm_call(**kw):
        def build(ctx):
            module = timm_mixup_module()
            np.random.seed(0)
            op = module.Mixup(num_classes=k, label_smoothing=0.0, mode="elem", **kw)
            x = ctx["x"].clone()  # timm mixes in place: its own copy of the batch, made once
            y = ctx["y"]
            return lambda: op(x, y)

        return build

    def maps_call(fn: Callable[[Dict[str, object]], Callable[[], object]]):
        def build(ctx):
            if ctx["maps"] is None:
                raise RuntimeError("no precomputed maps (fine_grained failed)")
            return fn(ctx)

        return build

    def pairing_build(kind: str):
        from randsaliencymix.pairing import (
            complementary_pairing,
            confusion_sources,
            guided_maps,
            saliency_distances,
            uniform_confusion,
        )

        def build(ctx):
            maps = ctx["maps"]
            if kind == "distances":
                return lambda: saliency_distances(guided_maps(maps))
            if kind == "greedy":
                d = saliency_distances(guided_maps(maps))
                return lambda: complementary_pairing(d)
            e = uniform_confusion(k).to(ctx["device"])
            gen = torch.Generator(device=ctx["device"]).manual_seed(0)
            return lambda: confusion_sources(e, ctx["y"], gen)

        return maps_call(build)

    def cam_build(ctx):
        from rsmix.models import build_model

        torch.manual_seed(0)
        model = build_model("fast_resnet", k).to(ctx["device"]).train()
        x, y = ctx["x"], ctx["y"]
        return lambda: rsm.cam_and_logits(model, x, y)

    def kornia_call(name: str, **kw):
        def build(ctx):
            import kornia.augmentation as K

            op = getattr(K, name)(data_keys=["input", "class"], **kw)
            x, y = ctx["x"], ctx["y"]
            return lambda: op(x, y)

        return build

    k = NUM_CLASSES
    return [
        Row("mixup", '`MixUp(mode="batch")`', "operator", op_call(lambda: rsm.MixUp(num_classes=k, mode="batch"))),
        Row("mixup_s", '`MixUp(mode="sample")`', "operator", op_call(lambda: rsm.MixUp(num_classes=k, mode="sample"))),
        Row(
            "mixup_s_out",
            '`MixUp(mode="sample")` with `out=` (a reused buffer)',
            "operator",
            op_call(lambda: rsm.MixUp(num_classes=k, mode="sample"), with_out=True),
        ),
        Row("cutmix_b", '`CutMix(mode="batch")`', "operator", op_call(lambda: rsm.CutMix(num_classes=k, mode="batch"))),
        Row(
            "cutmix_s", '`CutMix(mode="sample")`', "operator", op_call(lambda: rsm.CutMix(num_classes=k, mode="sample"))
        ),
        Row(
            "cutmix_s_out",
            '`CutMix(mode="sample")` with `out=` (a reused buffer)',
            "operator",
            op_call(lambda: rsm.CutMix(num_classes=k, mode="sample"), with_out=True),
        ),
        Row(
            "timm_mixup",
            f'timm {TIMM_VERSION} `Mixup(mode="elem", cutmix_alpha=0)` (MixUp per sample, in place)',
            "timm",
            timm_call(mixup_alpha=1.0, cutmix_alpha=0.0),
        ),
        Row(
            "timm_cutmix",
            f'timm {TIMM_VERSION} `Mixup(mode="elem", mixup_alpha=0)` (CutMix per sample, in place)',
            "timm",
            timm_call(mixup_alpha=0.0, cutmix_alpha=1.0),
        ),
        Row(
            "smix_off",
            '`SaliencyMix(variant="official")` (1 OpenCV map / batch)',
            "operator",
            op_call(lambda: rsm.SaliencyMix(num_classes=k, variant="official", **norm)),
            "cv_fg",
        ),
        Row(
            "smix_ps",
            '`SaliencyMix(variant="per_sample")`',
            "operator",
            op_call(lambda: rsm.SaliencyMix(num_classes=k, variant="per_sample", **norm)),
            "cv_fg",
        ),
        Row(
            "rsm",
            "`RandSaliencyMix(**SALIENCY_ON)`",
            "operator",
            op_call(lambda: rsm.RandSaliencyMix(num_classes=k, **on, **norm)),
            "cv_fg",
        ),
        Row(
            "rsm_beta",
            '`RandSaliencyMix(**SALIENCY_ON, eta="beta", mixup_prob=0.3)`',
            "operator",
            op_call(lambda: rsm.RandSaliencyMix(num_classes=k, **{**on, "eta": "beta", "mixup_prob": 0.3}, **norm)),
            "cv_fg",
        ),
        Row(
            "rsm_sr",
            '`RandSaliencyMix(**SALIENCY_ON, detector="spectral")`',
            "operator",
            op_call(lambda: rsm.RandSaliencyMix(num_classes=k, detector="spectral", **on, **norm)),
            "cv_sr",
        ),
        Row(
            "rsm_maps",
            "`RandSaliencyMix(**SALIENCY_ON)` given maps (sampling + apply only)",
            "operator",
            op_call(lambda: rsm.RandSaliencyMix(num_classes=k, **on, **norm), with_maps=True),
        ),
        Row(
            "rsm_default",
            "`RandSaliencyMix()` (the study's defaults: no saliency, detector skipped)",
            "operator",
            op_call(lambda: rsm.RandSaliencyMix(num_classes=k, **norm)),
        ),
        Row(
            "rsm_noise",
            "`RandSaliencyMix(**SALIENCY_ON, patch_noise=0.4)`",
            "operator",
            op_call(lambda: rsm.RandSaliencyMix(num_classes=k, patch_noise=0.4, **on, **norm)),
            "cv_fg",
        ),
        Row(
            "rsm_comp",
            '`RandSaliencyMix(**SALIENCY_ON, pairing="complementary")`',
            "operator",
            op_call(lambda: rsm.RandSaliencyMix(num_classes=k, pairing="complementary", **on, **norm)),
            "cv_fg",
        ),
        Row(
            "rsm_conf",
            '`RandSaliencyMix(**SALIENCY_ON, pairing="confusion")`',
            "operator",
            op_call(lambda: rsm.RandSaliencyMix(num_classes=k, pairing="confusion", **on, **norm)),
            "cv_fg",
        ),
        Row(
            "rsm_maps_comp",
            '`RandSaliencyMix(**SALIENCY_ON, pairing="complementary")` given maps',
            "operator",
            op_call(lambda: rsm.RandSaliencyMix(num_classes=k, pairing="complementary", **on, **norm), with_maps=True),
        ),
        Row(
            "pair_dist",
            "pairing: `saliency_distances(guided_maps(maps))` (blur, normalise, B×B L2)",
            "pairing",
            pairing_build("distances"),
        ),
        Row(
            "pair_greedy",
            "pairing: `complementary_pairing(D)` (greedy cycle, B-2 steps)",
            "pairing",
            pairing_build("greedy"),
        ),
        Row("pair_conf", "pairing: `confusion_sources(E, y, g)`", "pairing", pairing_build("confusion")),
        Row(
            "guided",
            "`GuidedMixup(p=1)` (SR: spectral detector inside, complementary pairing)",
            "operator",
            op_call(lambda: rsm.GuidedMixup(num_classes=k, p=1.0, **norm)),
            "cv_sr",
        ),
        Row(
            "guided_maps",
            "`GuidedMixup(p=1)` given maps (complementary pairing)",
            "operator",
            op_call(lambda: rsm.GuidedMixup(num_classes=k, p=1.0, **norm), with_maps=True),
        ),
        Row(
            "guided_maps_rand",
            '`GuidedMixup(p=1, pairing="random")` given maps',
            "operator",
            op_call(lambda: rsm.GuidedMixup(num_classes=k, p=1.0, pairing="random", **norm), with_maps=True),
        ),
        Row("cam", "`cam_and_logits(fast_resnet, x, y)` (CAM: one no-grad forward, train mode)", "saliency", cam_build),
        Row("k_cutmix", "kornia `RandomCutMixV2`", "kornia", kornia_call("RandomCutMixV2", use_correct_lambda=True)),
        Row("k_mixup", "kornia `RandomMixUpV2`", "kornia", kornia_call("RandomMixUpV2")),
    ]


def mix_target(rows: List[Row], workloads: Workloads, results: Results) -> Targets:
    """Target 1, at the largest workload (rows timed interleaved): MixUp and per-sample CutMix within
    a few passes of memory traffic and no slower than timm; the smallest workload for information."""
    out = Targets()
    labels = {row.key: row.label for row in rows}
    big = len(workloads) - 1  # the ImageNet-sized workload
    b, s, _ = workloads[big]
    res = interleaved(results[big])
    out.lines.append(
        "Targets 1 and 3 compare rows timed interleaved (see the last table): one call of each row in turn, "
        f"{INTERLEAVED_ROUNDS} rounds, medians. Target 2 compares rows of the main table.\n"
    )
    out.lines.append(
        f"**1. MixUp and per-sample CutMix at B={b}, {s}²: at most {MIX_OVER_CLONE_TARGET:g} passes of memory "
        f"traffic (≤ {MIX_OVER_CLONE_TARGET:g}× `x.clone()`), and no slower than timm's `elem` mode.**\n"
    )
    for key in MIX_ROWS:
        for out_key in (key, f"{key}_out") if f"{key}_out" in res else (key,):
            text, v = quotient(res, out_key, "clone", MIX_OVER_CLONE_TARGET, True, labels[out_key] + " ÷ clone", "")
            out.add(text.replace("- : ", "- "), v, f"{out_key} / clone {s}²")
            text, v = quotient(res, out_key, TIMM_OF[key], 1.0, True, labels[out_key] + " ÷ timm `elem`", "")
            out.add(text.replace("- : ", "- "), v, f"{out_key} / timm {s}²")
    small = interleaved(results[0])
    parts = []
    for key in MIX_ROWS:
        r, c, t = small.get(key), small.get("clone"), small.get(TIMM_OF[key])
        if r and c and r.median_s and c.median_s:
            parts.append(
                f"{labels[key]} {r.median_s * 1e3:.2f} ms = {r.median_s / c.median_s:.0f}× clone"
                + (f", {r.median_s / t.median_s:.2f}× timm" if t and t.median_s else "")
            )
    if parts:
        out.lines.append(
            f"\n(At B={workloads[0][0]}, {workloads[0][1]}², for information, where a clone is "
            "microseconds and every operator's cost is per-call overhead: " + "; ".join(parts) + ".)\n"
        )
    return out


def step_target(workloads: Workloads, results: Results) -> Targets:
    """Target 3 (rows timed interleaved): a RandSaliencyMix step against its detector alone, and
    with maps given against per-sample CutMix."""
    out = Targets()
    out.lines.append(
        f"\n**3. `RandSaliencyMix(**SALIENCY_ON)`: at most {STEP_OVER_DETECTOR_TARGET:g}× its detector alone "
        f"(`fine_grained` on the same float batch, incl. the uint8 conversion); with maps given, within "
        f'{MAPS_OVER_CUTMIX_TARGET:g}× of `CutMix(mode="sample")`.**\n'
    )
    for (b, s, _), res_all in zip(workloads, results):
        res = interleaved(res_all)
        text, v = quotient(res, "rsm", "fg_f", STEP_OVER_DETECTOR_TARGET, True, "step ÷ detector", f"B={b}, {s}²")
        out.add(text, v, f"step/detector B={b} {s}²")
        text, v = quotient(
            res, "rsm_maps", "cutmix_s", MAPS_OVER_CUTMIX_TARGET, True, "maps given ÷ CutMix", f"B={b}, {s}²"
        )
        out.add(text, v, f"maps/cutmix B={b} {s}²")
    return out
