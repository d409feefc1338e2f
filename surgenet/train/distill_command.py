"""``surgenet-train distill``: its arguments, and what it prints; the distillation itself is
:func:`surgenet.train.distill.distill`."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from ..exceptions import InputError
from . import distill as _library
from .config import flag_overrides, load_config
from .distill import DEFAULT_STUDENT, DistillConfig, check_student, distill

DISTILL_HELP = _library.__doc__.split("\n\n", 1)[1]


def cmd_distill(args: argparse.Namespace) -> int:
    overrides = flag_overrides(args, (
        "teacher", "teacher_weights", "task", "num_classes", "student", "student_weights", "fps", "train",
        "val", "image_size", "cache_reduction", "temperature", "kd_weight", "gt_weight", "epochs",
        "batch_size", "lr", "patience", "device", "num_workers", "class_weighting"))
    if args.data:
        overrides.append("data=" + json.dumps([str(d) for d in args.data]))
    cfg = load_config(args.config, overrides, cls=DistillConfig)
    best = distill(cfg, args.out, resume=args.resume)
    print(json.dumps(best, indent=2, default=float))
    print(f"student: {Path(args.out) / 'best'} (surgenet.load_model(PATH)); curves: {Path(args.out) / 'curves.png'}")
    return 0


def register(sub) -> None:
    from ..console.checks import device_name, existing_file, existing_path, output_folder
    from ..bounds import bounded
    from ..tasks import TASKS
    from .cli import positive_fps
    from .losses import CLASS_WEIGHTINGS

    def student_name(text: str) -> str:
        try:
            return check_student(text)
        except InputError as exc:
            raise argparse.ArgumentTypeError(str(exc)) from None

    p = sub.add_parser("distill", help="distil a task model into a small timm student on unlabelled frames",
                       description=DISTILL_HELP, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--teacher", help="task model folder (finetune's OUT/best), Hub id, or zoo name + --teacher-weights")
    p.add_argument("--teacher-weights", type=existing_path, help="a task checkpoint for a zoo-name teacher")
    p.add_argument("--task", choices=[t for t in TASKS if t != "phase"], help="default: the teacher's")
    p.add_argument("--num-classes", type=bounded("num_classes"), help="classes of a zoo-name teacher")
    p.add_argument("--student", type=student_name, help=f"timm architecture (default {DEFAULT_STUDENT})")
    p.add_argument("--student-weights", type=existing_path, help="backbone weights for the student (default random)")
    p.add_argument("--data", action="append", type=existing_path, metavar="PATH",
                   help="unlabelled frames: a folder, frame list, video or folder of videos (repeatable)")
    p.add_argument("--fps", type=positive_fps, help="sampling rate of videos in --data (default 1)")
    p.add_argument("--train", help="labelled set (FORMAT:PATH or a path) for both loss terms")
    p.add_argument("--val", help="labelled validation set: picks the best epoch, scores teacher and student")
    p.add_argument("--out", required=True, type=output_folder,
                   help="output folder (best/, teacher_cache/, last.pth, log.jsonl, curves.png)")
    p.add_argument("--image-size", type=bounded("image_side"), help="training and cache size (default 256)")
    p.add_argument("--cache-reduction", type=bounded("cache_reduction"), help="segmentation logits cached at 1/N (default 4)")
    p.add_argument("--temperature", type=bounded("temperature"), help="softmax temperature T (default 2)")
    p.add_argument("--kd-weight", type=bounded("loss_weight"), help="weight of T^2 KL (default 1)")
    p.add_argument("--gt-weight", type=bounded("loss_weight"), help="weight of the label loss (default 1; 0: off)")
    p.add_argument("--class-weighting", choices=CLASS_WEIGHTINGS,
                   help="cross-entropy class weights of the label loss (default inverse-sqrt, as finetune)")
    p.add_argument("--epochs", type=bounded("epochs"))
    p.add_argument("--batch-size", type=bounded("batch_size"))
    p.add_argument("--lr", type=bounded("lr"))
    p.add_argument("--patience", type=bounded("patience"), help="stop after N epochs without a better score (0: never)")
    p.add_argument("--device", type=device_name, help="auto, cpu, cuda or cuda:N")
    p.add_argument("--num-workers", type=bounded("workers"))
    p.add_argument("--config", type=existing_file, help="a YAML file of DistillConfig fields")
    p.add_argument("--set", action="append", metavar="KEY=VALUE", help="override a config field")
    p.add_argument("--resume", action="store_true", help="continue from OUT/last.pth (the cache is reused)")
    p.set_defaults(func=cmd_distill)
