"""``surgenet predict``: a task model on an image, a folder of images or a video.

Segmentation writes a PNG class map per frame at the frame's size (pixel value = class index)
under ``OUT/masks/`` and a colour overlay under ``OUT/overlays/``; phase, CVS and tools write
``OUT/predictions.csv``, one row per frame. Unreadable images are reported and skipped.

A video runs through the real-time pipeline (surgenet.realtime: decoding, preprocessing,
inference and writing overlapped) and ends with the sustained fps and the time of each stage.
``--realtime`` plays it at its frame rate and gives every frame a mask (segmentation): the model
runs on keyframes and the masks follow the scene in between (surgenet.realtime_keyframes),
the keyframe interval adapted to keep up (at most ``--keyframe-interval-max``) or fixed with
``--keyframe-interval``; the report counts keyframes and propagated frames, the sustained fps
against the clip's, the p99 latency and the thread that holds the pipeline back.
``--realtime --drop-stale`` runs the model on every frame it can and drops stale frames instead.
``--backend`` takes any name of the backend registry, the names the latency benchmark prints:
PyTorch ones (``torch-eager-fp32``, the default, on ``--device``; ``torch-cuda-graphs-fp16`` ...)
run a PyTorch model, the others a surgenet-export folder given as ``--model`` (``onnxruntime-cpu``,
``openvino-bf16``, ``openvino-int8``, ``tensorrt``).
"""

from __future__ import annotations

import argparse
import csv
import sys
from pathlib import Path
from typing import Any

from ..backends import AUTO, BACKENDS
from ..runtime.registry import BACKENDS as BACKEND_NAMES
from ..io.atomic import atomic_target
from ..tasks import TASKS
from ..console.checks import add_backend_auto_options, device_name, existing_path, model_reference, output_folder
from ..bounds import bounded
from ..video.keyframe_interval import DEFAULT_MAX_INTERVAL
from ..video.methods import METHODS, check_lookahead


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "predict", help="run a task model on an image, a folder or a video",
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("input", type=existing_path, help="an image file, a folder of images or a video file")
    p.add_argument("--model", required=True, type=model_reference,
                   help="zoo name (surgenet list), a folder written by save_pretrained, a Hub repo id, or a "
                        "surgenet-export output folder")
    p.add_argument("--backend", choices=(AUTO, *BACKENDS), metavar="NAME",
                   help="a backend of the registry: " + ", ".join(BACKENDS[:len(BACKEND_NAMES)]) + " (older names "
                        + ", ".join(BACKENDS[len(BACKEND_NAMES):]) + " too); PyTorch ones run a PyTorch model, the "
                        "others a surgenet-export folder. Default: torch-eager-fp32 for a PyTorch model; auto for "
                        "an export folder: the fastest backend here whose argmax decisions agree with FP32 on "
                        ">= 99.5 %% of pixels (and lose <= 1 mIoU point with --auto-frames masks), measured once "
                        "per CPU, model file, input size and thread count and cached")
    add_backend_auto_options(p)
    p.add_argument("--task", choices=TASKS, help="required with a zoo name")
    p.add_argument("--num-classes", type=bounded("num_classes"), help="classes (segmentation), phases (phase) or tools (tools)")
    p.add_argument("--weights", type=existing_path,
                   help="fine-tuned weights: the authors' FPN checkpoint, or a surgenet task model")
    p.add_argument("--no-pretrained", action="store_true", help="random backbone weights (no download)")
    p.add_argument("--out", required=True, type=output_folder, help="output folder")
    p.add_argument("--device", type=device_name, help="cpu, cuda, cuda:1 ... (default: CUDA if available)")
    p.add_argument("--batch-size", type=bounded("batch_size"), default=8)
    p.add_argument("--stride", type=bounded("stride"), default=1, help="video: predict every N-th frame")
    p.add_argument("--recursive", action="store_true", help="folder: include sub-folders")
    p.add_argument("--normalization", choices=("default", "surgical"), help="override the model's normalisation")
    p.add_argument("--threshold", type=bounded("fraction"), default=0.5,
                   help="CVS / tools: probability at which a criterion is met or a tool present")
    p.add_argument("--alpha", type=bounded("fraction"), default=0.5, help="segmentation overlay opacity")
    p.add_argument("--no-overlay", action="store_true", help="segmentation: write class maps only")
    p.add_argument("--keyframe-every", type=bounded("keyframe_interval"), metavar="N",
                   help="segmentation of a video or folder: run the model on keyframes only (at least every N "
                        "frames, more where the propagation's confidence drops or the scene cuts) and propagate "
                        "the masks in between (extra video)")
    p.add_argument("--propagation", choices=METHODS, default="flow",
                   help="with --keyframe-every or --realtime: how masks move between keyframes (default flow, "
                        "no weights)")
    p.add_argument("--realtime", action="store_true",
                   help="video: play it at its frame rate and give every frame a mask, the model on keyframes and "
                        "the masks propagated (flow) in between, the interval adapted to keep up (segmentation)")
    p.add_argument("--keyframe-interval", type=bounded("keyframe_interval"), metavar="N",
                   help="with --realtime: a keyframe every N frames, fixed (default: adapted to keep up)")
    p.add_argument("--keyframe-interval-max", type=bounded("keyframe_interval"), metavar="M",
                   help=f"with --realtime: the largest interval the adaptation may choose "
                        f"(default {DEFAULT_MAX_INTERVAL})")
    p.add_argument("--lookahead", action="store_true",
                   help="with --realtime: frames between keyframes wait for the next one and take masks blended "
                        "from both (closer to per-frame masks at the same interval; written up to one interval "
                        "plus one model call later); flow or raft propagation")
    p.add_argument("--drop-stale", action="store_true",
                   help="with --realtime: the model on every frame it can take, stale frames dropped (keeping the "
                        "newest) rather than fall behind; reports how many were dropped (any task)")
    p.add_argument("--overlay-video", action="store_true",
                   help="segmentation of a video: write the overlays as OUT/overlay.mp4 (H.264, the clip's rate) "
                        "instead of one PNG per frame; frames dropped by --realtime --drop-stale are not in it")
    p.set_defaults(func=run)


