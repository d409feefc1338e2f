"""Fine-tune and evaluate on real surgical frames, each figure next to its trivial baseline.

From a random backbone (the released weights are not reachable on the machines this runs on;
``--pretrained`` uses them where they are):

* segmentation: Endoscapes2023 train -> val (7 classes), mIoU and per-class IoU; baseline: every
  pixel background;
* cvs: Endoscapes2023 train -> val, criteria ``c >= 0.5``: mAP and mean balanced accuracy;
  baseline: the training prevalence of each criterion as a constant score (label prior);
* phase: CholecT50 VID68 + VID70 -> VID73 (7 phases): accuracy and macro F1; baseline: the
  training set's most frequent phase for every frame;
* tools: CholecT50 VID68 + VID70 -> VID73 (6 instruments): mAP; baseline: label prior.

The validation split is also the one reported (as in the data folder's splits; the best epoch is picked
on it, as ``surgenet-train finetune --val`` does). Each task records its wall time and the CPU
time of this process and its data workers, and the CPU model. Writes ``OUT/results.json``,
``OUT/results.md``, each task's run under ``OUT/<task>/`` (the fine-tuned segmentation model at
``OUT/segmentation/best``, loadable with ``surgenet.load_model``; the latency benchmark takes it
with ``--model``) and its evaluation under ``OUT/<task>/eval/`` (a figure per task, see
``surgenet evaluate``; segmentation: also a contact sheet).

    python benchmarks/real_data.py --data data/ --out runs/real --epochs 3

``--data`` is a folder holding ``endoscapes/`` (Endoscapes2023 segmentation subset, ``train``/``val``
with ``images/``, ``masks/``, ``cvs.csv``) and ``cholect50/`` (CholecT50 videos and labels).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import sys
import time
from pathlib import Path
from typing import Any, Callable

import numpy as np

from surgenet.evaluation import metrics
from surgenet.io.atomic import atomic_write_text
from surgenet.train.task_eval import _json_safe
from surgenet.console import CommandParser
from surgenet.console.checks import output_folder
from surgenet.bounds import bounded

TASKS = ("segmentation", "cvs", "phase", "tools")
CHOLECT50_TRAIN, CHOLECT50_VAL = ("VID68", "VID70"), ("VID73",)


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def cpu_seconds() -> float:
    """User + system CPU time of this process and its finished children (data-loader workers)."""
    own, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + kids.ru_utime + kids.ru_stime


def splits(data: Path, task: str) -> tuple[str, str]:
    if task in ("segmentation", "cvs"):
        return f"endoscapes:{data / 'endoscapes' / 'train'}", f"endoscapes:{data / 'endoscapes' / 'val'}"
    root = data / "cholect50"
    return f"cholect50:{root}#{','.join(CHOLECT50_TRAIN)}", f"cholect50:{root}#{','.join(CHOLECT50_VAL)}"


def baseline(task: str, train_spec: str, val_spec: str) -> dict[str, Any]:
    """The trivial predictor's scores on the validation split (see the module docstring)."""
    from surgenet.train.formats import open_dataset

    val = open_dataset(val_spec, task)
    if task == "segmentation":
        pixels = val.class_pixels  # every labelled pixel predicted as class 0 (background)
        cm = np.zeros((len(pixels), len(pixels)), dtype=np.int64)
        cm[:, 0] = pixels
        m = metrics.segmentation_metrics_from_confusion(cm)
        return {"name": "all background", "mean_iou": m["mean_iou"], "iou": [float(x) for x in m["iou"]]}
    train = open_dataset(train_spec, task)
    if task == "phase":
        train_phases = np.concatenate([np.asarray(v.phases) for v in train.videos])
        majority = int(np.bincount(train_phases).argmax())
        accs, f1s = [], []
        for video in val.videos:
            m = metrics.phase_metrics(np.full(len(video.phases), majority), np.asarray(video.phases),
                                      len(train.class_names))
            accs.append(m["accuracy"])
            f1s.append(m["macro_f1"])
        return {"name": f"majority phase ({train.class_names[majority]})", "accuracy": float(np.mean(accs)),
                "macro_f1": float(np.nanmean(f1s))}
    train_targets = np.stack([train.target(i) for i in range(len(train))]) >= 0.5
    val_targets = np.stack([val.target(i) for i in range(len(val))]) >= 0.5
    prior = np.broadcast_to(train_targets.mean(0), val_targets.shape)
    m = metrics.cvs_metrics(prior, val_targets) if task == "cvs" else metrics.multilabel_metrics(prior, val_targets)
    return {"name": "label prior", "mAP": m["mAP"], "mean_balanced_accuracy": m["mean_balanced_accuracy"],
            "ap": [float(x) for x in m["ap"]]}


def run_task(task: str, args: argparse.Namespace, out: Path) -> dict[str, Any]:
    from surgenet.models import load_model
    from surgenet.train.finetune import FinetuneConfig, finetune
    from surgenet.train.task_eval import evaluate_model

    train_spec, val_spec = splits(Path(args.data), task)
    size = args.image_size if task == "segmentation" else args.cls_image_size
    # Phase trains only the temporal model on cached per-frame features: 2 videos = 2 steps per epoch.
    epochs = args.phase_epochs if task == "phase" else args.epochs
    cfg = FinetuneConfig(task=task, model=args.model, pretrained=args.pretrained, train=train_spec, val=val_spec,
                         image_size=size, epochs=epochs, batch_size=args.batch_size,
                         num_workers=args.num_workers, patience=args.patience, seed=args.seed)
    wall, cpu = time.perf_counter(), cpu_seconds()
    best = finetune(cfg, out / task)
    model = load_model(out / task / "best")
    result = evaluate_model(model, val_spec, out / task / "eval", batch_size=args.batch_size)
    return {"task": task, "train": train_spec, "val": val_spec, "image_size": size, "epochs": epochs,
            "best_epoch": best.get("epoch"), "result": result, "baseline": baseline(task, train_spec, val_spec),
            "wall_s": round(time.perf_counter() - wall, 1), "cpu_s": round(cpu_seconds() - cpu, 1)}


