"""Every real-time figure of one CPU class in one command: the README's performance table for this machine.

    python benchmarks/cpu_class.py --data DATA --out OUT                 # this CPU as it is
    python benchmarks/cpu_class.py --data DATA --out OUT --cap avx2      # the same CPU capped to AVX2
    python benchmarks/cpu_class.py --data DATA --out OUT --model runs/seg/best --export runs/export256
    python benchmarks/cpu_class.py --data DATA --out OUT --dry-run       # print the commands only

The steps, each one command of the product or a benchmark run in its own process, its output in
``OUT/<step>.txt`` and the time and load average of its start and end in ``OUT/log.txt``:

1. ``model``: without ``--model``, fine-tune the segmentation model the figures use (SurgeNetXL
   CAFormer-S18, random backbone, 7 classes, 256x256, ``--epochs`` epochs on DATA/endoscapes/train).
2. ``export``: without ``--export``, export it at 256x256 with int8 calibrated on the train frames.
3. ``auto``: ``surgenet predict FRAME --backend auto --auto-frames DATA/endoscapes/val``: what
   ``--backend auto`` picks here, judged on held-out frames with masks.
4. ``realtime``, ``realtime-lookahead``, ``realtime-overlays``: ``surgenet predict CLIP --realtime``
   on the 854x480 25 fps clip, without overlays, with ``--lookahead``, and with PNG overlays.
5. ``keyframes``: mask quality per interval (first 100 frames of both clips, both modes) and 3
   real-time runs of 1000 frames per mode; ``keyframes-300``: the quality over 300 frames.
6. ``resolution``: speed and mIoU per input size (192, 224, 256, 256x448) and backend.

``--cap avx2`` runs every step with ``surgenet.runtime.cpu.AVX2_ONLY_ENV`` (oneDNN, MKL and ATen
capped to AVX2): an AVX2 code path on this CPU's cores, not an AVX2 CPU (ONNX Runtime ignores the
cap). The CPU model and flags go to ``OUT/machine.json``. Run it on an idle machine: the figures
are the machine's only when nothing else runs.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from surgenet.bounds import bounded
from surgenet.console import CommandParser
from surgenet.console.checks import existing_path, output_folder
from surgenet.exceptions import InputError

BENCHMARKS = Path(__file__).resolve().parent
CAPS = ("none", "avx2")


@dataclass
class Step:
    """One command of the report: ``argv[0]`` is ``surgenet`` or a script of ``benchmarks/``."""

    name: str
    argv: list[str]
    env: dict[str, str] = field(default_factory=dict)

    def command(self) -> list[str]:
        if self.argv[0] == "surgenet":
            return [sys.executable, "-m", "surgenet", *self.argv[1:]]
        return [sys.executable, str(BENCHMARKS / self.argv[0]), *self.argv[1:]]

    def shell(self) -> str:
        env = " ".join(f"{k}={v}" for k, v in self.env.items())
        return (env + " " if env else "") + " ".join(self.argv)


def first_frame(images: Path) -> Path:
    frames = sorted(p for p in images.iterdir() if p.suffix.lower() in {".jpg", ".jpeg", ".png"})
    if not frames:
        raise InputError(f"{images} holds no frames; --data must be the shared data folder (endoscapes/val/images).")
    return frames[0]


def plan(args: argparse.Namespace) -> list[Step]:
    """The report's commands, in order (checked by the tests against the real parsers)."""
    data, out = args.data, args.out
    for needed in (data / "endoscapes" / "train", data / "endoscapes" / "val", data / "clips" / "clip_a.mp4"):
        if not needed.exists():
            raise InputError(f"{needed} not found; --data must be the shared data folder (endoscapes/, clips/).")
    cache = {"SURGENET_CACHE": str(out / "cache")}  # the auto choice measured here, not one cached elsewhere
    env = dict(cache)  # the measuring steps also get the cap; training and export are the same on any CPU
    if args.cap == "avx2":
        from surgenet.runtime.cpu import AVX2_ONLY_ENV

        env.update(AVX2_ONLY_ENV)
    steps = []
    model = args.model or out / "seg" / "best"
    if args.model is None:
        steps.append(Step("model", ["surgenet", "train", "finetune", "--task", "segmentation", "--model",
                                    "surgenetxl-caformer", "--no-pretrained", "--num-classes", "7", "--train",
                                    str(data / "endoscapes" / "train"), "--val", str(data / "endoscapes" / "val"),
                                    "--out", str(out / "seg"), "--epochs", str(args.epochs), "--batch-size", "8",
                                    "--image-size", "256"], cache))
    export = args.export or out / "export256"
    if args.export is None:
        steps.append(Step("export", ["surgenet", "export", str(model), "--out", str(export), "--imgsz", "256", "256",
                                     "--int8", "--calib", str(data / "endoscapes" / "train")], cache))
    clip = str(data / "clips" / "clip_a.mp4")
    frame = first_frame(data / "endoscapes" / "val" / "images")
    steps += [
        Step("auto", ["surgenet", "predict", str(frame), "--model", str(export), "--backend", "auto",
                      "--auto-frames", str(data / "endoscapes" / "val"), "--out", str(out / "frame")], env),
        Step("realtime", ["surgenet", "predict", clip, "--model", str(export), "--realtime", "--no-overlay",
                          "--out", str(out / "realtime")], env),
        Step("realtime-lookahead", ["surgenet", "predict", clip, "--model", str(export), "--realtime",
                                    "--no-overlay", "--lookahead", "--out", str(out / "realtime-lookahead")], env),
        Step("realtime-overlays", ["surgenet", "predict", clip, "--model", str(export), "--realtime",
                                   "--out", str(out / "realtime-overlays")], env),
        Step("keyframes", ["keyframes.py", str(model), "--export", str(export), "--data", str(data), "--frames", "100",
                           "--runs", "3", "--min-frames", "1000", "--out", str(out / "keyframes")], env),
        Step("keyframes-300", ["keyframes.py", str(model), "--data", str(data), "--frames", "300", "--runs", "1",
                               "--min-frames", "100", "--out", str(out / "keyframes-300")], env),
        Step("resolution", ["resolution.py", "--model", str(model), "--data", str(data / "endoscapes" / "val"),
                            "--sizes", "192", "224", "256", "256x448", "--json", str(out / "resolution.json"),
                            "--out", str(out / "resolution.md"), "--no-progress"], env),
    ]
    return steps