def _total(path: Path, stride: int, recursive: bool) -> int | None:
    from ..io import frame_count, is_video, list_images

    if path.is_dir():
        return len(list_images(path, recursive))
    if is_video(path):
        n = frame_count(path)
        return None if n is None else (n + stride - 1) // stride
    return 1


def _frame_name(result: Any, root: Path, kind: str) -> Path:
    """Output name of a frame: its path relative to the input folder, the image's name, or frame_NNNNNN."""
    if kind == "folder":
        return Path(result.source).relative_to(root).with_suffix("")
    if kind == "video":
        return Path(f"frame_{result.index:06d}")
    return Path(root.stem)


def _warn_if_untrained(args: argparse.Namespace) -> None:
    """A zoo name without --weights has task layers nobody trained: say so where it is seen."""
    from ..models.loading import model_source

    if model_source(args.model) != "zoo" or args.weights is not None:
        return
    what = "the backbone and the task layers are random" if args.no_pretrained else \
        f"its {args.task} layers are untrained (random)"
    print(f"surgenet: WARNING: {args.model} is a zoo backbone and {what}: the predictions are meaningless. "
          "Pass a fine-tuned model folder (surgenet-train finetune) or --weights.", file=sys.stderr)


def run(args: argparse.Namespace) -> int:
    from ..backends import AUTO, eager_device, is_export_folder, runs_eager
    from ..io import is_video
    from ..io.paths import inside
    from ..runtime.registry import open_runner
    from ..models import load_model
    from ..predict import Predictor
    from ..visualize import save_png
    from .zoo_flags import check_zoo_flags

    from tqdm import tqdm  # a core dependency

    source, out = Path(args.input), Path(args.out)
    kind = "folder" if source.is_dir() else "video" if is_video(source) else "image"
    backend = _check_video_options(args, source, kind)
    check_zoo_flags(args.model, args.task, args.num_classes)
    if kind == "image":  # one unreadable image is the user's mistake: say so before any model is built
        from ..io.images import read_image

        read_image(source)
    eager = runs_eager(backend) if backend != AUTO else False
    if is_export_folder(args.model):
        model = _exported_model(args, backend)
    else:
        model = load_model(args.model, task=args.task, num_classes=args.num_classes,
                           pretrained=not args.no_pretrained, weights=args.weights)
        _warn_if_untrained(args)
        if not eager:  # compiled, FP16, channels_last, CUDA graphs: the registry's runner of the model
            model = open_runner(backend, model, device=args.device)
    device = eager_device(backend, args.device) if eager else None  # a runner holds its own device
    predictor = Predictor(model, device=device, batch_size=args.batch_size,
                          normalization=args.normalization, threshold=args.threshold,
                          keep_images=not args.no_overlay)
    if kind == "video" and args.keyframe_every is None:
        return _run_video(predictor, source, out, args, tqdm)
    out.mkdir(parents=True, exist_ok=True)
    skipped: list[str] = []
    bar = tqdm(total=_total(source, args.stride, args.recursive), unit="frame", desc=predictor.task,
               disable=kind == "image")

    def on_error(path: str, exc: Exception) -> None:
        skipped.append(path)
        bar.update(1)
        tqdm.write(f"surgenet: skipped {path}: {exc}", file=sys.stderr)

    partial: list[Exception] = []

    def on_partial(exc: Exception) -> None:  # the frames read are written; the warning and exit code say so
        partial.append(exc)
        tqdm.write(f"surgenet: WARNING: {exc}", file=sys.stderr)

    if args.keyframe_every is not None:
        results = _keyframe_results(predictor, source, kind, args, on_error, on_partial)
    else:
        results = predictor.predict_path(source, stride=args.stride, recursive=args.recursive, on_error=on_error,
                                         on_partial=on_partial)
    count = 0
    if predictor.task == "segmentation":
        names: set[Path] = set()
        for result in results:
            name = _frame_name(result, source, kind)
            if name in names:  # a.jpg beside a.png: keep the extension so neither mask is lost
                name = Path(result.source).relative_to(source)
            names.add(name)
            inside(out, out / "masks" / f"{name}.png")  # a name from the input tree never leaves OUT
            save_png(result.class_map, out / "masks" / f"{name}.png", optimize=False)
            if not args.no_overlay:
                save_png(result.overlay(alpha=args.alpha), out / "overlays" / f"{name}.png", optimize=False)
            count += 1
            bar.update(1)
        written = f"{out / 'masks'}" + ("" if args.no_overlay else f" and {out / 'overlays'}")
    else:
        target = out / "predictions.csv"
        rows = []
        for result in results:
            rows.append(result.row())
            count += 1
            bar.update(1)
        if rows:  # nothing readable: no CSV at all rather than an empty one
            with atomic_target(target) as tmp, open(tmp, "w", newline="") as handle:
                writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
                writer.writeheader()
                writer.writerows(rows)
        written = str(target) if rows else "nothing written"
    bar.close()
    note = f", skipped {len(skipped)} unreadable file(s)" if skipped else ""
    print(f"{count} frame(s) -> {written}{note}")
    if args.keyframe_every is not None:
        print(f"keyframe mode: {predictor.keyframe_stats.summary()}")
    return 0 if count and not partial else 1  # 1: nothing, or not every frame the video announces


