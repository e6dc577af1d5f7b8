"""``rsmix``: the command-line tool.

* ``rsmix show``: the gallery of saliency maps and operator outputs;
* ``rsmix train``: one training run (flags, and/or a YAML config);
* ``rsmix eval``: a checkpoint's errors, NLL and ECE on any supported dataset;
* ``rsmix compare``: methods x seeds, resumable, with tables and plots.

Bad input is reported in one line naming the problem and the accepted values, exit code 2.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Dict, List, Optional, Tuple

from randsaliencymix import __version__

from .precision import PRECISION_CHOICES, PRECISIONS

if TYPE_CHECKING:
    from .config import TrainConfig


# rsmix show's image side: the detectors need a few pixels, and the figure holds dozens of float
# copies of every image (beyond 2048 px it fits no screen and strains memory).
_SHOW_SIZES = (8, 2048)


def _check_figure_suffix(path: Path) -> None:
    """A UsageError unless matplotlib can write a figure with ``path``'s suffix (checked before drawing)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    from .errors import UsageError

    supported = sorted(FigureCanvasAgg(Figure()).get_supported_filetypes())
    suffix = path.suffix.lstrip(".").lower()
    if suffix not in supported:
        raise UsageError(f"--out {path}: expected a figure file ending in one of .{', .'.join(supported)}")


def _cmd_show(args: argparse.Namespace) -> int:
    from .errors import UsageError
    from .gallery import CamModel, draw_gallery, folder_images, sample_images

    lo, hi = _SHOW_SIZES
    if args.size is not None and not lo <= args.size <= hi:
        raise UsageError(f"--size must be from {lo} to {hi} pixels, got {args.size}")
    if args.limit < 2:
        raise UsageError(f"--limit must be >= 2 (the operators pair each image with another), got {args.limit}")
    cam = None
    size = args.size
    if args.checkpoint is not None:
        from .evaluate import load_trained_model

        trained = load_trained_model(Path(args.checkpoint), args.device, channels=3)
        cam = CamModel(trained.model, trained.mean, trained.std)
        size = size or trained.image_size or None  # the size the model was trained at
    size = size or 128
    if args.images is not None:
        if not Path(args.images).is_dir():
            raise UsageError(f"--images {args.images} is not a directory")
        try:
            images = folder_images(Path(args.images), size, args.limit)
        except ValueError as exc:
            raise UsageError(str(exc)) from None
    else:
        images = sample_images(size)
    _check_figure_suffix(Path(args.out))  # after the images (a missing extra is named first), before drawing
    out = draw_gallery(images, Path(args.out), seed=args.seed, cam=cam)
    print(f"wrote {out}")
    return 0


_METHOD_NAMES = ("none", "mixup", "cutmix", "saliencymix", "saliencymix_per_sample", "randsaliencymix")
# compare sets these per run itself: the flags (and config keys) are refused there, not ignored.
_PER_RUN = ("--method", "--seed")


