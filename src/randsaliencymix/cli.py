"""``rsmix``: the command-line tool. ``rsmix show`` draws the gallery."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import List, Optional


def _cmd_show(args: argparse.Namespace) -> int:
    from .gallery import draw_gallery, folder_images, sample_images

    if args.images is not None:
        if not Path(args.images).is_dir():
            print(f"rsmix show: error: --images {args.images} is not a directory", file=sys.stderr)
            return 2
        try:
            images = folder_images(Path(args.images), args.size, args.limit)
        except ValueError as exc:
            print(f"rsmix show: error: {exc}", file=sys.stderr)
            return 2
    else:
        images = sample_images(args.size)
    out = draw_gallery(images, Path(args.out), seed=args.seed)
    print(f"wrote {out}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="rsmix", description="Saliency-guided mix augmentation.")
    sub = parser.add_subparsers(dest="command", required=True)
    show = sub.add_parser("show", help="draw saliency maps and every operator's output")
    show.add_argument("--out", default="gallery.png", help="PNG file to write (default: gallery.png)")
    show.add_argument("--images", default=None,
                      help="folder of images (default: scikit-image's sample photographs)")
    show.add_argument("--size", type=int, default=128, help="side of the square images (default: 128)")
    show.add_argument("--limit", type=int, default=4, help="how many images of --images to use")
    show.add_argument("--seed", type=int, default=0, help="seed of the operators' generator")
    show.set_defaults(func=_cmd_show)
    return parser


def main(argv: Optional[List[str]] = None) -> int:
    args = build_parser().parse_args(argv)
    return int(args.func(args))


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