def _print_choice(choice: Any) -> None:
    """``--backend auto``'s line; when it was just measured, every candidate's figures as a table."""
    print(choice.summary())
    if not choice.cached:
        print(choice.table())


def _check_video_options(args: argparse.Namespace, source: Path, kind: str) -> str:
    """The backend, and the video options checked (the clip opened) before any model is built."""
    from ..backends import AUTO, check_backend, check_runs_here
    from ..exceptions import InputError
    from ..io.video import video_info

    if (args.realtime or args.overlay_video) and kind != "video":
        what = "a folder" if kind == "folder" else "an image"
        raise InputError(f"--realtime and --overlay-video are for videos; {source} is {what}.")
    if (args.realtime or args.overlay_video) and args.keyframe_every is not None:
        raise InputError("--keyframe-every runs its own loop; use it without --realtime and --overlay-video.")
    _check_keyframe_options(args)
    if args.overlay_video and args.no_overlay:
        raise InputError("--overlay-video and --no-overlay contradict each other; pass one of them.")
    if args.keyframe_every is not None and (kind == "image" or args.stride != 1 or args.recursive):
        raise InputError("--keyframe-every needs consecutive frames of a video or a folder (no --stride, no "
                         "--recursive).")
    if kind == "video":
        info = video_info(source)  # missing, undecodable or no video stream: one line now, not after the model loads
        if args.realtime and not info.fps:
            raise InputError(f"{source} does not state its frame rate, which --realtime plays it at; "
                             "run without --realtime.")
    backend = check_backend(args.model, args.backend)
    if backend != AUTO and (args.auto_frames is not None or args.rebenchmark):
        raise InputError("--auto-frames and --rebenchmark go with --backend auto (an export folder without "
                         f"--backend); this run uses {backend}.")
    if backend != AUTO:
        check_runs_here(backend, args.device)
    return backend


