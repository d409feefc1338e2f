"""Distillation on real data: a CAFormer teacher, small students, and the same student on labels alone.

    nice -n 10 python benchmarks/distill.py data/ --out runs/distill            # every phase
    python benchmarks/distill.py data/ --out runs/distill --phases fps report   # re-measure speed

DATA is a data folder with ``endoscapes/`` (Endoscapes2023), ``cholect50/`` and ``clips/``. Phases, each kept
in OUT and skipped (or resumed) when it is already there, so training runs once and the speeds
can be measured again on an idle machine:

* ``teacher``: ``surgenet-train finetune`` of ``surgenetxl-caformer`` on Endoscapes ``train``
  (validated on ``val``), from the released weights where they are cached, else (``--no-pretrained``,
  no network here) from a random backbone;
* ``distill``: each ``--students`` architecture distilled on the clips (``--fps``) and the
  CholecT50 frames, unlabelled, plus the Endoscapes train split with its labels;
* ``labels``: the same student architectures trained by ``finetune`` on the labelled split alone,
  for as many optimizer steps as its distillation had (the same compute, fewer distinct frames);
* ``evaluate``: per-class IoU of every model on Endoscapes ``val`` at the training size;
* ``fps``: each model through ``benchmarks/latency.py`` (PyTorch eager, ONNX Runtime, OpenVINO
  f32/bf16), batch 1, the fastest backend whose decisions agree with eager FP32 on 99.5 % of the
  sample frame's pixels; the machine and its load average are recorded;
* ``report``: ``OUT/distill.md`` (the table) and ``OUT/distill.png`` (mIoU against fps).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import sys
import time
from pathlib import Path

import torch

from surgenet.io.atomic import atomic_write_text
from surgenet.console import CommandParser
from surgenet.console.checks import output_folder
from surgenet.bounds import bounded
from surgenet.runtime.measure import machine_info, markdown_table, write_json

PHASES = ("teacher", "distill", "labels", "evaluate", "fps", "report")
FPS_BACKENDS = ("torch-eager-fp32", "onnxruntime-cpu", "openvino-f32", "openvino-bf16")


def _epochs_done(run: Path) -> int:
    log = run / "log.jsonl"
    if not log.is_file():
        return 0
    return max((json.loads(line).get("epoch", 0) for line in log.read_text().splitlines() if line.strip()), default=0)


def _complete(run: Path, epochs: int) -> bool:
    return (run / "best" / "config.json").is_file() and _epochs_done(run) >= epochs


def phase_teacher(args, data: Path) -> None:
    from surgenet.train.finetune import FinetuneConfig, finetune

    run = args.out / "teacher"
    if _complete(run, args.teacher_epochs):
        print(f"teacher: {run / 'best'} is there, kept")
        return
    cfg = FinetuneConfig(task="segmentation", model="surgenetxl-caformer", pretrained=not args.no_pretrained,
                         train=str(data / "endoscapes" / "train"), val=str(data / "endoscapes" / "val"),
                         image_size=args.image_size, epochs=args.teacher_epochs, batch_size=8, patience=0,
                         num_workers=args.workers)
    finetune(cfg, run, resume=(run / "last.pth").is_file())


def phase_distill(args, data: Path) -> None:
    from surgenet.train.distill import DistillConfig, distill

    for student in args.students:
        run = args.out / f"distill-{student}"
        if _complete(run, args.epochs):
            print(f"distill {student}: kept")
            continue
        cfg = DistillConfig(teacher=str(args.out / "teacher" / "best"), student=student,
                            data=[str(data / "clips"), str(_cholect50_frames(args, data))], fps=args.fps,
                            train=str(data / "endoscapes" / "train"), val=str(data / "endoscapes" / "val"),
                            image_size=args.image_size, epochs=args.epochs, batch_size=args.batch_size,
                            num_workers=args.workers)
        distill(cfg, run, resume=(run / "last.pth").is_file())


def _cholect50_frames(args, data: Path) -> Path:
    """Every ``--frame-stride``-th CholecT50 frame, as a frame list (the whole folder with stride 1)."""
    folder = data / "cholect50" / "videos"
    if args.frame_stride == 1:
        return folder
    frames = sorted(p for p in folder.rglob("*.jpg"))[::args.frame_stride]
    target = args.out / f"cholect50_every_{args.frame_stride}.txt"
    atomic_write_text(target, "".join(f"{f}\n" for f in frames))
    return target


def _cached_frames(args, student: str) -> int:
    import numpy as np

    return int(np.load(args.out / f"distill-{student}" / "teacher_cache" / "done.npy", mmap_mode="r").shape[0])


def phase_labels(args, data: Path) -> None:
    from surgenet.train.distill import DEFAULT_STUDENT_HEAD
    from surgenet.train.finetune import FinetuneConfig, finetune
    from surgenet.train.formats import open_dataset

    labelled = len(open_dataset(str(data / "endoscapes" / "train"), "segmentation"))
    for student in args.students:
        # The same optimizer steps as the distilled student: its epochs over all cached frames.
        steps = args.epochs * math.ceil(_cached_frames(args, student) / args.batch_size)
        epochs = max(1, round(steps / math.ceil(labelled / args.batch_size)))
        run = args.out / f"labels-{student}"
        if _complete(run, epochs):
            print(f"labels {student}: kept")
            continue
        cfg = FinetuneConfig(task="segmentation", model=student, pretrained=False,
                             train=str(data / "endoscapes" / "train"), val=str(data / "endoscapes" / "val"),
                             image_size=args.image_size, epochs=epochs, batch_size=args.batch_size, lr=1e-3,
                             backbone_lr=1e-3, patience=0, num_workers=args.workers,
                             model_kwargs=dict(DEFAULT_STUDENT_HEAD))
        finetune(cfg, run, resume=(run / "last.pth").is_file())


def _models(args) -> dict[str, Path]:
    models = {"teacher (surgenetxl-caformer)": args.out / "teacher" / "best"}
    for student in args.students:
        models[f"{student} distilled"] = args.out / f"distill-{student}" / "best"
        models[f"{student} labels only"] = args.out / f"labels-{student}" / "best"
    return models


def phase_evaluate(args, data: Path) -> None:
    import surgenet
    from surgenet.train.data.labelled import SegmentationSamples
    from surgenet.train.finetune_tasks import open_labelled, segmentation_scores

    val = open_labelled(str(data / "endoscapes" / "val"), "segmentation")
    results = {}
    for name, folder in _models(args).items():
        if not (folder / "config.json").is_file():
            print(f"evaluate: {folder} missing, skipped")
            continue
        model = surgenet.load_model(folder)
        scores = segmentation_scores(model, SegmentationSamples(val, surgenet.create_transform(model,
                                     size=args.image_size)), 8, args.workers)
        params = sum(p.numel() for p in model.parameters())
        results[name] = {"folder": str(folder), "backbone": model.config["backbone"], "params": params,
                         "mean_iou": scores["mean_iou"], "iou": scores["iou"], "class_names": model.class_names}
        print(f"{name}: mIoU {scores['mean_iou']:.4f}")
    write_json(args.out / "evaluate.json", {"image_size": args.image_size, "val_frames": len(val), "models": results})


def phase_fps(args, data: Path) -> None:
    results, before = {}, os.getloadavg()
    for name, folder in _models(args).items():
        if not (folder / "config.json").is_file():
            continue
        target = args.out / "fps" / f"{folder.parent.name}.json"
        target.parent.mkdir(parents=True, exist_ok=True)
        cmd = [sys.executable, str(Path(__file__).resolve().parent / "latency.py"), "--model", str(folder),
               "--backends", *FPS_BACKENDS, "--imgsz", str(args.image_size), "--threads", str(args.threads),
               "--iters", str(args.iters), "--no-roofline", "--json", str(target)]
        print("fps:", " ".join(cmd), flush=True)
        subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
        report = json.loads(target.read_text())
        summary = report["summary"][0]
        rows = {r["backend"]: r for r in report["results"]}
        best = summary["fastest_faithful"] or "torch-eager-fp32"
        results[name] = {"backend": best, "fps": rows[best]["fps"], "median_ms": rows[best]["median_ms"],
                         "eager_fps": rows["torch-eager-fp32"]["fps"],
                         "all": {k: round(v["fps"], 2) for k, v in rows.items()}}
        print(f"{name}: {results[name]['fps']:.1f} fps through {best}")
    machine = machine_info()
    write_json(args.out / "fps.json", {"machine": machine, "load_average_before": list(before),
                                       "load_average_after": list(os.getloadavg()), "threads": args.threads,
                                       "image_size": args.image_size, "measured": time.strftime("%Y-%m-%d %H:%M"),
                                       "models": results})


def phase_report(args, data: Path) -> None:
    evaluation = json.loads((args.out / "evaluate.json").read_text())
    speeds = json.loads((args.out / "fps.json").read_text()) if (args.out / "fps.json").is_file() else {"models": {}}
    models = evaluation["models"]
    names = next(iter(models.values()))["class_names"]
    headers = ["model", "params (M)", "mIoU", *names, "fps (backend)"]
    rows, points = [], []
    for name, m in models.items():
        speed = speeds["models"].get(name)
        fps = f"{speed['fps']:.1f} ({speed['backend']})" if speed else "not measured"
        rows.append([name, f"{m['params'] / 1e6:.1f}", f"{100 * m['mean_iou']:.1f}",
                     *[f"{100 * v:.1f}" for v in m["iou"]], fps])
        if speed:
            points.append((name, speed["fps"], 100 * m["mean_iou"]))
    machine = speeds.get("machine", {})
    lines = [f"Endoscapes val ({evaluation['val_frames']} frames), {evaluation['image_size']}x"
             f"{evaluation['image_size']} input, IoU in %.",
             markdown_table(headers, rows), "",
             f"fps: batch 1, {speeds.get('threads')} threads, {machine.get('cpu')} "
             f"({', '.join(machine.get('cpu_flags', []))}), load average {speeds.get('load_average_before')} before, "
             f"{speeds.get('load_average_after')} after; measured {speeds.get('measured')}."]
    atomic_write_text(args.out / "distill.md", "\n".join(lines) + "\n")
    print("\n".join(lines))
    if points:
        from surgenet.figures import pyplot, save_figure

        plt = pyplot()
        fig, ax = plt.subplots(figsize=(6, 4))
        for name, fps, miou in points:
            ax.scatter(fps, miou, s=40)
            ax.annotate(name, (fps, miou), fontsize=7, xytext=(4, 4), textcoords="offset points")
        ax.set_xscale("log")
        ax.set_xlabel(f"fps on {machine.get('cpu', 'CPU')} (fastest backend, batch 1)")
        ax.set_ylabel("mIoU on Endoscapes val (%)")
        ax.set_title("distilled students against the teacher")
        fig.tight_layout()
        save_figure(fig, args.out / "distill.png", dpi=120)


def build_parser() -> argparse.ArgumentParser:
    p = CommandParser(description=__doc__.split("\n\n")[0])
    p.add_argument("data", type=Path, help="the shared data folder (endoscapes/, cholect50/, clips/)")
    p.add_argument("--out", type=output_folder, default="runs/distill")
    p.add_argument("--phases", nargs="+", choices=PHASES, default=list(PHASES))
    p.add_argument("--students", nargs="+", default=["mobilenetv4_conv_small"])
    p.add_argument("--image-size", type=bounded("image_side"), default=224)
    p.add_argument("--teacher-epochs", type=bounded("epochs"), default=3)
    p.add_argument("--epochs", type=bounded("epochs"), default=5, help="distillation epochs")
    p.add_argument("--batch-size", type=bounded("batch_size"), default=16)
    p.add_argument("--fps", type=bounded("fps"), default=2.0, help="sampling rate of the clips")
    p.add_argument("--frame-stride", type=bounded("stride"), default=1, help="every N-th CholecT50 frame (1: all 639)")
    p.add_argument("--no-pretrained", action="store_true", help="teacher from a random backbone")
    p.add_argument("--workers", type=bounded("workers"), default=1)
    p.add_argument("--threads", type=bounded("threads"), default=2, help="CPU threads for the speed measurements")
    p.add_argument("--iters", type=bounded("iterations"), default=30)
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    for sub in ("endoscapes/train", "endoscapes/val", "cholect50/videos", "clips"):
        if not (args.data / sub).is_dir():
            print(f"distill benchmark: {args.data / sub} is missing; pass the shared data folder.", file=sys.stderr)
            return 2
    args.out.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(0)
    for phase in PHASES:
        if phase in args.phases:
            started = time.perf_counter()
            globals()[f"phase_{phase}"](args, args.data)
            print(f"[{phase}: {time.perf_counter() - started:.0f} s]", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
