"""``surgenet features``: what a backbone sees on a frame, as a picture.

The first three principal components of the backbone's patch features become the red, green and
blue of a picture at the frame's size (``--out``): patches the model finds alike get alike
colours. ``--figure`` also writes the frame and the picture side by side. CNNs use one stage
(default 2, stride 16), ViTs one block's patch tokens (default the last).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from ..console.checks import output_file
from ..bounds import bounded


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "features", help="picture of a backbone's patch features on a frame (PCA as RGB)",
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("frame", help="an image file (PNG, JPEG, ...)")
    p.add_argument("--model", required=True,
                   help="zoo name (surgenet list), a folder written by save_pretrained, or a surgenet-train run")
    p.add_argument("--out", required=True, type=output_file, help="PNG to write: the PCA picture at the frame's size")
    p.add_argument("--figure", type=output_file, help="also write frame | PCA side by side to this PNG")
    p.add_argument("--no-pretrained", action="store_true", help="random weights (no download): a meaningless picture")
    p.add_argument("--weights", help="with a zoo name: a local weights file or folder instead of the released file")
    p.add_argument("--layer", type=bounded("layer_index"), help="CNN stage 0..3 (default 2, stride 16); ViT block (default -1, the last)")
    p.add_argument("--size", type=bounded("image_side"), help="input pixels on the frame's short side (default 448)")
    p.add_argument("--foreground", type=bounded("fraction"),
                   help="keep only patches whose scaled first component reaches this value (0..1), as DINOv2")
    p.set_defaults(func=run)


def _png(path: str | Path, flag: str) -> Path:
    from ..exceptions import InputError

    target = Path(path)
    if target.suffix.lower() != ".png":
        raise InputError(f"{flag} {path}: the picture is written as PNG; give a path ending in .png.")
    if target.is_dir():
        raise InputError(f"{flag} {path} is a folder; give a file name ending in .png.")
    return target


def run(args: argparse.Namespace) -> int:
    from ..exceptions import InputError
    from ..patch_features import DEFAULT_SHORT_SIDE, load_feature_extractor
    from ..io import read_image
    from ..visualize import feature_pca, save_png, side_by_side

    out = _png(args.out, "--out")
    figure = _png(args.figure, "--figure") if args.figure else None
    if args.size is not None and args.size < 1:
        raise InputError(f"--size {args.size}: give a positive number of pixels (default {DEFAULT_SHORT_SIDE}).")
    if args.foreground is not None and not 0 < args.foreground < 1:
        raise InputError(f"--foreground {args.foreground}: give a threshold between 0 and 1.")
    frame = read_image(args.frame)  # checked before any model is loaded
    random = args.no_pretrained and args.weights is None and not Path(args.model).expanduser().is_dir()
    extractor = load_feature_extractor(args.model, layer=args.layer, pretrained=not args.no_pretrained,
                                       weights=args.weights)
    picture = feature_pca(extractor, frame, short_side=args.size or DEFAULT_SHORT_SIDE, foreground=args.foreground)
    save_png(picture, out)
    title = f"{extractor.name}, {extractor.layer_description}" + (" (RANDOM weights)" if random else "")
    if figure is not None:
        save_png(side_by_side([(Path(args.frame).name, frame), (title, picture)]), figure)
    if random:
        print("surgenet: WARNING: random weights (--no-pretrained): the picture shows an untrained network "
              "and is meaningless.", file=sys.stderr)
    written = f"{out}" + (f" and {figure}" if figure else "")
    print(f"{title}: {picture.shape[1]}x{picture.shape[0]} PCA picture -> {written}")
    return 0
