"""``surgenet-train finetune``: its arguments, and what it prints; the training itself is
:func:`surgenet.train.finetune.finetune`."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from . import finetune as _library
from .config import flag_overrides, load_config
from .finetune import FinetuneConfig, summary_line, finetune

FINETUNE_HELP = _library.__doc__.split("\n\n", 1)[1]


def cmd_finetune(args: argparse.Namespace) -> int:
    overrides = flag_overrides(args, (
        "task", "model", "weights", "num_classes", "train", "val", "image_size", "epochs", "batch_size", "lr",
        "backbone_lr", "patience", "clip_length", "temporal", "device", "num_workers", "class_weighting",
        "label_weighting"))
    if args.class_names:
        overrides.append("class_names=" + json.dumps(args.class_names.split(",")))
    if args.no_pretrained:
        overrides.append("pretrained=false")
    if args.end_to_end:
        overrides.append("cache_features=false")
    cfg = load_config(args.config, overrides, cls=FinetuneConfig)
    best = finetune(cfg, args.out, resume=args.resume)
    print(json.dumps({k: v for k, v in best.items()}, indent=2, default=float))
    names = best.get("class_names")
    print(f"best epoch {best.get('epoch')}: " + summary_line({"epoch": best.get("epoch"), **best}, names or []))
    print(f"best model: {Path(args.out) / 'best'} (surgenet.load_model(PATH)); curves: {Path(args.out) / 'curves.png'}")
    return 0


def register(sub) -> None:
    from ..console.checks import device_name, existing_file, existing_path, output_folder, zoo_name
    from ..bounds import bounded
    from ..models import TASKS
    from .finetune_tasks import LABEL_WEIGHTINGS
    from .losses import CLASS_WEIGHTINGS

    p = sub.add_parser("finetune", help="train a segmentation, phase, CVS or tool-presence head on labelled data",
                       description=FINETUNE_HELP, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--task", required=True, choices=TASKS)
    p.add_argument("--model", required=True, type=zoo_name, help="zoo name of the backbone (surgenet list)")
    p.add_argument("--train", required=True, help="training set: FORMAT:PATH or a path (format detected)")
    p.add_argument("--val", help="validation set (FORMAT:PATH or a path); picks the best checkpoint")
    p.add_argument("--out", required=True, type=output_folder,
                   help="output folder (best/, last.pth, log.jsonl, curves.png)")
    p.add_argument("--weights", type=existing_path,
                   help="backbone weights instead of the released ones (e.g. RUN/teacher)")
    p.add_argument("--no-pretrained", action="store_true", help="start from a random backbone")
    p.add_argument("--num-classes", type=bounded("num_classes"), help="classes, phases or tools (default: the training set's)")
    p.add_argument("--class-names", help="comma-separated names (phase CSVs may then use names)")
    p.add_argument("--image-size", type=bounded("image_side"), help="training size (default: the model's input size)")
    p.add_argument("--epochs", type=bounded("epochs"))
    p.add_argument("--batch-size", type=bounded("batch_size"))
    p.add_argument("--lr", type=bounded("lr"), help="learning rate of the task layers")
    p.add_argument("--backbone-lr", type=bounded("lr_or_zero"),
                   help="learning rate of the backbone (default: lr/10); 0 freezes it")
    p.add_argument("--class-weighting", choices=CLASS_WEIGHTINGS,
                   help="segmentation: cross-entropy class weights from the training masks' pixel counts "
                        "(default inverse-sqrt: 1/sqrt(share); median-frequency; none)")
    p.add_argument("--label-weighting", choices=LABEL_WEIGHTINGS,
                   help="cvs, tools: 'balanced' weighs each label's positives by (1 - p) / p of the training "
                        "labels (default none)")
    p.add_argument("--patience", type=bounded("patience"),
                   help="stop after N epochs without a better validation score (0: never)")
    p.add_argument("--end-to-end", action="store_true", help="phase: train backbone and temporal model on clips")
    p.add_argument("--clip-length", type=bounded("clip_length"), help="phase end to end: frames per clip")
    p.add_argument("--temporal", choices=("tcn", "lstm"), help="phase: temporal model")
    p.add_argument("--device", type=device_name, help="auto, cpu, cuda or cuda:N")
    p.add_argument("--num-workers", type=bounded("workers"))
    p.add_argument("--config", type=existing_file, help="a YAML file of FinetuneConfig fields")
    p.add_argument("--set", action="append", metavar="KEY=VALUE", help="override a config field")
    p.add_argument("--resume", action="store_true", help="continue from OUT/last.pth")
    p.set_defaults(func=cmd_finetune)
