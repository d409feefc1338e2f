"""The ``surgenet-train`` command (also ``python -m surgenet.train`` and under ``torchrun``).

Subcommands: ``pretrain`` (DINO, BYOL, SimCLR or MSN), ``finetune`` (task heads), ``extract-frames`` (videos to
JPEG frames at N fps), ``evaluate`` (kNN / linear probe of a backbone), ``export-teacher``
(a checkpoint's teacher to the zoo's format) and ``configs`` (the shipped configs).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

from .._version import __version__
from ..console import CommandParser, run_command
from ..console.checks import existing_path, output_folder, zoo_name
from ..bounds import bounded, check_number
from ..exceptions import InputError
from ..evaluation.probes import EVAL_METHODS

PRETRAIN_EPILOG = """\
examples:
  surgenet-train pretrain --config tiny --data frames/ --out runs/tiny --steps 5
  surgenet-train pretrain --method byol --config byol-resnet50 --data frames.csv --out runs/byol
  surgenet-train pretrain --method msn --config tiny --data frames/ --out runs/msn-tiny --steps 5
  surgenet-train pretrain --config surgenetxl-caformer --data cholec80.csv --data youtube/ --out runs/xl
  torchrun --nproc_per_node=4 -m surgenet.train pretrain --config surgenetxl-caformer --data ... --out runs/xl
  surgenet-train pretrain --out runs/xl --resume            # continue from runs/xl/checkpoint.pth

