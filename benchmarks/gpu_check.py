"""Every CUDA path of the package, run once on a GPU machine: one JSON and one log in OUT.

    python benchmarks/gpu_check.py OUT [--budget-s 330] [--clip CLIP.mp4]

(``benchmarks/gpu_check.sh OUT`` installs the package first, then runs this.) The parts, in order:
the machine (GPU, driver, versions); the tests marked ``cuda``; the latency benchmark of every CUDA
backend of the registry at 256 and 512 px, batch 1 and 8, for CAFormer and ConvNeXtV2 segmentation
and a CAFormer phase model (each checked against ``torch-cuda-fp32``: agreement, max error);
``surgenet predict --device cuda`` on a clip (a folder of frames when PyAV is missing) with the
eager and the CUDA-graphs backend; a few fine-tuning steps and a few DINO pretraining steps on the
GPU. Random weights and generated data throughout: nothing is downloaded.

Without CUDA every part says in one line that it skips and why. With CUDA each part runs in its own
process with a time limit taken from ``--budget-s`` (the whole stays under it, about 6 minutes with
the set-up); a part that would start with too little time left is skipped and says so.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable
from surgenet.console import CommandParser
from surgenet.console.checks import output_folder
from surgenet.bounds import bounded

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_CLIP = ROOT.parent / "shared" / "data" / "clips" / "clip_a.mp4"
LATENCY_MODELS = (  # (label, zoo name, task, classes)
    ("caformer-segmentation", "surgenetxl-caformer", "segmentation", 7),
    ("convnextv2-segmentation", "surgenet-convnextv2", "segmentation", 7),
    ("caformer-phase", "surgenetxl-caformer", "phase", 7),
)
MIN_PART_S = 20  # a part is not started with less time than this left


@dataclass
class Part:
    """One check: a command run in its own process (``make`` builds it in the scratch folder)."""

    name: str
    make: Callable[[Path], list[list[str]]]
    timeout_s: int
    results: Callable[[Path], Any] | None = None  # what goes into the JSON besides the status


def cuda_state() -> tuple[bool, str]:
    """Whether CUDA runs here, and the one-line reason when it does not."""
    try:
        import torch
    except ImportError:
        return False, "PyTorch is not installed"
    if not torch.cuda.is_available():
        return False, f"no CUDA (torch {torch.__version__}: torch.cuda.is_available() is False)"
    return True, ""


def environment() -> dict[str, Any]:
    """GPU, driver, CUDA and package versions (the labels of every figure)."""
    import platform

    import torch

    env: dict[str, Any] = {"python": platform.python_version(), "torch": torch.__version__,
                           "cuda": torch.version.cuda, "cpu_count": os.cpu_count(),
                           "load_average": list(os.getloadavg()) if hasattr(os, "getloadavg") else None}
    if torch.cuda.is_available():
        env["gpu"] = torch.cuda.get_device_name(0)
        env["capability"] = list(torch.cuda.get_device_capability(0))
        env["gpu_memory_gib"] = round(torch.cuda.get_device_properties(0).total_memory / 2**30, 1)
        try:
            env["driver"] = subprocess.run(["nvidia-smi", "--query-gpu=driver_version", "--format=csv,noheader"],
                                           capture_output=True, text=True, timeout=20).stdout.strip()
        except (OSError, subprocess.TimeoutExpired) as exc:
            env["driver"] = f"unknown ({exc})"
    for name in ("timm", "onnxruntime", "triton", "av", "cv2"):
        try:
            env[name] = __import__(name).__version__
        except ImportError:
            env[name] = None
    return env


def _frames(folder: Path, n: int, size: tuple[int, int] = (96, 128), masks: bool = False) -> Path:
    """``n`` generated frames (a moving gradient) in ``folder/images`` (+ two-class masks)."""
    import numpy as np
    from PIL import Image

    (folder / "images").mkdir(parents=True, exist_ok=True)
    if masks:
        (folder / "masks").mkdir(exist_ok=True)
    yy, xx = np.mgrid[0:size[0], 0:size[1]]
    for i in range(n):
        image = np.stack([(xx * 2 + i * 9) % 256, (yy * 2 + i * 5) % 256, (xx + yy + i * 3) % 256], -1)
        Image.fromarray(image.astype(np.uint8)).save(folder / "images" / f"f{i:03d}.jpg", quality=95)
        if masks:
            Image.fromarray(((xx + i * 4) % size[1] > size[1] // 2).astype(np.uint8)).save(
                folder / "masks" / f"f{i:03d}.png")
    return folder


def _cuda_backends() -> list[str]:
    from surgenet.runtime.registry import BACKENDS

    return [name for name, b in BACKENDS.items() if b.device == "cuda"]


def _latency(model: str, task: str, classes: int, label: str) -> Callable[[Path], list[list[str]]]:
    """Two runs: the eager backends first (seconds), then the compiled CUDA-graphs ones (a compilation
    per shape), so a compilation past the time limit still leaves the eager rows."""
    def make(scratch: Path) -> list[list[str]]:
        graphs = [n for n in _cuda_backends() if "graphs" in n]
        groups = {"eager": [n for n in _cuda_backends() if n not in graphs], "graphs": ["torch-cuda-fp32", *graphs]}
        return [[sys.executable, str(ROOT / "benchmarks" / "latency.py"), "--model", model, "--task", task,
                 "--num-classes", str(classes), "--no-pretrained", "--imgsz", "256", "512", "--batch", "1", "8",
                 "--backends", *names, "--reference", "torch-cuda-fp32", "--warmup", "3",
                 "--iters", "20", "--no-roofline", "--json", str(scratch / f"{label}-{group}.json"),
                 "--plot", str(scratch / f"{label}-{group}.png")] for group, names in groups.items()]
    return make


def _latency_results(label: str) -> Callable[[Path], Any]:
    def read(scratch: Path) -> Any:
        keep = ("backend", "batch", "imgsz", "median_ms", "p90_ms", "fps", "speedup", "first_call_ms",
                "argmax_agreement", "max_abs_err")
        merged: dict[str, Any] = {"rows": [], "unavailable": [], "summary": {}}
        for group in ("eager", "graphs"):
            path = scratch / f"{label}-{group}.json"
            if not path.is_file():
                continue  # that run did not finish: the part's status says why
            report = json.loads(path.read_text())
            rows = [{k: r.get(k) for k in keep} for r in report["results"]]
            if merged["rows"]:  # the reference rows come once
                rows = [r for r in rows if r["backend"] != report["settings"]["reference"]]
            merged["rows"] += rows
            merged["unavailable"] += report["unavailable"]
            merged["summary"][group] = report["summary"]
            merged["gflops_per_frame"] = report["model"]["gflops_per_frame"]
        return merged if merged["rows"] else None
    return read


def _predict(clip: Path | None) -> Callable[[Path], list[list[str]]]:
    def make(scratch: Path) -> list[list[str]]:
        source = clip if clip is not None else _frames(scratch / "predict-frames", 16) / "images"
        base = [sys.executable, "-m", "surgenet", "predict", str(source), "--model", "surgenetxl-caformer", "--task",
                "segmentation", "--num-classes", "7", "--no-pretrained", "--device", "cuda", "--no-overlay",
                "--batch-size", "8"] + (["--stride", "5"] if clip is not None else [])
        return [base + ["--out", str(scratch / "predict-eager")],
                base + ["--backend", "torch-cuda-graphs-fp16", "--out", str(scratch / "predict-graphs")]]
    return make


def _finetune(scratch: Path) -> list[list[str]]:
    data = _frames(scratch / "seg-data", 8, size=(64, 64), masks=True)
    return [[sys.executable, "-m", "surgenet.train", "finetune", "--task", "segmentation", "--model",
             "surgenet-caformer", "--no-pretrained", "--train", str(data), "--val", str(data), "--num-classes", "2",
             "--out", str(scratch / "finetune"), "--epochs", "2", "--batch-size", "4", "--image-size", "64",
             "--device", "cuda", "--num-workers", "0"]]


def _pretrain(scratch: Path) -> list[list[str]]:
    data = _frames(scratch / "ssl-frames", 16, size=(96, 96)) / "images"
    return [[sys.executable, "-m", "surgenet.train", "pretrain", "--config", "tiny", "--method", "dino", "--data",
             str(data), "--out", str(scratch / "pretrain"), "--steps", "5", "--set", "train.device=cuda"]]


def _pretrain_results(scratch: Path) -> Any:
    log = scratch / "pretrain" / "log.jsonl"
    return [json.loads(line) for line in log.read_text().splitlines()][-2:] if log.is_file() else None


def build_parts(clip: Path | None) -> list[Part]:
    """The short parts first (they cover the most paths), then the latency runs in the time left."""
    parts = [Part("cuda-tests", lambda s: [[sys.executable, "-m", "pytest", "-q", "-m", "cuda", "-p",
                                            "no:cacheprovider", str(ROOT / "tests")]], 60),
             Part("predict-cuda", _predict(clip), 70),
             Part("finetune-cuda", _finetune, 40),
             Part("pretrain-dino-cuda", _pretrain, 40, results=_pretrain_results)]
    for label, model, task, classes in LATENCY_MODELS:
        parts.append(Part(f"latency-{label}", _latency(model, task, classes, label), 100,
                          results=_latency_results(label)))
    return parts


def run_part(part: Part, scratch: Path, timeout_s: float, log: Callable[[str], None]) -> dict[str, Any]:
    """The part's commands in turn, each output appended to the log; its status and times."""
    start = time.perf_counter()
    commands = part.make(scratch)
    record: dict[str, Any] = {"status": "ok", "commands": [" ".join(c) for c in commands]}
    for command in commands:
        left = timeout_s - (time.perf_counter() - start)
        log(f"$ {' '.join(command)}")
        try:
            proc = subprocess.run(command, capture_output=True, text=True, timeout=max(left, 1), cwd=ROOT,
                                  env={**os.environ, "PYTHONUNBUFFERED": "1",
                                       "TORCHINDUCTOR_COMPILE_THREADS": str(os.cpu_count() or 1)})
        except subprocess.TimeoutExpired as exc:
            out = exc.stdout.decode(errors="replace") if isinstance(exc.stdout, bytes) else exc.stdout or ""
            log(out[-6000:])
            record.update(status="timed out", reason=f"past its {timeout_s:.0f} s")
            break
        log((proc.stdout + proc.stderr)[-12000:])
        if proc.returncode != 0:
            last = (proc.stderr.strip() or proc.stdout.strip() or "no output").splitlines()[-1]
            record.update(status="failed", returncode=proc.returncode, reason=last[:300])
            break
    record["seconds"] = round(time.perf_counter() - start, 1)
    if part.results is not None:  # also after a failure or a time-out: what the finished commands wrote
        try:
            record["results"] = part.results(scratch)
        except (OSError, ValueError, KeyError) as exc:
            if record["status"] == "ok":
                record.update(status="failed", reason=f"its output could not be read: {exc}")
    return record


