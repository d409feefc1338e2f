"""``surgenet track``: segmentation that follows the scene through a video or an ordered folder.

Two modes:

* semi-supervised (``--mask FIRST_MASK.png``): the mask of the first frame (a PNG of class ids;
  a 0/255 mask is one object) is carried through every frame by ``--method``: ``flow`` (OpenCV
  DIS optical flow, no weights, the default), ``raft`` (torchvision RAFT, weights from the torch
  hub cache) or ``features`` (label propagation with the backbone of ``--model``);
* keyframe (``--model`` without ``--mask``): the model segments keyframes (the first, one every
  ``--keyframe-every`` frames at most, and frames where the propagation's confidence drops or the
  scene cuts), masks are propagated in between and fused with fresh predictions on keyframes.

Writes ``OUT/masks/NAME.png`` (class ids, at the frame's size; NAME is the image's stem or
``frame_NNNNNN`` for videos), ``OUT/overlays/NAME.png`` (classes blended in, and each instrument
track's box, centroid and id in a colour that stays with the id) and ``OUT/tracks.csv`` (one row per
instrument track per frame: id, class, area, box, centroid). Unreadable frames are skipped and
counted.
"""

from __future__ import annotations

import argparse
import itertools
import sys
from pathlib import Path

from ..console.checks import device_name, existing_file, model_reference, output_folder
from ..bounds import bounded
from ..exceptions import InputError
from ..runtime.registry import backend_names
from ..video.methods import METHODS

# The propagators need the PyTorch model itself, so keyframes run on a PyTorch backend.
TORCH_BACKENDS = tuple(backend_names(aliases=True, artefact="model"))
INSTRUMENT_WORDS = ("tool", "instrument", "grasper", "hook", "clipper", "scissors", "irrigator", "forceps",
                    "bipolar", "trocar", "needle")


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "track", help="propagate masks through a video or folder, with keyframes and instrument tracks",
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("input", help="a video file or a folder of frames (natural order: frame_2 before frame_10)")
    p.add_argument("--out", required=True, type=output_folder, help="output folder")
    p.add_argument("--mask", type=existing_file,
                   help="first-frame mask (PNG of class ids; 0/255 = one object): semi-supervised mode")
    p.add_argument("--model", type=model_reference,
                   help="zoo name or saved segmentation model folder: keyframe mode, or the features of "
                        "--method features")
    p.add_argument("--method", choices=METHODS, default="flow", help="how masks move between frames (default flow)")
    p.add_argument("--keyframe-every", type=bounded("keyframe_interval"), metavar="N",
                   help="keyframe mode: run the model at least every N frames (default 10; 1 = every frame)")
    p.add_argument("--min-confidence", type=bounded("fraction"),
                   help="keyframe mode: propagation confidence below which the model runs again "
                        "(default: the method's, 0.7 for flow/raft, 0.5 for features)")
    p.add_argument("--num-classes", type=bounded("num_classes"), help="classes of a zoo model")
    p.add_argument("--weights", type=existing_file, help="fine-tuned weights for a zoo model")
    p.add_argument("--no-pretrained", action="store_true", help="random backbone weights (no download)")
    p.add_argument("--device", type=device_name, help="cpu, cuda, ... (default: CUDA if available)")
    p.add_argument("--backend", choices=TORCH_BACKENDS, metavar="NAME",
                   help="keyframe mode: the PyTorch backend of the registry that segments keyframes ("
                        + ", ".join(TORCH_BACKENDS) + "; default torch-eager-fp32 on --device)")
    p.add_argument("--track-classes", type=bounded("class_id"), nargs="+", metavar="ID",
                   help="class ids that are instruments (default: the mask's objects, or the model's classes "
                        "named tool/instrument/grasper/...)")
    p.add_argument("--raft-variant", choices=("raft_small", "raft_large"), default="raft_small")
    p.add_argument("--alpha", type=bounded("fraction"), default=0.5, help="overlay opacity")
    p.add_argument("--no-overlay", action="store_true", help="write class maps only")
    p.set_defaults(func=run)


def _check(args: argparse.Namespace) -> None:
    """Every argument mistake, before frames are decoded or weights loaded."""
    if args.mask is None and args.model is None:
        raise InputError("give --mask FIRST_MASK.png (carry the first frame's mask) or --model NAME_OR_DIR "
                         "(segment keyframes and propagate between them).")
    if args.method == "features" and args.model is None:
        raise InputError("--method features needs --model, whose backbone gives the features; or use --method flow.")
    if args.keyframe_every is not None and args.mask is not None:
        raise InputError("--keyframe-every is for keyframe mode (--model without --mask); with --mask the first "
                         "frame's mask is carried through every frame.")
    if getattr(args, "backend", None) is not None:
        from ..backends import check_runs_here

        if args.mask is not None:
            raise InputError("--backend picks what segments keyframes (--model without --mask); with --mask the "
                             "first frame's mask is carried and no model segments frames.")
        check_runs_here(args.backend, args.device)
    if args.keyframe_every is None:
        args.keyframe_every = 10


def _instrument_classes(args: argparse.Namespace, class_names: list[str]) -> list[int]:
    if args.track_classes:
        return list(args.track_classes)
    if args.mask is not None:
        return list(range(1, len(class_names)))
    return [i for i, n in enumerate(class_names) if any(w in n.lower() for w in INSTRUMENT_WORDS)]