def _floats(text: str) -> List[float]:
    try:
        return [float(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated numbers, got {text!r}") from None


_TRAIN_FLAGS: Dict[str, Tuple[str, Callable[[str], Any], str]] = {
    # flag: (config key, type, help)
    "--data": (
        "data",
        str,
        "procedural[:N[:M]], cifar10, cifar100, a CIFAR folder/.tar.gz, an ImageFolder or .tar[.gz]",
    ),
    "--data-root": ("data_root", str, "folder holding cifar10/cifar100 archives"),
    "--image-size": (
        "image_size",
        int,
        "decode every split once at N x N (cached by content and size; image folders and archives, procedural); "
        "0: as stored",
    ),
    "--train-fraction": ("train_fraction", float, "class-balanced share of the training set (low-data regime)"),
    "--val-fraction": ("val_fraction", float, "share of the training set held out for validation"),
    "--split-seed": ("split_seed", int, "seed of the validation split (the same for every run)"),
    "--model": (
        "model",
        str,
        "resnet18, preact_resnet18, wrn28_10, fast_cnn (32 px); fast_resnet (96-160 px, CPU), resnet18_imagenet",
    ),
    "--method": ("method", str, "one of: " + ", ".join(_METHOD_NAMES)),
    "--saliency": (
        "saliency",
        str,
        "maps the saliency operators read: operator (each its own detector), fine_grained, spectral "
        "(that detector on each clean batch), fine_grained_cached, spectral_cached (the training split's maps "
        "computed once, cached by content, cropped and flipped with the images), or cam (class activation maps "
        "of the model being trained)",
    ),
    "--self-cam": (
        "self_cam",
        float,
        "kappa in [0, 1] of self-CAM labels: each mixed sample's source weight moves this far towards the share "
        "of the model's own class activation in the training forward (0: off; TransMix uses 0.5)",
    ),
    "--epochs": ("epochs", int, "training epochs"),
    "--batch-size": ("batch_size", int, "batch size per process"),
    "--lr": ("lr", float, "peak learning rate"),
    "--weight-decay": ("weight_decay", float, "weight decay"),
    "--schedule": ("schedule", str, "cosine or multistep"),
    "--warmup-epochs": ("warmup_epochs", float, "linear warm-up length"),
    "--label-smoothing": ("label_smoothing", float, "label smoothing"),
    "--augment": (
        "augment",
        str,
        "pad_crop (CIFAR: --crop-padding, flip) or resized_crop (photographs: --rrc-scale, --rrc-ratio, flip)",
    ),
    "--crop-padding": ("crop_padding", int, "pad_crop: padding of the random crop (0: no crop)"),
    "--rrc-scale": ("rrc_scale", _floats, "resized_crop: area fraction range MIN,MAX (default 0.35,1)"),
    "--rrc-ratio": ("rrc_ratio", _floats, "resized_crop: aspect ratio (w/h) range MIN,MAX (default 0.75,1.3333)"),
    "--test-split": ("test_split", str, "name of the test split (default: test; Imagenette's is val)"),
    "--eval-every": ("eval_every", int, "validate every N epochs (always after the last)"),
    "--robustness-images": ("robustness_images", int, "score the corruptions on the first N test images (0: all)"),
    "--seed": ("seed", int, "seed of the model, shuffling and mixing"),
    "--mean": ("mean", _floats, "per-channel input mean, comma-separated (default: the training split's)"),
    "--std": ("std", _floats, "per-channel input std, comma-separated (default: the training split's)"),
    "--device": ("device", str, "cpu or cuda"),
    "--threads": ("threads", int, "torch CPU threads (0: default)"),
}


def _add_train_flags(parser: argparse.ArgumentParser, skip: tuple = ()) -> None:
    for flag, (_, kind, text) in _TRAIN_FLAGS.items():
        if flag not in skip:
            parser.add_argument(flag, type=kind, default=None, help=text)
    parser.add_argument(
        "--mix-opt",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="operator option, e.g. --mix-opt alpha=1.0 (repeatable)",
    )
    parser.add_argument("--config", default=None, help="YAML (or JSON) file of config keys; flags override it")
    parser.add_argument(
        "--test", action="store_true", default=None, help="evaluate the test split once, after the last epoch"
    )
    parser.add_argument(
        "--robustness",
        action="store_true",
        default=None,
        help="with --test: also score the test split under fixed occlusions and corruptions",
    )
    parser.add_argument(
        "--precision",
        default=None,
        metavar="{" + ",".join(PRECISION_CHOICES) + "}",
        help="the model's forward: auto (default: bf16 where this CPU or GPU computes bfloat16 natively, else fp32; "
        "a resumed run keeps its own), fp32, bf16 (autocast; about 10x slower than fp32 on a CPU without AMX or "
        "AVX512-BF16) or fp16 (CUDA, with loss scaling)",
    )
    parser.add_argument("--amp", action="store_true", default=None, help=argparse.SUPPRESS)  # replaced: an error
    parser.add_argument("--channels-last", action="store_true", default=None, help="channels_last tensors")
    parser.add_argument("--download", action="store_true", default=None, help="download CIFAR if missing")


def _resolve_config(
    args: argparse.Namespace, extra: Optional[dict] = None, shared_mix: Optional[dict] = None
) -> TrainConfig:
    import yaml

    from . import yamlio
    from .config import TrainConfig
    from .errors import UsageError

    values: dict = {}
    if args.config is not None:
        path = Path(args.config)
        if not path.is_file():
            raise UsageError(f"config file {path} does not exist")
        try:
            loaded = yamlio.load(path.read_text()) or {}
        except yaml.YAMLError as exc:
            where = getattr(exc, "problem_mark", None)
            at = f" (line {where.line + 1})" if where is not None else ""
            raise UsageError(
                f"config file {path} is not valid YAML{at}: {getattr(exc, 'problem', None) or str(exc).splitlines()[0]}"
            ) from None
        if not isinstance(loaded, dict):
            raise UsageError(f"config file {path} must hold a mapping of config keys")
        values.update(loaded)
    for flag, (key, _, _) in _TRAIN_FLAGS.items():
        value = getattr(args, flag.lstrip("-").replace("-", "_"), None)
        if value is not None:
            values[key] = value
    if args.amp:
        raise UsageError("--amp was replaced by --precision: fp16 for what --amp did (CUDA), bf16 on a CPU or GPU")
    if args.precision is not None:
        values["precision"] = args.precision
    for key in ("test", "robustness", "channels_last", "download"):
        if getattr(args, key) is not None:
            values[key] = getattr(args, key)
    if args.mix_opt:
        mix = dict(values.get("mix") or {})
        for item in args.mix_opt:
            key, eq, value = item.partition("=")
            if not eq:
                raise UsageError(f"--mix-opt {item!r}: expected KEY=VALUE")
            try:
                mix[key] = yamlio.load(value)
            except yaml.YAMLError:
                raise UsageError(f"--mix-opt {item!r}: the value is not a valid YAML scalar") from None
        values["mix"] = mix
    values.update(extra or {})
    if shared_mix is not None:  # compare: the options go to every mixing method's runs, not the base
        per_run = sorted(k for k in ("method", "seed") if k in values)
        if per_run:
            raise UsageError(f"config keys {per_run} are set per run by compare (use --methods and --seeds/--n-seeds)")
        mix = values.pop("mix", None) or {}
        if not isinstance(mix, dict):
            raise UsageError(f"config key 'mix' must be a mapping, got {mix!r}")
        shared_mix.update(mix)
    return TrainConfig.from_dict(values)


def _cmd_train(args: argparse.Namespace) -> int:
    from .compare import die_with_parent
    from .train import train

    die_with_parent()
    cfg = _resolve_config(args)
    result = train(
        cfg, Path(args.out), resume=args.resume, progress=not args.no_progress, overwrite=args.overwrite,
        extend=args.extend,
    )  # fmt: skip
    if result:
        shown = {
            k: round(v, 3) if isinstance(v, float) else v
            for k, v in result.items()
            if k not in ("versions", "hardware")
        }
        print(json.dumps(shown, sort_keys=True))
    return 0


def _cmd_eval(args: argparse.Namespace) -> int:
    from .evaluate import evaluate_checkpoint

    metrics = evaluate_checkpoint(
        Path(args.checkpoint),
        args.data,
        args.split,
        args.data_root,
        args.device,
        robustness=args.robustness,
        seed=args.seed,
        robustness_images=args.robustness_images,
        precision=args.precision,
    )
    print(json.dumps({k: round(v, 4) for k, v in metrics.items()}, sort_keys=True))
    return 0


def _cmd_compare(args: argparse.Namespace) -> int:
    from .compare import compare, split_methods
    from .errors import UsageError

    shared_mix: dict = {}
    cfg = _resolve_config(args, None, shared_mix)
    if args.seeds is not None:
        try:
            seeds = [int(s) for s in args.seeds.split(",") if s.strip()]
        except ValueError as exc:
            raise UsageError(f"--seeds {args.seeds!r}: expected comma-separated integers") from exc
    else:
        if args.n_seeds < 1:
            raise UsageError(f"--n-seeds must be >= 1, got {args.n_seeds}")
        seeds = list(range(args.n_seeds))
    methods = split_methods(args.methods)
    if args.jobs < 1:
        raise UsageError(f"--jobs must be >= 1, got {args.jobs}")
    summary = compare(cfg, methods, seeds, Path(args.out), jobs=args.jobs, reference=args.reference,
                      shared_mix=shared_mix)  # fmt: skip
    print(summary["table"])
    return 1 if summary["failed"] else 0


def build_parser() -> argparse.ArgumentParser:
    # No abbreviations: compare has --seeds but no --seed, and "--seed 3" must not pass as "--seeds 3".
    parser = argparse.ArgumentParser(prog="rsmix", description="Saliency-guided mix augmentation.", allow_abbrev=False)
    parser.add_argument("--version", action="version", version=f"rsmix {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)
    show = sub.add_parser("show", allow_abbrev=False, help="draw saliency maps and every operator's output")
    show.add_argument(
        "--out", default="gallery.png", help="image to write, PNG or JPEG by its suffix (default: gallery.png)"
    )
    show.add_argument("--images", default=None, help="folder of images (default: scikit-image's sample photographs)")
    show.add_argument(
        "--size",
        type=int,
        default=None,
        help="side of the square images, 8 to 2048 (default: the run's image size, else 128)",
    )
    show.add_argument(
        "--checkpoint",
        default=None,
        help="a run folder (or checkpoint.pt): also show its model's class activation maps and the operators "
        "that read them",
    )
    show.add_argument("--device", default="cpu", help="device of --checkpoint's model (default: cpu)")
    show.add_argument("--limit", type=int, default=4, help="how many images of --images to use (at least 2)")
    show.add_argument("--seed", type=int, default=0, help="seed of the operators' generator")
    show.set_defaults(func=_cmd_show)

    tr = sub.add_parser("train", allow_abbrev=False, help="train one run")
    _add_train_flags(tr)
    tr.add_argument("--out", required=True, help="run folder (config, log.jsonl, checkpoint, metrics)")
    tr.add_argument("--resume", action="store_true", help="continue from the run folder's checkpoint")
    tr.add_argument(
        "--overwrite", action="store_true", help="delete the run already in --out and start again (default: refuse)"
    )
    tr.add_argument(
        "--extend", action="store_true",
        help="with --resume and a larger --epochs: train the run for longer (the schedule is recomputed)",
    )  # fmt: skip
    tr.add_argument("--no-progress", action="store_true", help="no progress bar")
    tr.set_defaults(func=_cmd_train)

    ev = sub.add_parser("eval", allow_abbrev=False, help="evaluate a checkpoint")
    ev.add_argument("--checkpoint", required=True, help="run folder or checkpoint.pt")
    ev.add_argument("--data", required=True, help="dataset source, as for train")
    ev.add_argument("--split", default="test", help="split to evaluate (default: test)")
    ev.add_argument("--data-root", default=None)
    ev.add_argument("--device", default="cpu")
    ev.add_argument(
        "--robustness",
        action="store_true",
        help="also top-1 error and ECE under occlusion (1/4 and 1/2 side), Gaussian noise, "
        "blur, contrast and JPEG (fixed severities, see rsmix.robustness)",
    )
    ev.add_argument(
        "--precision",
        default=None,
        metavar="{" + ",".join(PRECISIONS) + "}",
        help="the model's forward (default: the run's own --precision, so the scores match the run's)",
    )
    ev.add_argument("--seed", type=int, default=0, help="seed of the corruptions' noise and occluder positions")
    ev.add_argument(
        "--robustness-images",
        type=int,
        default=0,
        help="score the corruptions on the first N images of the split (0: all)",
    )
    ev.set_defaults(func=_cmd_eval)

    cm = sub.add_parser("compare", allow_abbrev=False, help="methods x seeds, with tables and plots")
    _add_train_flags(cm, skip=_PER_RUN)
    cm.add_argument(
        "--methods",
        default="none,mixup,cutmix,saliencymix,randsaliencymix",
        help="comma-separated methods; a variant is NAME=METHOD:key=value,key=value "
        "(separate several such specs with ';')",
    )
    cm.add_argument("--seeds", default=None, help="comma-separated seeds (default: 0..n-seeds-1)")
    cm.add_argument("--n-seeds", type=int, default=1)
    cm.add_argument("--jobs", type=int, default=1, help="runs at once")
    cm.add_argument(
        "--reference", default=None, help="method(s) for paired differences, comma-separated (default: the first)"
    )
    cm.add_argument("--out", required=True, help="study folder")
    cm.set_defaults(func=_cmd_compare)
    return parser


# Optional dependencies the commands import, with the extra that installs each: a command that
# meets one missing says which extra to install, in one line (exit 2), instead of a traceback.
_EXTRAS = {
    "yaml": ("PyYAML", "train"),
    "tqdm": ("tqdm", "train"),
    "PIL": ("Pillow", "train"),
    "matplotlib": ("matplotlib", "train"),
    "skimage": ("scikit-image", "viz"),
}


def _missing_extra(exc: ModuleNotFoundError) -> Optional[str]:
    top = (exc.name or "").split(".")[0]
    if top not in _EXTRAS:
        return None
    package, extra = _EXTRAS[top]
    return f"this command needs {package} (module {top!r}), which is in the {extra!r} extra: pip install 'randsaliencymix[{extra}]'"


def main(argv: Optional[List[str]] = None) -> int:
    args = build_parser().parse_args(argv)
    from .errors import UsageError

    try:
        return int(args.func(args))
    except UsageError as exc:  # the user's mistake: one line, exit 2; anything else is a bug
        print(f"rsmix {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except ModuleNotFoundError as exc:  # an optional dependency not installed: name its extra
        reason = _missing_extra(exc)
        if reason is None:
            raise
        print(f"rsmix {args.command}: error: {reason}", file=sys.stderr)
        return 2


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
