"""Do the seed's ideas do what they claim at 128 px? (study 2, issue 17): each operator's own drawn
boxes and label weights on Imagenette's test images, scored against a trained classifier's CAM.

    .venv/bin/python study/study2/imagenette/mechanism.py study/study2/imagenette/main_operator/runs/none_s0

RUN is a finished no-mixing run with its checkpoint; its CAM (of the predicted class, each map
scaled to sum 1) stands for "where the object is". Every operator draws its parameters for a
seeded subset of the training images (the diagnostic may guide part 2's search, so it does not
read the test split) in batches of 256 from one seeded generator (``sample_params``, the same draw the
training step makes), given the saliency maps it would read. Over the patch samples (applied, not
MixUp), the table gives:

* **box area**: the pasted box's share of the image;
* **source object pasted**: the share of the source's CAM inside the box cut from it (idea 1:
  crop where saliency is);
* **target object covered**: the share of the target's CAM under the box it lands on (idea 1:
  paste where it covers little of the target's own object);
* **label gap**: |label weight of the source − object share|, where the object share is the
  source's pasted CAM mass over all the object mass left in the mixed image (``eta a / (eta a + 1
  − eta c)`` with ``a`` pasted, ``c`` covered, ``eta`` the blend); idea 2 (labels by saliency)
  should make it smaller than area labels do.

Rows: CutMix's uniform boxes (per sample), SaliencyMix per-sample (the fine-grained peak), and
RandSaliencyMix as ``rsm_seed`` runs it (tau_src 1, tau_dst 1, gamma 0.5, blend and MixUp switch)
reading fine-grained, spectral-residual and CAM maps, plus rsm_seed with area labels (gamma 0) as
idea 2's control, and the same draws with uniform positions (tau 0) as idea 1's. The CAM row reads the very map it is scored with: the most any source could do.
Two sharper rows (tau_src = tau_dst = 8) show how far the same mechanism moves its boxes when its
preference is stronger. One model, one draw: a diagnostic of the mechanism, not of accuracy.
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple

import torch

from randsaliencymix import CutMix, RandSaliencyMix, SaliencyMix, SelfCAMLabels
from randsaliencymix.base import Mixer
from randsaliencymix.geometry import box_mass, integral
from rsmix.augment import normalize
from rsmix.data import load_dataset
from rsmix.errors import UsageError
from rsmix.evaluate import load_trained_model
from rsmix.occlusion import source_maps
from rsmix.precision import cpu_name

HERE = Path(__file__).resolve().parent
RSM_SEED: Dict[str, Any] = dict(p=1.0, tau_src=1.0, tau_dst=1.0, gamma=0.5, eta="beta", mixup_prob=0.25)
SHARP: Dict[str, Any] = dict(tau_src=8.0, tau_dst=8.0)
UNIFORM: Dict[str, Any] = dict(tau_src=0.0, tau_dst=0.0)
BATCH = 256  # the training step's batch: the operators draw whole batches of it


def in_boxes(maps: torch.Tensor, boxes: torch.Tensor) -> torch.Tensor:
    """Mass of each map (summing to 1) inside its half-open box ``(r1, c1, r2, c2)``."""
    r1, c1, r2, c2 = boxes.unbind(1)
    n, width = maps.shape[0], maps.shape[-1]
    return box_mass(integral(maps), torch.arange(n), r1 * width + c1, r2 - r1, c2 - c1)


def score(
    op: Mixer,
    x: torch.Tensor,
    maps: Optional[torch.Tensor],
    cam: torch.Tensor,
    self_cam: Optional[Tuple[SelfCAMLabels, torch.Tensor]] = None,
) -> Dict[str, float]:
    """The table's columns for one operator; with ``self_cam`` (a labeler of the trained model and the
    images' labels) the label weights are the self-CAM ones, read from the model's forward of the
    mixed batch (the same draws: ``step`` samples as ``sample_params`` does)."""
    gen = torch.Generator().manual_seed(0)
    sums = {"samples": 0.0, "area": 0.0, "pasted": 0.0, "covered": 0.0, "gap": 0.0}
    h, w = x.shape[-2:]
    for start in range(0, x.shape[0] - BATCH + 1, BATCH):  # whole batches only, as training draws them
        sl = slice(start, start + BATCH)
        given = None if maps is None else maps[sl]
        if self_cam is None:
            params = op.sample_params(x[sl], generator=gen, saliency=given)
            weight = params.source_weight
        else:
            labeler, labels = self_cam
            step = labeler.step(op, x[sl], labels[sl], generator=gen, saliency=given)
            with torch.no_grad():
                labeler.model(step.images)
            params, weight = step.params, step.source_weight
        keep = params.applied & ~params.mixup
        src_cam = cam[sl][params.perm]
        a = in_boxes(src_cam, params.src_boxes)
        c = in_boxes(cam[sl], params.dst_boxes)
        sb = params.src_boxes
        area = ((sb[:, 2] - sb[:, 0]) * (sb[:, 3] - sb[:, 1])).double() / (h * w)
        eta = params.eta
        share = eta * a / (eta * a + 1 - eta * c)
        gap = (weight - share).abs()
        k = keep.double()
        sums["samples"] += float(k.sum())
        for key, value in (("area", area), ("pasted", a), ("covered", c), ("gap", gap)):
            sums[key] += float((value * k).sum())
    n = sums["samples"]  # no patch sample (fewer images than a batch, or every draw MixUp or not applied): NaN means
    return {key: value / n if n else math.nan for key, value in sums.items() if key != "samples"} | {"samples": n}


def cells(r: Dict[str, float]) -> str:
    """The table's cells of one row (a mean over no patch samples reads "—")."""
    means = (f"{r[k]:.3f}" if math.isfinite(r[k]) else "—" for k in ("area", "pasted", "covered", "gap"))
    return f"{r['samples']:.0f} | " + " | ".join(means)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("run", type=Path)
    ap.add_argument("--data", default="../shared/data/imagenette2-224.tar")
    ap.add_argument("--split", default="train", help="training images: this may guide part 2's search")
    ap.add_argument("--images", type=int, default=3840, help="a seeded random subset of this many")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--out", type=Path, default=HERE / "mechanism.md")
    args = ap.parse_args(argv)
    if args.images < BATCH:
        ap.error(f"--images {args.images}: at least one batch ({BATCH}); the operators draw whole batches")
    torch.set_num_threads(args.threads)
    start = time.perf_counter()
    try:
        trained = load_trained_model(args.run, "cpu", channels=3)
        ds = load_dataset(args.data, args.split, size=trained.image_size or None)
    except UsageError as exc:
        raise SystemExit(f"mechanism.py: {exc}") from None
    if ds.images.shape[0] < BATCH:
        raise SystemExit(
            f"mechanism.py: {args.data} has {ds.images.shape[0]} {args.split} images, fewer than one batch ({BATCH})"
        )
    subset = torch.randperm(ds.images.shape[0], generator=torch.Generator().manual_seed(0))[: args.images]
    images = ds.images[subset]
    maps = source_maps(trained.model, images, ("fine_grained", "spectral", "cam"), trained.mean, trained.std,
                       device=torch.device("cpu"), precision=trained.precision)  # fmt: skip
    cam = maps["cam"].double()
    cam = cam / cam.sum((1, 2), keepdim=True).clamp_min(1e-12)
    x = normalize(images, trained.mean, trained.std)
    rows: List[Tuple[str, Mixer, Optional[torch.Tensor]]] = [
        ("CutMix, uniform box (per sample)", CutMix(alpha=1.0, mode="sample"), None),
        ("SaliencyMix per-sample, fine-grained peak", SaliencyMix(alpha=1.0, variant="per_sample"), maps["fine_grained"]),
        ("control: rsm_seed with uniform positions (tau 0), CAM", RandSaliencyMix(**{**RSM_SEED, **UNIFORM}),
         maps["cam"]),
        ("rsm_seed, fine-grained maps (as trained)", RandSaliencyMix(**RSM_SEED), maps["fine_grained"]),
        ("rsm_seed, spectral-residual maps", RandSaliencyMix(**RSM_SEED), maps["spectral"]),
        ("rsm_seed, CAM maps (scored with itself)", RandSaliencyMix(**RSM_SEED), maps["cam"]),
        ("rsm_seed with area labels (gamma 0), fine-grained", RandSaliencyMix(**{**RSM_SEED, "gamma": 0.0}),
         maps["fine_grained"]),
        ("rsm_seed with area labels (gamma 0), CAM", RandSaliencyMix(**{**RSM_SEED, "gamma": 0.0}), maps["cam"]),
        ("rsm_seed with tau_src = tau_dst = 8, fine-grained", RandSaliencyMix(**{**RSM_SEED, **SHARP}),
         maps["fine_grained"]),
        ("rsm_seed with tau_src = tau_dst = 8, CAM", RandSaliencyMix(**{**RSM_SEED, **SHARP}), maps["cam"]),
    ]  # fmt: skip
    labels = ds.labels[subset]
    k = len(ds.classes)
    self_cam_rows: List[Tuple[str, Mixer, Optional[torch.Tensor], float]] = [
        ("CutMix with self-CAM labels (kappa 0.5)", CutMix(alpha=1.0, mode="sample", num_classes=k), None, 0.5),
        ("CutMix with self-CAM labels (kappa 1)", CutMix(alpha=1.0, mode="sample", num_classes=k), None, 1.0),
        ("rsm_uniform (tau 0, gamma 0) with self-CAM labels (kappa 0.5)",
         RandSaliencyMix(**{**RSM_SEED, **UNIFORM, "gamma": 0.0}, num_classes=k), None, 0.5),
        ("rsm_seed with area labels and tau 8, CAM, self-CAM labels (kappa 0.5)",
         RandSaliencyMix(**{**RSM_SEED, **SHARP, "gamma": 0.0}, num_classes=k), maps["cam"], 0.5),
        ("rsm_seed with area labels and tau 8, CAM, self-CAM labels (kappa 1)",
         RandSaliencyMix(**{**RSM_SEED, **SHARP, "gamma": 0.0}, num_classes=k), maps["cam"], 1.0),
    ]  # fmt: skip
    lines = [
        "# Do the seed's ideas do what they claim at 128 px?",
        "",
        f"Command: `.venv/bin/python study/study2/imagenette/mechanism.py {args.run}` "
        f"({x.shape[0]} images of Imagenette's `{args.split}` split, a seeded subset, at {x.shape[-1]} px, whole "
        f"batches of 256; the CAM of `{args.run.name}` "
        "stands for where the object is; see the script's docstring for each column).",
        "",
        "Means over the patch samples (applied, not MixUp) of one seeded draw. Source object pasted: higher",
        "is what idea 1's crop wants; target object covered: lower is what its anti-saliency paste wants;",
        "label gap: |source label weight − the source's share of the object mass in the mixed image|, lower",
        "is what idea 2 wants. Box sizes differ between operators (CutMix's boxes are clipped at the",
        "borders, RandSaliencyMix's never are), and the object sits near the centre, which any large box",
        "covers much of: compare each RandSaliencyMix row with its control, the same draws with uniform",
        "positions (tau 0), not with CutMix.",
        "",
        "| operator and maps | patch samples | box area | source object pasted | target object covered | label gap |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for name, op, given in rows:
        r = score(op, x, given, cam)
        lines.append(f"| {name} | {cells(r)} |")
    for name, op, given, kappa in self_cam_rows:
        labeler = SelfCAMLabels(trained.model, kappa=kappa)
        r = score(op, x, given, cam, self_cam=(labeler, labels))
        lines.append(f"| {name} | {cells(r)} |")
    lines += [
        "",
        "The self-CAM rows' labels come from the trained model's own forward of each mixed batch (eval",
        "mode), the same draws as the row without them; they are scored against the clean images' CAM.",
    ]
    lines += ["", f"{time.perf_counter() - start:.0f} s on {cpu_name()}, torch {torch.__version__}."]
    text = "\n".join(lines) + "\n"
    args.out.write_text(text)
    print(text, end="")
    return 0


if __name__ == "__main__":
    sys.exit(main())