def _keyframe_predictor(model, args: argparse.Namespace):
    """The Predictor of keyframes: the model on --device, or the registry's runner of it."""
    from ..backends import eager_device, runs_eager
    from ..predict import Predictor
    from ..runtime.registry import REFERENCE, get_backend, open_runner

    backend = get_backend(getattr(args, "backend", None) or REFERENCE)
    if runs_eager(backend.name):
        return Predictor(model, device=eager_device(backend.name, args.device), batch_size=1)
    return Predictor(open_runner(backend, model, device=args.device), batch_size=1)


def run(args: argparse.Namespace) -> int:
    from ..results import SegmentationResult
    from ..video.frame_source import check_source, iter_frames, read_first_mask
    from ..video.methods import create_propagator
    from ..video.track_draw import draw_tracks
    from ..video.tracks import InstrumentTracker, TrackWriter
    from tqdm import tqdm

    from ..io.paths import inside
    from ..visualize import save_png
    from .predict import _warn_if_untrained
    from .zoo_flags import check_zoo_flags

    _check(args)
    if args.model is not None:
        check_zoo_flags(args.model, "segmentation", args.num_classes)
    source, out = Path(args.input), Path(args.out)
    kind = check_source(source)
    skipped: list[str] = []
    bar = None

    def on_skip(name: str, exc: Exception) -> None:
        skipped.append(name)
        tqdm.write(f"surgenet: skipped {name}: {exc}", file=sys.stderr)

    partial: list[Exception] = []

    def on_partial(exc: Exception) -> None:  # the frames read are written; the warning and exit code say so
        partial.append(exc)
        tqdm.write(f"surgenet: WARNING: {exc}", file=sys.stderr)

    frames = iter_frames(source, on_skip, on_partial=on_partial)
    first = next(frames, None)
    if first is None:
        raise InputError(f"no readable frame in {source} ({len(skipped)} unreadable).")
    frames = itertools.chain([first], frames)
    first_mask = read_first_mask(args.mask, first.image.shape[:2]) if args.mask is not None else None

    model = None
    if args.model is not None:
        from ..models import load_model

        model = load_model(args.model, task="segmentation", num_classes=args.num_classes,
                           pretrained=not args.no_pretrained, weights=args.weights)
        args.task = "segmentation"
        _warn_if_untrained(args)
    kwargs = {"variant": args.raft_variant, "device": args.device} if args.method == "raft" else {}
    if args.method == "features" and args.device:
        model = model.to(args.device)
    propagator = create_propagator(args.method, model, **kwargs)

    stats = None
    if first_mask is not None:
        from ..video.semi import propagate_mask

        num_classes = int(first_mask.max()) + 1
        class_names = ["background", *[f"object_{i}" for i in range(1, num_classes)]]
        outputs = propagate_mask(frames, first_mask, propagator, num_classes)
    else:
        from ..video.keyframes import KeyframePolicy, KeyframeSegmenter

        predictor = _keyframe_predictor(model, args)
        class_names = list(predictor.class_names)
        if len(class_names) == 1:
            class_names = ["background", *class_names]
        runner = KeyframeSegmenter(predictor.probabilities, propagator,
                                   KeyframePolicy(every=args.keyframe_every, min_confidence=args.min_confidence))
        stats = runner.stats
        outputs = runner.run(frames)

    classes = _instrument_classes(args, class_names)
    tracker = InstrumentTracker(classes) if classes else None
    writer = TrackWriter(out / "tracks.csv") if tracker else None
    total = None
    if kind == "folder":
        from ..io import list_images
        total = len(list_images(source))
    else:
        from ..io import frame_count
        total = frame_count(source)
    bar = tqdm(total=total, unit="frame", desc=f"track ({args.method})")
    count, ok = 0, False
    try:
        for tf in outputs:
            inside(out, out / "masks" / f"{tf.name}.png")  # a name from the input folder never leaves OUT
            save_png(tf.class_map, out / "masks" / f"{tf.name}.png", optimize=False)
            rows = tracker.update(tf.class_map, tf.warp_labels, tf.index, tf.name) if tracker is not None else []
            if not args.no_overlay:
                result = SegmentationResult(index=tf.index, source=tf.source, class_names=class_names,
                                            class_map=tf.class_map, image=tf.image)
                picture = result.overlay(alpha=args.alpha)
                save_png(draw_tracks(picture, rows) if rows else picture, out / "overlays" / f"{tf.name}.png",
                         optimize=False)
            if writer is not None:
                writer.write(rows)
            count += 1
            bar.update(1)
        ok = True
    finally:
        bar.close()
        if writer is not None:
            writer.close(ok and count > 0)
    written = f"{out / 'masks'}" + ("" if args.no_overlay else f", {out / 'overlays'}")
    if writer is not None:
        written += f", {writer.target} ({writer.rows} track rows, {tracker.track_count} tracks)"
    else:
        written += " (no instrument classes: no tracks; name them with --track-classes)"
    note = f", skipped {len(skipped)} unreadable frame(s)" if skipped else ""
    print(f"{count} frame(s) -> {written}{note}")
    if stats is not None:
        print(f"keyframe mode: {stats.summary()}")
    return 0 if count and not partial else 1  # 1: nothing, or not every frame the video announces
