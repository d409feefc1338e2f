"""DINO pretraining throughput: images per second and peak memory per training step, per architecture.

Runs the real training step of ``surgenet.train`` (student + teacher, multi-crop, DINO loss,
AdamW, EMA) on random crops, so data loading is not measured. On a GPU the peak is
``torch.cuda.max_memory_allocated``; on the CPU it is the growth of the process's peak resident
memory (``ru_maxrss``) over the run, an upper bound of what the steps needed.

    python benchmarks/pretrain_throughput.py --arch surgenetxl-caformer --batch-size 8 \\
        --global-size 128 --local-size 64 --local-crops 4 --steps 3
    python benchmarks/pretrain_throughput.py --json results.json     # every CNN of the zoo
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time

import torch

from surgenet.io.table import format_table
from surgenet.io.atomic import atomic_write_text
from surgenet.zoo.registry import REGISTRY
from surgenet.train.config import load_config
from surgenet.console import CommandParser
from surgenet.console.checks import output_file
from surgenet.bounds import bounded

# One zoo name per architecture (the first of each).
DEFAULT_NAMES = list({e.arch: name for name, e in reversed(list(REGISTRY.items()))}.values())[::-1]


def _maxrss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux reports KiB


def benchmark(name: str, args: argparse.Namespace, device: torch.device) -> dict:
    from surgenet.train.dino import DINOLoss, build_schedules
    from surgenet.train.dino.optim import clip_gradients, ema_update, param_groups, set_hyperparameters
    from surgenet.train.pretrain import build_networks, resolve_precision

    cfg = load_config("tiny", [f"model.name={name}", f"crops.global_size={args.global_size}",
                               f"crops.local_size={args.local_size}", f"crops.local_crops={args.local_crops}",
                               f"head.out_dim={args.out_dim}", "head.hidden_dim=2048", "head.bottleneck_dim=256",
                               f"train.precision={args.precision}"])
    student, teacher = build_networks(cfg)
    student.to(device).train()
    teacher.to(device).eval()
    loss_fn = DINOLoss(cfg.head.out_dim).to(device)
    optimizer = torch.optim.AdamW(param_groups(student))
    dtype = resolve_precision(cfg.train.precision, device)
    scaler = torch.amp.GradScaler(device.type, enabled=dtype == torch.float16)
    sched = build_schedules(cfg.optim, cfg.loss, 1, args.steps + args.warmup, args.batch_size)
    b = args.batch_size
    crops = [torch.randn(b, 3, args.global_size, args.global_size, device=device) for _ in range(2)]
    crops += [torch.randn(b, 3, args.local_size, args.local_size, device=device) for _ in range(args.local_crops)]

    def step(i: int) -> None:
        set_hyperparameters(optimizer, 1e-4, float(sched.weight_decay[i]))
        with torch.autocast(device.type, dtype=dtype, enabled=dtype is not None):
            with torch.no_grad():
                t = teacher(crops[:2])
            s = student(crops)
        loss = loss_fn(s, t, 0.04, len(crops)).loss
        optimizer.zero_grad(set_to_none=True)
        scaler.scale(loss).backward()
        scaler.unscale_(optimizer)
        clip_gradients(student, 3.0)
        scaler.step(optimizer)
        scaler.update()
        ema_update(teacher.parameters(), student.parameters(), 0.996)

    rss0 = _maxrss_mb()
    for i in range(args.warmup):
        step(i)
    if device.type == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    tic = time.perf_counter()
    for i in range(args.steps):
        step(args.warmup + i)
    if device.type == "cuda":
        torch.cuda.synchronize()
    seconds = (time.perf_counter() - tic) / args.steps
    peak = torch.cuda.max_memory_allocated() / 2**20 if device.type == "cuda" else _maxrss_mb() - rss0
    return {"model": name, "arch": REGISTRY[name].arch, "device": str(device), "precision": str(dtype or "fp32"),
            "batch_size": b, "crops": f"2x{args.global_size}+{args.local_crops}x{args.local_size}",
            "s_per_step": round(seconds, 4), "images_per_s": round(b / seconds, 2), "peak_memory_mb": round(peak, 1)}


def _isolated(name: str, args: argparse.Namespace) -> dict:
    """Benchmark ``name`` in a fresh process: the CPU peak (``ru_maxrss``) is a high-water mark of
    the whole process, so a second architecture in the same process would read the first one's."""
    cmd = [sys.executable, __file__, "--arch", name, "--row-json", "--batch-size", str(args.batch_size),
           "--global-size", str(args.global_size), "--local-size", str(args.local_size),
           "--local-crops", str(args.local_crops), "--out-dim", str(args.out_dim), "--precision", args.precision,
           "--steps", str(args.steps), "--warmup", str(args.warmup), "--device", args.device]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        raise SystemExit(f"{name}: benchmark failed:\n{proc.stderr[-2000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> int:
    parser = CommandParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--arch", nargs="+", default=None, help="zoo names (default: one per architecture)")
    parser.add_argument("--batch-size", type=bounded("batch_size"), default=None, help="images per step (default 64 GPU, 4 CPU)")
    parser.add_argument("--global-size", type=bounded("image_side"), default=None, help="default 224 GPU, 96 CPU")
    parser.add_argument("--local-size", type=bounded("image_side"), default=None, help="default 96 GPU, 48 CPU")
    parser.add_argument("--local-crops", type=bounded("crops"), default=8)
    parser.add_argument("--out-dim", type=bounded("channels"), default=65536, help="DINO prototypes")
    parser.add_argument("--precision", default="auto", choices=("auto", "fp32", "bf16", "fp16"))
    parser.add_argument("--steps", type=bounded("iterations"), default=3)
    parser.add_argument("--warmup", type=bounded("warmup_iterations"), default=1)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--json", type=output_file, help="also write the results to this JSON file")
    parser.add_argument("--row-json", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    device = torch.device("cuda" if args.device == "auto" and torch.cuda.is_available() else
                          ("cpu" if args.device == "auto" else args.device))
    gpu = device.type == "cuda"
    args.batch_size = args.batch_size or (64 if gpu else 4)
    args.global_size = args.global_size or (224 if gpu else 96)
    args.local_size = args.local_size or (96 if gpu else 48)
    if args.row_json:  # the child of _isolated: one architecture, one JSON line
        print(json.dumps(benchmark(args.arch[0], args, device)))
        return 0
    rows = [_isolated(name, args) for name in (args.arch or DEFAULT_NAMES)]
    keys = ["model", "device", "precision", "batch_size", "crops", "s_per_step", "images_per_s", "peak_memory_mb"]
    print(format_table(keys, [[r[k] for k in keys] for r in rows]))
    if args.json:
        atomic_write_text(args.json, json.dumps(rows, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