def main(argv: list[str] | None = None) -> int:
    p = CommandParser(prog="gpu_check.py", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("out", type=output_folder, help="folder for gpu_check.json and gpu_check.log")
    p.add_argument("--budget-s", type=bounded("seconds"), default=330.0, help="seconds for all parts together")
    p.add_argument("--clip", type=Path, default=DEFAULT_CLIP, help="a video for predict (default: the shared clip)")
    args = p.parse_args(argv)
    if args.out.exists() and not args.out.is_dir():
        p.error(f"{args.out} is a file; pass a folder to write into")
    args.out.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    log_path = args.out / "gpu_check.log"
    handle = open(log_path, "w", encoding="utf-8")

    def log(text: str) -> None:
        handle.write(text.rstrip() + "\n")
        handle.flush()

    def say(line: str) -> None:
        print(line, flush=True)
        log(line)

    cuda, why = cuda_state()
    report: dict[str, Any] = {"environment": environment(), "cuda": cuda, "budget_s": args.budget_s, "parts": {}}
    say(f"gpu_check: environment: {json.dumps(report['environment'])}")
    has_av = report["environment"].get("av") is not None
    clip = args.clip if args.clip.is_file() and has_av else None
    for part in build_parts(clip):
        left = args.budget_s - (time.perf_counter() - started)
        if not cuda:
            record = {"status": "skipped", "reason": why}
        elif left < MIN_PART_S:
            record = {"status": "skipped", "reason": f"out of time: {left:.0f} s of the {args.budget_s:.0f} s budget left"}
        else:
            with tempfile.TemporaryDirectory(prefix=f"gpu-check-{part.name}-") as scratch:
                record = run_part(part, Path(scratch), min(part.timeout_s, left), log)
        if part.name == "predict-cuda" and clip is None and record["status"] != "skipped":
            record["input"] = ("generated frames: " + ("PyAV is not installed, so no video is read" if not has_av
                                                       else f"no clip at {args.clip}"))
        report["parts"][part.name] = record
        detail = record.get("reason") or f"{record.get('seconds', 0)} s"
        say(f"gpu_check: {part.name}: {record['status']}: {detail}")
    report["seconds"] = round(time.perf_counter() - started, 1)
    from surgenet.io.atomic import atomic_write_text

    atomic_write_text(args.out / "gpu_check.json", json.dumps(report, indent=2) + "\n")
    say(f"gpu_check: wrote {args.out / 'gpu_check.json'} and {log_path} in {report['seconds']} s")
    handle.close()
    failed = [n for n, r in report["parts"].items() if r["status"] in ("failed", "timed out")]
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