HEADLINES: dict[str, list[tuple[str, Callable[[dict], float]]]] = {
    "segmentation": [("mIoU", lambda r: r["mean_iou"])],
    "cvs": [("mAP", lambda r: r["mAP"]), ("balanced accuracy", lambda r: r["mean_balanced_accuracy"])],
    "phase": [("accuracy", lambda r: r["accuracy"]), ("macro F1", lambda r: r["macro_f1"])],
    "tools": [("mAP", lambda r: r["mAP"])],
}


def markdown(record: dict[str, Any]) -> str:
    rows = ["| task (train -> val) | metric | fine-tuned | trivial baseline | wall | CPU |",
            "|---|---|---|---|---|---|"]
    for r in record["tasks"]:
        where = "Endoscapes train -> val" if r["task"] in ("segmentation", "cvs") else "CholecT50 VID68+70 -> VID73"
        for k, (name, get) in enumerate(HEADLINES[r["task"]]):
            base = r["baseline"]
            label = f"{r['task']} ({where}, {r['image_size']} px, {r['epochs']} ep.)"
            rows.append(f"| {label} | {name} | {get(r['result']):.3f} | {get(base):.3f} ({base['name']}) | "
                        f"{r['wall_s'] / 60:.1f} min | {r['cpu_s'] / 60:.1f} min |"
                        if k == 0 else f"| | {name} | {get(r['result']):.3f} | {get(base):.3f} | | |")
        if r["task"] == "segmentation":
            names = r["result"]["class_names"]
            per = ", ".join(f"{n} {v:.2f}" for n, v in zip(names, r["result"]["iou"]))
            rows.append(f"| | per-class IoU | {per} | background {r['baseline']['iou'][0]:.2f}, others 0 | | |")
    head = (f"Real-data benchmark: {record['model']} from a {'pretrained' if record['pretrained'] else 'random'} "
            f"backbone; {record['cpu']} ({record['logical_cpus']} logical CPUs, "
            f"load average at the start {record['load_average_start']}).\n\n")
    return head + "\n".join(rows) + "\n"


def main(argv: list[str] | None = None) -> int:
    p = CommandParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data", required=True, help="the shared data folder (endoscapes/, cholect50/)")
    p.add_argument("--out", required=True, type=output_folder, help="output folder")
    p.add_argument("--tasks", default=",".join(TASKS), help=f"comma-separated subset of {','.join(TASKS)}")
    p.add_argument("--model", default="surgenetxl-caformer", help="zoo name of the backbone")
    p.add_argument("--pretrained", action="store_true", help="start from the released backbone weights")
    p.add_argument("--epochs", type=bounded("epochs"), default=3, help="epochs of segmentation, cvs and tools")
    p.add_argument("--phase-epochs", type=bounded("epochs"), default=60, help="epochs of the temporal model (cached features)")
    p.add_argument("--image-size", type=bounded("image_side"), default=256, help="segmentation input size")
    p.add_argument("--cls-image-size", type=bounded("image_side"), default=224, help="cvs, phase and tools input size")
    p.add_argument("--batch-size", type=bounded("batch_size"), default=8)
    p.add_argument("--num-workers", type=bounded("workers"), default=0)
    p.add_argument("--patience", type=bounded("patience"), default=5)
    p.add_argument("--seed", type=bounded("seed"), default=0)
    args = p.parse_args(argv)
    tasks = [t.strip() for t in args.tasks.split(",") if t.strip()]
    unknown = sorted(set(tasks) - set(TASKS))
    data = Path(args.data)
    if unknown:
        p.error(f"--tasks: unknown {', '.join(unknown)}; choose from {', '.join(TASKS)}.")
    missing = [d for d in ("endoscapes", "cholect50") if not (data / d).is_dir()]
    if missing:
        p.error(f"--data {data} lacks {', '.join(missing)}/ (it needs endoscapes/ and cholect50/ folders).")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    import torch

    record: dict[str, Any] = {
        "command": " ".join([Path(sys.argv[0]).name, *(argv if argv is not None else sys.argv[1:])]),
        "model": args.model, "pretrained": args.pretrained, "epochs": args.epochs, "cpu": cpu_model(),
        "logical_cpus": os.cpu_count(), "torch_threads": torch.get_num_threads(),
        "load_average_start": [round(x, 1) for x in os.getloadavg()], "tasks": []}
    started = time.perf_counter()
    for task in tasks:
        print(f"== {task}", flush=True)
        record["tasks"].append(run_task(task, args, out))
        record["wall_s"] = round(time.perf_counter() - started, 1)
        record["load_average_end"] = [round(x, 1) for x in os.getloadavg()]
        atomic_write_text(out / "results.json", json.dumps(_json_safe(record), indent=2) + "\n")
        atomic_write_text(out / "results.md", markdown(record))
        print(markdown(record), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