def _keyframe_realtime(args: argparse.Namespace) -> bool:
    """``--realtime`` without ``--drop-stale``: every frame masked, the model on keyframes."""
    return bool(args.realtime and not args.drop_stale)


def _check_keyframe_options(args: argparse.Namespace) -> None:
    """The keyframe interval options: only with keyframe real time, and the fixed one within the bound."""
    from ..exceptions import InputError

    given = [flag for flag, value in (("--keyframe-interval", args.keyframe_interval),
                                      ("--keyframe-interval-max", args.keyframe_interval_max),
                                      ("--lookahead", args.lookahead or None)) if value is not None]
    if args.drop_stale and not args.realtime:
        raise InputError("--drop-stale is a way of running --realtime; pass --realtime --drop-stale.")
    if given and not _keyframe_realtime(args):
        they, need, them = ("they", "need", "them") if len(given) > 1 else ("it", "needs", "it")
        why = "--drop-stale runs the model on every frame it can" if args.drop_stale else f"{they} {need} --realtime"
        raise InputError(f"{' and '.join(given)}: {why}; drop {them}.")
    if args.realtime and not args.drop_stale and args.stride != 1:
        raise InputError("--realtime gives every frame a mask; drop --stride (or pass --drop-stale).")
    if args.lookahead:
        check_lookahead(args.propagation)
    bound = args.keyframe_interval_max if args.keyframe_interval_max is not None else DEFAULT_MAX_INTERVAL
    if args.keyframe_interval is not None and args.keyframe_interval > bound:
        raise InputError(f"--keyframe-interval {args.keyframe_interval} is above --keyframe-interval-max {bound}; "
                         "pass a fixed interval <= the largest.")


def _exported_model(args: argparse.Namespace, backend: str) -> Any:
    """The runner of a surgenet-export folder; options that only a PyTorch model takes are refused."""
    from ..backends import load_runner_for
    from ..exceptions import InputError

    given = [flag for flag, value in (("--weights", args.weights), ("--no-pretrained", args.no_pretrained),
                                      ("--num-classes", args.num_classes)) if value]
    if given:
        raise InputError(f"{args.model} is an exported model, which carries its weights and classes; "
                         f"drop {', '.join(given)}.")
    runner = load_runner_for(args.model, backend, device=args.device, auto_frames=args.auto_frames,
                             rebenchmark=args.rebenchmark, on_choice=_print_choice)
    task = runner.config.get("task")
    if args.task is not None and args.task != task:
        raise InputError(f"{args.model} was exported for {task}, not {args.task}; drop --task or pick another model.")
    return runner