--data takes a frame folder, a frame list (.csv/.txt, relative paths) or a video (folder); give it
several times for a mixture, optionally as PATH:WEIGHT (e.g. --data cholec/:1 --data youtube/:0.5).
--steps stops early; the schedules still span --epochs, so --resume continues the same run.
"""


def _parse_data(spec: str) -> dict:
    path, sep, weight = spec.rpartition(":")
    if sep and path and not Path(spec).exists():
        try:
            value = float(weight)
        except ValueError:
            pass
        else:
            return {"path": path, "weight": check_number("mixture_weight", value, f"the weight of --data {spec}")}
    return {"path": spec}


def cmd_pretrain(args: argparse.Namespace) -> int:
    from .config import load_config
    from .pretrain import pretrain

    out = Path(args.out)
    overrides = list(args.set or [])
    if args.method is not None:
        overrides.insert(0, f"method={args.method}")
    if args.data:
        overrides.append("data.sources=" + json.dumps([_parse_data(d) for d in args.data]))
    for flag, key in (("epochs", "train.epochs"), ("steps", "train.max_steps"), ("batch_size", "train.batch_size")):
        if getattr(args, flag) is not None:
            overrides.append(f"{key}={getattr(args, flag)}")
    base = args.config
    if args.resume and base is None:
        base = out / "config.yaml"  # the resumed run's own config
        if not base.is_file():
            raise InputError(f"--resume found no run in {out} (no config.yaml); check --out.")
    if base is None:
        raise InputError("pass --config NAME_OR_PATH (surgenet-train configs lists the shipped ones).")
    config = load_config(base, overrides)
    records = pretrain(config, out, resume=args.resume)
    if records and int(os.environ.get("RANK", "0")) == 0:
        last = records[-1]
        extra = "".join(f", {k} {last[k]:.4f}" for k in ("teacher_entropy", "kl", "embedding_std") if k in last)
        print(f"step {last['step']} ({config.method}): loss {last['loss']:.4f}{extra}; "
              f"backbone in {out / 'teacher'} (surgenet.load_backbone({str(out / 'teacher')!r}))")
    return 0


def positive_fps(text: str) -> float:
    """argparse type of ``--fps``: a positive rate (0 would divide by zero, < 0 never stop)."""
    from ..io.sampling import check_fps

    try:
        check_fps(text)
    except InputError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from exc
    return bounded("fps")(text)  # and at most the table's highest rate


positive_fps.bound_name = "fps"  # type: ignore[attr-defined]


def jpeg_quality(text: str) -> int:
    """argparse type of ``--quality``: a whole number; its range (the table's ``jpeg_quality``) is
    checked by the command, before any video is opened."""
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None


jpeg_quality.bound_name = "jpeg_quality"  # type: ignore[attr-defined]


def cmd_extract(args: argparse.Namespace) -> int:
    from tqdm.auto import tqdm

    from .data import list_videos
    from .data.video import UnreadableVideoError
    from .formats.frame_index import expected_samples, extract_indexed_frames
    from ..io.paths import inside, safe_name

    try:
        check_number("jpeg_quality", args.quality, "--quality")
    except InputError:
        raise InputError(f"--quality must be a JPEG quality in 1..100, not {args.quality}.") from None
    videos = list_videos(args.video_dir)
    if not videos:
        raise InputError(f"no videos found in {args.video_dir}.")
    root = Path(args.video_dir) if Path(args.video_dir).is_dir() else Path(args.video_dir).parent
    total, written, unreadable, partial = 0, 0, [], []

    def on_partial(exc: Exception) -> None:  # its frames are written; it is named, and the exit code says so
        partial.append(exc)
        tqdm.write(f"surgenet-train: WARNING: {exc}", file=sys.stderr)

    for number, video in enumerate(videos, 1):
        # the stem of "...mp4" is "..": the folder is named from the sanitised stem, checked to stay in OUT
        target = inside(args.out, Path(args.out) / video.relative_to(root).parent / safe_name(video.stem, "video"))
        with tqdm(total=expected_samples(video, args.fps), desc=f"{video.name} ({number}/{len(videos)})",
                  unit="frame", leave=False) as bar:
            try:
                sampled, new = extract_indexed_frames(video, target, fps=args.fps, quality=args.quality,
                                                      progress=bar, on_partial=on_partial)
                total, written = total + sampled, written + new
            except UnreadableVideoError as exc:  # one broken file does not stop the others
                unreadable.append(video)
                tqdm.write(f"surgenet-train: skipped: {exc}", file=sys.stderr)
    if len(unreadable) == len(videos):
        raise InputError(f"none of the {len(videos)} video(s) in {args.video_dir} could be read (see above); "
                         "check that they are complete videos that ffmpeg can play.")
    note = f", skipped {len(unreadable)} unreadable video(s)" if unreadable else ""
    note += f", {len(partial)} video(s) ended early (see above)" if partial else ""
    kept = f" ({total - written} already there)" if total > written else ""
    print(f"{total} frames from {len(videos) - len(unreadable)} videos at {args.fps} fps in {args.out}{kept}{note}; "
          "named by frame index (OUT/<video>/NNNNNN.jpg)")
    return 1 if partial else 0  # 1: frames are there, but not every frame the videos announce


def cmd_evaluate(args: argparse.Namespace) -> int:
    from ..zoo.factory import load_backbone
    from ..zoo.registry import get_entry
    from ..evaluation.probes import probe_evaluate, read_labelled

    # both label sets are read (and their images found) before the backbone is built
    read_labelled(args.val, classes=read_labelled(args.train).classes)
    weights = args.weights
    bb = load_backbone(args.model, pretrained=weights is None, weights=weights)
    entry = get_entry(args.model)
    # One feature pass serves both probes (--method both).
    results = probe_evaluate(bb, args.train, args.val, args.method, image_size=args.image_size, k=args.k,
                             linear_epochs=args.epochs, mean=entry.mean, std=entry.std)
    print(json.dumps(results, indent=2))
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    from .teacher_export import export_from_checkpoint

    out = export_from_checkpoint(args.checkpoint, args.out)
    print(f"teacher backbone written to {out}")
    return 0


def cmd_configs(args: argparse.Namespace) -> int:
    from .config import CONFIG_DIR, available_configs

    for name in available_configs():
        first = (CONFIG_DIR / f"{name}.yaml").read_text().splitlines()[0].lstrip("# ")
        print(f"{name:28s} {first}")
    return 0


def cmd_formats(args: argparse.Namespace) -> int:
    from .formats import list_formats

    for name, description in list_formats().items():
        print(f"{name:12s} {description}")
    print("\n--train/--val take FORMAT:PATH, or PATH (format detected); PATH#V1,V2 keeps those videos.")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = CommandParser(prog="surgenet-train", description="Pretrain (DINO) and fine-tune SurgeNet models.")
    parser.add_argument("--version", action="version", version=f"surgenet {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="log what happens")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("pretrain", help="self-supervised pretraining (DINO, BYOL, SimCLR, MSN) of a backbone",
                       epilog=PRETRAIN_EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", help="a shipped config name (surgenet-train configs) or a YAML file")
    p.add_argument("--method", help="dino, byol, simclr or msn (default: the config's method, else dino)")
    p.add_argument("--data", action="append", metavar="PATH[:WEIGHT]", help="training frames (repeatable)")
    p.add_argument("--out", required=True, type=output_folder, help="run folder: checkpoints, logs, teacher/")
    p.add_argument("--epochs", type=bounded("epochs"), help="epochs of the schedules (train.epochs)")
    p.add_argument("--steps", type=bounded("steps"), help="stop after this many steps (train.max_steps)")
    p.add_argument("--batch-size", type=bounded("batch_size"), help="global batch over all processes (train.batch_size)")
    p.add_argument("--resume", action="store_true", help="continue from OUT/checkpoint.pth")
    p.add_argument("--set", action="append", metavar="KEY=VALUE", help="override a config key, e.g. optim.lr=1e-3")
    p.set_defaults(func=cmd_pretrain)

    p = sub.add_parser("extract-frames", help="write video frames sampled at N fps as JPEG",
                       description="Frames go to OUT/<video stem>/NNNNNN.jpg, NNNNNN the index of the frame in the "
                       "decoded video (0-based), the number frame-level labels use (Cholec80: 0, 25, 50 ... at 1 "
                       "fps from 25 fps). Frames already there are skipped, so a stopped run resumes.")
    p.add_argument("video_dir", type=existing_path, help="a video file or a folder of videos (searched recursively)")
    p.add_argument("out", type=output_folder, help="output folder: one sub-folder of frames per video")
    p.add_argument("--fps", type=positive_fps, default=1.0, help="frames per second, > 0 (SurgeNetXL: 1)")
    p.add_argument("--quality", type=jpeg_quality, default=95, help="JPEG quality")
    p.set_defaults(func=cmd_extract)

    # "probe", not "evaluate": `surgenet evaluate` scores a fine-tuned task model; this scores a backbone
    # by the classifiers its frozen features support. "evaluate" stays as an alias.
    p = sub.add_parser("probe", aliases=["evaluate"],
                       help="kNN / linear-probe accuracy of a backbone on labelled frames (alias: evaluate)",
                       description="Labelled frames: a folder of class folders, or a CSV with columns image,label.")
    p.add_argument("--model", required=True, type=zoo_name, help="zoo name (fixes the architecture)")
    p.add_argument("--weights", type=existing_path,
                   help="a file or folder (e.g. RUN/teacher); default: the released weights")
    p.add_argument("--train", required=True, type=existing_path, help="labelled frames the classifier learns from")
    p.add_argument("--val", required=True, type=existing_path, help="labelled frames it is scored on")
    p.add_argument("--method", choices=EVAL_METHODS, default="both")
    p.add_argument("--k", type=bounded("neighbours"), default=20)
    p.add_argument("--epochs", type=bounded("epochs"), default=200, help="linear-probe epochs")
    p.add_argument("--image-size", type=bounded("image_side"), default=224)
    p.set_defaults(func=cmd_evaluate)

    p = sub.add_parser("export-teacher", help="export the teacher backbone of a checkpoint")
    p.add_argument("checkpoint", type=existing_path, help="checkpoint.pth or checkpoint_epochNNNN.pth of a run")
    p.add_argument("out", type=output_folder, help="output folder (model.safetensors + config.json)")
    p.set_defaults(func=cmd_export)

    p = sub.add_parser("configs", help="list the shipped configs")
    p.set_defaults(func=cmd_configs)

    p = sub.add_parser("formats", help="list the labelled dataset formats that finetune reads (FORMAT:PATH)")
    p.set_defaults(func=cmd_formats)

    from .finetune_command import register as register_finetune

    register_finetune(sub)
    from .distill_command import register as register_distill

    register_distill(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    return run_command(build_parser(), argv)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
