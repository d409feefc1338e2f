"""``surgenet evaluate``: score a fine-tuned task model on a labelled dataset.

Writes ``OUT/metrics.json`` and ``OUT/metrics.md`` and prints the table: per-class IoU and Dice
with mIoU (segmentation; plus ``OUT/confusion.png`` and ``OUT/contact_sheet.png``: frame | ground
truth | prediction), per-criterion AP and balanced accuracy with mAP (cvs, labels c >= 0.5), per-tool
AP with mAP (tools; both with ``OUT/pr_curves.png``), per-video accuracy and macro F1 (phase, with
``OUT/phase_timeline.png``). The data is ``FORMAT:PATH`` or a path whose
format is detected (Endoscapes, CholecT50, Cholec80, CholecSeg8k, CSV, surgenet's folders).

example:
  surgenet evaluate --model run/best --data endoscapes:data/endoscapes/val --out eval/
"""

from __future__ import annotations

import argparse
from pathlib import Path

from ..console.checks import device_name, output_folder
from ..bounds import bounded


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "evaluate", help="metrics of a fine-tuned task model on a labelled dataset (JSON, table, contact sheet)",
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", required=True, help="a folder written by save_pretrained (e.g. RUN/best) or its Hub id")
    p.add_argument("--data", required=True, help="labelled dataset: FORMAT:PATH or a path (format detected)")
    p.add_argument("--out", required=True, type=output_folder,
                   help="output folder: metrics.json, metrics.md, contact_sheet.png")
    p.add_argument("--batch-size", type=bounded("batch_size"), default=8)
    p.add_argument("--frames", type=bounded("contact_frames"), default=6,
                   help="segmentation: frames on the contact sheet (0: none)")
    p.add_argument("--device", type=device_name, default="auto", help="auto, cpu or cuda")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ..backends import is_export_folder
    from ..exceptions import InputError, MissingExtraError
    from ..models import load_model

    if args.batch_size < 1:
        raise InputError(f"--batch-size {args.batch_size}: give a positive number of frames per batch.")
    try:
        from ..evaluation.plots import FIGURE_OF_TASK
        from ..train.task_eval import evaluate_model, table_rows
    except ModuleNotFoundError as exc:  # the readers live in the training extra
        raise MissingExtraError(f"surgenet evaluate needs the training extra ({exc.name} is missing): "
                                "pip install 'surgenet[train]'.") from exc
    from ..devices import resolve_device
    from ..io.table import format_table

    if is_export_folder(args.model):
        raise InputError(f"{args.model} is a surgenet-export folder; evaluate scores the PyTorch model it came from "
                         "(its save_pretrained folder, e.g. RUN/best). An export's agreement and mIoU against FP32: "
                         "surgenet predict FRAME --model EXPORT --auto-frames DATASET --rebenchmark --out OUT.")
    model = load_model(args.model)
    model.to(resolve_device(args.device))
    result = evaluate_model(model, args.data, args.out, batch_size=args.batch_size, sheet_frames=args.frames)
    header, rows = table_rows(result)
    print(f"{result['task']} on {args.data}: {result['frames']} frames")
    print(format_table(header, rows))
    out = Path(args.out)
    extra = "".join(f", {name}" for name in (FIGURE_OF_TASK[result["task"]], "contact_sheet.png")
                    if (out / name).is_file())
    print(f"written: {out / 'metrics.json'}, metrics.md{extra}")
    return 0