def _log(out: Path, text: str) -> None:
    load = " ".join(f"{v:.2f}" for v in os.getloadavg()) if hasattr(os, "getloadavg") else "?"
    line = f"[{time.strftime('%Y-%m-%d %H:%M:%S')} load {load}] {text}"
    print(line, flush=True)
    with open(out / "log.txt", "a", encoding="utf-8") as handle:
        handle.write(line + "\n")


def run(args: argparse.Namespace) -> int:
    steps = plan(args)
    if args.dry_run:
        for step in steps:
            print(f"# {step.name}\n{step.shell()}")
        return 0
    from surgenet.runtime.measure import machine_info, write_json

    args.out.mkdir(parents=True, exist_ok=True)
    write_json(args.out / "machine.json", {"cap": args.cap, **machine_info()})
    failed = []
    for step in steps:
        _log(args.out, f"{step.name}: {step.shell()}")
        with open(args.out / f"{step.name}.txt", "w", encoding="utf-8") as output:
            code = subprocess.call(step.command(), stdout=output, stderr=subprocess.STDOUT,
                                   env={**os.environ, **step.env})
        _log(args.out, f"{step.name}: exit code {code}")
        if code:
            failed.append(step.name)
            if step.name in ("model", "export"):  # every later step needs them
                break
    summary = {"failed": failed, "steps": [s.name for s in steps]}
    (args.out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n", encoding="utf-8")
    if failed:
        print(f"failed: {', '.join(failed)} (their output: {args.out}/<step>.txt)", file=sys.stderr)
        return 1
    print(f"every step ran; outputs in {args.out}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    p = CommandParser(prog="cpu_class.py", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", type=existing_path, required=True, help="the shared data folder (endoscapes/, clips/)")
    p.add_argument("--out", type=output_folder, required=True, help="every output and the log go here")
    p.add_argument("--model", type=existing_path, help="a fine-tuned segmentation model folder (default: train one)")
    p.add_argument("--export", type=existing_path, help="its surgenet-export folder (default: export it)")
    p.add_argument("--cap", choices=CAPS, default="none", help="run every step capped to this ISA (default none)")
    p.add_argument("--epochs", type=bounded("epochs"), default=4, help="fine-tuning epochs when training (default 4)")
    p.add_argument("--dry-run", action="store_true", help="print the commands, run nothing")
    p.set_defaults(func=run)
    return p


def main(argv: list[str] | None = None) -> int:
    from surgenet.console import run_command

    return run_command(build_parser(), argv)


if __name__ == "__main__":
    sys.exit(main())
