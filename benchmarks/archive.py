"""Archive throughput: the local engine against Ray Data with 1 and 2 model workers, on real video.

Builds an archive from ``--data`` (the 25 fps clips copied ``--copies`` times each, plus the
CholecT50 frame folders), runs the same ``surgenet batch`` job with each engine into a fresh
folder, and prints frames per second, wall time, peak memory (the whole process tree: driver
and every Ray process) and Ray's overhead over the local engine. From the per-worker figure it
states the simple scaling model a cluster follows (throughput ~ workers x per-worker rate while
decoding keeps up). Figures go to ``OUT/archive.json`` and a markdown table.

    python benchmarks/archive.py --data data/ --out runs/archive
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import threading
import time
from pathlib import Path

from surgenet.batch import BatchJob, ModelSpec, run_job
from surgenet.io.table import format_table
from surgenet.io.atomic import atomic_write_text
from surgenet.tasks import TASKS
from surgenet.console import CommandParser
from surgenet.console.checks import output_folder
from surgenet.bounds import bounded


class PeakMemory:
    """Peak resident memory of this process and all processes Ray started, sampled every 0.2 s."""

    def __init__(self) -> None:
        import psutil

        self.psutil, self.peak, self._stop = psutil, 0, threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _sample(self) -> int:
        total = 0
        me = self.psutil.Process()
        procs = [me, *me.children(recursive=True)]
        for proc in self.psutil.process_iter(["cmdline"]):
            cmd = " ".join(proc.info.get("cmdline") or [])
            if proc.pid != me.pid and ("ray::" in cmd or "/ray/" in cmd) and proc not in procs:
                procs.append(proc)
        for proc in procs:
            try:
                total += proc.memory_info().rss
            except (self.psutil.NoSuchProcess, self.psutil.AccessDenied):
                pass
        return total

    def _run(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, self._sample())
            time.sleep(0.2)

    def __enter__(self) -> "PeakMemory":
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self.thread.join()


def build_archive(data: Path, root: Path, copies: int, frame_folders: int) -> int:
    """``copies`` copies of each clip plus ``frame_folders`` CholecT50 frame folders; returns the input count."""
    shutil.rmtree(root, ignore_errors=True)
    (root / "videos").mkdir(parents=True)
    clips = sorted((data / "clips").glob("*.mp4"))
    for clip in clips:
        for k in range(copies):
            shutil.copy(clip, root / "videos" / f"{clip.stem}_{k}.mp4")
    frames = sorted((data / "cholect50" / "videos").iterdir()) if (data / "cholect50" / "videos").is_dir() else []
    frames = frames[:frame_folders]
    for folder in frames:
        shutil.copytree(folder, root / "frames" / folder.name)
    if not clips:
        raise SystemExit(f"benchmark: no clips under {data / 'clips'}; pass --data a folder with clips/ (videos)")
    return len(clips) * copies + len(frames)


def main(argv: list[str] | None = None) -> None:
    parser = CommandParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, required=True, help="a data folder: clips/ (videos), optionally cholect50/videos/ (frame folders)")
    parser.add_argument("--out", type=output_folder, default="runs/archive")
    parser.add_argument("--model", default="surgenetxl-caformer")
    parser.add_argument("--task", default="phase", choices=TASKS)
    parser.add_argument("--num-classes", type=bounded("num_classes"), default=7)
    parser.add_argument("--fps", type=bounded("fps"), default=1.0, help="frames sampled per second of video")
    parser.add_argument("--copies", type=bounded("copies"), default=4, help="copies of each clip (2 clips -> 8 videos)")
    parser.add_argument("--frame-folders", type=bounded("folders"), default=3, help="CholecT50 frame folders added (0: none)")
    parser.add_argument("--engines", default="local,ray:1,ray:2")
    parser.add_argument("--batch-size", type=bounded("batch_size"), default=8)
    args = parser.parse_args(argv)

    archive = args.out / "archive"
    inputs = build_archive(args.data, archive, args.copies, args.frame_folders)
    spec = ModelSpec(args.model, args.task, num_classes=args.num_classes, pretrained=False)
    results = []
    for engine_spec in args.engines.split(","):
        engine, _, workers = engine_spec.partition(":")
        workers = int(workers or 1)
        out = args.out / f"run_{engine}_{workers}"
        shutil.rmtree(out, ignore_errors=True)
        job = BatchJob(str(archive), spec, str(out), fps=args.fps, batch_size=args.batch_size)
        start_cpu = os.times()
        with PeakMemory() as memory:
            start = time.perf_counter()
            report = run_job(job, engine=engine, workers=workers, progress=False)
            wall = time.perf_counter() - start
        cpu = sum(os.times()[:4]) - sum(start_cpu[:4])
        results.append({"engine": engine, "workers": workers, "inputs": len(report.done), "frames": report.frames,
                        "wall_s": wall, "fps": report.frames / wall, "peak_memory_gb": memory.peak / 1e9,
                        "driver_cpu_s": cpu, "failed": len(report.failed)})
        print(f"{engine_spec}: {report.frames} frames in {wall:.1f} s", flush=True)
    local = next((r for r in results if r["engine"] == "local"), None)
    rows = []
    for r in results:
        overhead = f"{100 * (r['wall_s'] / local['wall_s'] - 1):+.0f} %" if local and r is not local else ""
        rows.append([r["engine"], r["workers"], r["inputs"], r["frames"], f"{r['wall_s']:.1f}", f"{r['fps']:.2f}",
                     f"{r['peak_memory_gb']:.2f}", overhead])
    columns = ["engine", "workers", "inputs", "frames", "wall s", "frames/s", "peak GB", "vs local"]
    table = format_table(columns, rows)
    markdown = "\n".join(["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns),
                          *("| " + " | ".join(map(str, r)) + " |" for r in rows)])
    one = next((r for r in results if r["engine"] == "ray" and r["workers"] == 1), None)
    model_line = ""
    if one:
        per_worker = one["fps"]
        model_line = (f"Scaling model: with decoding keeping up, throughput ~ workers x {per_worker:.2f} frames/s "
                      f"per 1-CPU worker here (e.g. 64 workers ~ {64 * per_worker:.0f} frames/s, "
                      f"{64 * per_worker * 3600 / 1e6:.2f} M frames/hour at {args.fps:g} fps sampling).")
    cpu = platform.processor() or platform.machine()
    try:
        cpu = next(line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                   if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    header = (f"{args.model} {args.task}, {inputs} inputs, {args.fps:g} fps, batch {args.batch_size}, "
              f"{os.cpu_count()} cores ({cpu}), load average before: {os.getloadavg()[0]:.1f}")
    print(header)
    print(table)
    if model_line:
        print(model_line)
    atomic_write_text(args.out / "archive.json", json.dumps({"setup": header, "results": results}, indent=2) + "\n")
    atomic_write_text(args.out / "archive.md", f"{header}\n\n{markdown}\n\n{model_line}\n")


if __name__ == "__main__":
    main()