def _run_video(predictor: Any, source: Path, out: Path, args: argparse.Namespace, tqdm: Any) -> int:
    """A video through the overlapped pipeline (or, with ``--realtime``, keyframe real time); the fps and
    the stage times at the end."""
    from contextlib import ExitStack

    from ..io.video import VideoWriter, video_info
    from ..exceptions import InputError
    from ..realtime import format_report, run_video
    from ..realtime_keyframes import format_keyframe_report, run_keyframe_video
    from ..visualize import save_png

    keyframes = _keyframe_realtime(args)
    if keyframes and predictor.task != "segmentation":
        raise InputError(f"--realtime gives every frame a mask by propagating masks between keyframes; a "
                         f"{predictor.task} model has none: pass --realtime --drop-stale.")
    out.mkdir(parents=True, exist_ok=True)
    info = video_info(source)
    total = None if info.frames is None else (info.frames + args.stride - 1) // args.stride
    bar = tqdm(total=total, unit="frame", desc=predictor.task)
    rows: list[dict[str, Any]] = []
    with ExitStack() as stack:
        movie = None
        if args.overlay_video and predictor.task == "segmentation":
            movie = stack.enter_context(VideoWriter(out / "overlay.mp4", fps=(info.fps or 25.0) / args.stride))

        def sink(result: Any) -> None:
            if predictor.task != "segmentation":
                rows.append(result.row())
                return
            name = _frame_name(result, source, "video")
            save_png(result.class_map, out / "masks" / f"{name}.png", optimize=False)
            if movie is not None:
                movie.write(result.overlay(alpha=args.alpha))
            elif not args.no_overlay:
                save_png(result.overlay(alpha=args.alpha), out / "overlays" / f"{name}.png", optimize=False)

        try:
            if keyframes:
                report = run_keyframe_video(predictor, source, sink=sink, interval=args.keyframe_interval,
                                            max_interval=args.keyframe_interval_max or DEFAULT_MAX_INTERVAL,
                                            propagation=args.propagation, lookahead=args.lookahead,
                                            progress=bar.update)
            else:
                report = run_video(predictor, source, sink=sink, realtime=args.realtime, stride=args.stride,
                                   progress=bar.update)
        finally:
            bar.close()
    if predictor.task == "segmentation":
        written = f"{out / 'masks'}" + ("" if args.no_overlay else
                                        f" and {out / 'overlay.mp4' if movie is not None else out / 'overlays'}")
    elif rows:
        target = out / "predictions.csv"
        with atomic_target(target) as tmp, open(tmp, "w", newline="") as handle:
            writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
            writer.writeheader()
            writer.writerows(rows)
        written = str(target)
    else:
        written = "nothing written"
    print(f"{report.processed} frame(s) -> {written}")
    print(format_keyframe_report(report) if keyframes else format_report(report))
    partial = getattr(report, "partial", None)
    if partial:
        print(f"surgenet: WARNING: {partial}", file=sys.stderr)
    return 0 if report.processed and not partial else 1  # 1: nothing, or the video ended early


def _keyframe_results(predictor: Any, source: Path, kind: str, args: argparse.Namespace, on_error: Any,
                      on_partial: Any = None):
    """Keyframe mode (surgenet.video): checked before any frame is decoded."""
    from ..exceptions import InputError

    if predictor.task != "segmentation":  # N >= 1, the input and its frames are checked before the model
        raise InputError("--keyframe-every is for segmentation of a video or a folder of frames.")
    return predictor.predict_keyframes(source, every=args.keyframe_every, method=args.propagation,
                                       on_error=on_error, on_partial=on_partial)
