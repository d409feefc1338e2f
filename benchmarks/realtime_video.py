"""End-to-end real-time video: decode -> preprocess -> segment -> overlay written, on a real clip.

Runs ``surgenet.realtime.run_video`` (the pipeline of ``surgenet predict`` on videos: decoding,
preprocessing, inference and writing overlapped) once per backend and prints one row each: the
sustained fps against the clip's rate, per-stage mean / p90 ms, the end-to-end latency and the
frames dropped in ``--realtime`` mode. The overlay is encoded to an H.264 file (``--write video``,
what a recorder or a second screen takes), to PNG files, or not at all (``--write none``).

    python benchmarks/realtime_video.py --clip clips/clip_a.mp4 --model surgenet-caformer
    python benchmarks/realtime_video.py --clip clips/clip_a.mp4 --model export/ \\
        --backend openvino openvino-int8 --realtime --frames 400

``--model`` is a zoo name (random weights: a speed-only run, said in the output), a
``save_pretrained`` folder (a fine-tuned model) or a ``surgenet-export`` folder (with
``--backend``). The machine's load average is recorded with every result: figures taken on a
busy machine are not the machine's speed.

``--cpu-profile`` adds a measure that a busy machine disturbs far less: the stages run one after
the other on one thread each (torch, ONNX Runtime and OpenVINO set to 1 thread), and the CPU time
of the process (``time.process_time``) is summed per stage. Their total per frame is the work one
frame costs; 2000 / total is the fps two idle cores could reach if the stages overlapped
perfectly and each one split over the cores without loss (an upper bound, not a measurement).
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from surgenet.runtime.measure import machine_info, markdown_table, write_json

from surgenet.console import CommandParser
from surgenet.console.checks import existing_file, model_reference, output_file, output_folder
from surgenet.bounds import bounded
from surgenet.exceptions import InputError

WRITERS = ("video", "png", "none")


def parse_size(text: str) -> tuple[int, int]:
    """``256`` or ``256x448`` (height x width)."""
    try:
        parts = [int(v) for v in text.lower().split("x")]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected N or HxW, got {text!r}") from None
    if len(parts) not in (1, 2):
        raise argparse.ArgumentTypeError(f"expected N or HxW, got {text!r}")
    side = bounded("image_side")
    parts = [side(str(v)) for v in parts]
    return (parts[0], parts[0]) if len(parts) == 1 else (parts[0], parts[1])


parse_size.bound_name = "image_side"  # type: ignore[attr-defined]


def build_predictor(model: str, backend: str, args: argparse.Namespace,
                    threads: int | None = None) -> tuple[Any, str]:
    """The Predictor for one backend and a note on the weights."""
    import surgenet
    from surgenet.backends import AUTO, load_runner_for, runs_eager
    from surgenet.models.loading import model_source
    from surgenet.runtime.registry import get_backend, open_runner

    if backend != AUTO and get_backend(backend).artefact == "model":
        if model_source(model) == "zoo":
            net = surgenet.load_model(model, task="segmentation", num_classes=args.num_classes, pretrained=False,
                                      input_size=args.imgsz)
            note = "random weights (speed only)"
        else:
            if args.imgsz:
                raise InputError("--imgsz is for zoo names; a saved model keeps the input size it was trained at.")
            net, note = surgenet.load_model(model), "saved model"
        if not runs_eager(backend):  # channels_last, compiled, ...: the registry's runner of the model
            return surgenet.Predictor(open_runner(backend, net), batch_size=args.batch_size), note
        return surgenet.Predictor(net, device="cpu", batch_size=args.batch_size), note
    runner = load_runner_for(model, backend, threads=threads)
    return surgenet.Predictor(runner, batch_size=args.batch_size), "exported model"


def make_sink(kind: str, out: Path, fps: float, stack: Any) -> Any:
    from PIL import Image

    from surgenet.io.atomic import atomic_target
    from surgenet.io.video import VideoWriter

    if kind == "none":
        return lambda result: result.overlay()
    if kind == "video":
        movie = stack.enter_context(VideoWriter(out / "overlay.mp4", fps=fps))
        return lambda result: movie.write(result.overlay())

    def png(result: Any) -> None:
        with atomic_target(out / f"frame_{result.index:06d}.png") as tmp:
            Image.fromarray(result.overlay()).save(tmp, format="PNG")
    return png


def cpu_profile(predictor: Any, clip: Path, frames: int, sink: Any) -> dict[str, float]:
    """CPU ms per frame of each stage, run one after the other (see the module docstring)."""
    from surgenet.io.video import iter_video
    from surgenet.realtime import STAGES

    totals = dict.fromkeys(STAGES, 0.0)
    state, count, video = None, 0, iter_video(clip)
    try:
        clock = time.process_time
        while count < frames:
            c0 = clock()
            vf = next(video, None)
            if vf is None:
                break
            c1 = clock()
            x = predictor.transform(vf.image)
            c2 = clock()
            finishers, state = predictor.infer_batch([vf], x[None], state)
            c3 = clock()
            result = finishers[0]()
            c4 = clock()
            sink(result)
            c5 = clock()
            for name, spent in zip(STAGES, (c1 - c0, c2 - c1, c3 - c2, c4 - c3, c5 - c4)):
                totals[name] += spent
            count += 1
    finally:
        video.close()
    return {name: 1e3 * total / max(count, 1) for name, total in totals.items()}


def profile_rows(args: argparse.Namespace, backends: list[str], fps: float) -> tuple[list[list[str]], list[dict]]:
    from contextlib import ExitStack

    import torch

    from surgenet.realtime import warm_up

    rows, results = [], []
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        for backend in backends:
            predictor, _ = build_predictor(args.model, backend, args, threads=1)
            warm_up(predictor, 1)
            with tempfile.TemporaryDirectory() as tmp, ExitStack() as stack:
                out = Path(tmp) / "profile"
                ms = cpu_profile(predictor, args.clip, args.frames or 100, make_sink(args.write, out, fps, stack))
            total = sum(ms.values())
            rows.append([backend, *(f"{v:.1f}" for v in ms.values()), f"{total:.1f}", f"{1000 / total:.1f}",
                         f"{2000 / total:.1f}", f"{os.getloadavg()[0]:.1f}"])
            results.append({"backend": backend, "cpu_ms_per_frame": ms, "total_cpu_ms": total})
    finally:
        torch.set_num_threads(threads)
    return rows, results


def run(args: argparse.Namespace) -> int:
    from contextlib import ExitStack

    import torch

    from surgenet.backends import check_backend
    from surgenet.io.video import video_info
    from surgenet.realtime import run_video

    info = video_info(args.clip)
    backends = [check_backend(args.model, b) for b in (args.backend or [None])]
    if args.threads:
        torch.set_num_threads(args.threads)
    rows, results = [], []
    load_before = os.getloadavg()
    for backend in backends:
        predictor, note = build_predictor(args.model, backend, args)
        with tempfile.TemporaryDirectory() as tmp, ExitStack() as stack:
            out = args.out / backend if args.out else Path(tmp)
            sink = make_sink(args.write, out, info.fps or 25.0, stack)
            start = time.perf_counter()
            report = run_video(predictor, args.clip, sink=sink, realtime=args.realtime, max_frames=args.frames)
            elapsed = time.perf_counter() - start
        times = report.stage_times()
        load = os.getloadavg()
        size = "x".join(str(v) for v in predictor.config["input_size"][-2:])
        rows.append([backend, size, f"{report.fps:.1f}", f"{report.source_fps or float('nan'):.1f}",
                     *(f"{times[s].mean_ms:.1f} / {times[s].p90_ms:.1f}" for s in
                       ("decode", "preprocess", "infer", "postprocess", "write", "latency")),
                     f"{report.dropped}/{report.decoded}", f"{load[0]:.1f}"])
        results.append({"backend": backend, "input_size": size, "weights": note, "write": args.write,
                        "elapsed_s": elapsed, "load_average_1min": load[0], **report.as_dict()})
        print(f"{backend}: {note}, {report.processed} frame(s) in {report.wall_s:.1f} s", file=sys.stderr)
    mode = "real time (stale frames dropped)" if args.realtime else "throughput (every frame)"
    print(f"{args.clip} ({info.width}x{info.height}, {info.fps or float('nan'):.2f} fps), {mode}, "
          f"overlay written as {args.write}; load average before {load_before[0]:.1f}, "
          f"{os.cpu_count()} logical CPUs, torch threads {torch.get_num_threads()}")
    print(markdown_table(["backend", "input", "fps", "clip fps", "decode ms", "preprocess ms", "infer ms",
                        "postprocess ms", "write ms", "latency ms", "dropped", "load"], rows))
    print("ms columns: mean / p90 per frame; latency: frame available -> overlay written.")
    profile: list[dict] = []
    if args.cpu_profile:
        prows, profile = profile_rows(args, backends, info.fps or 25.0)
        print(f"\nCPU time per frame, stages in sequence on one thread each ({args.frames or 100} frames):")
        print(markdown_table(["backend", "decode", "preprocess", "infer", "postprocess", "write", "total ms",
                            "1-core fps", "2-core bound fps", "load"], prows))
    if args.json:
        write_json(args.json, {"machine": machine_info(), "clip": str(args.clip), "realtime": args.realtime,
                               "results": results, "cpu_profile": profile})
    return 0


def build_parser() -> argparse.ArgumentParser:
    p = CommandParser(prog="realtime_video", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--clip", required=True, type=existing_file, help="a video file, e.g. an 854x480 laparoscopic clip (.mp4)")
    p.add_argument("--model", required=True, type=model_reference,
                   help="zoo name (random weights), save_pretrained folder or surgenet-export folder")
    p.add_argument("--backend", nargs="+", metavar="NAME",
                   help="one or more of torch, onnxruntime, openvino[-bf16], openvino-int8[-bf16], tensorrt "
                        "(default: torch, or the export folder's own choice)")
    p.add_argument("--realtime", action="store_true", help="play at the clip's rate, drop stale frames")
    p.add_argument("--frames", type=bounded("frames"), help="stop after N frames (default: the whole clip)")
    p.add_argument("--imgsz", type=parse_size, help="zoo model input, N or HxW (default: the registry's)")
    p.add_argument("--num-classes", type=bounded("num_classes"), default=7, help="zoo model classes (Endoscapes: 7)")
    p.add_argument("--batch-size", type=bounded("batch_size"), default=1, help="throughput mode batch (real time: 1)")
    p.add_argument("--threads", type=bounded("threads"), help="torch intra-op threads (default: torch's)")
    p.add_argument("--write", choices=WRITERS, default="video", help="how the overlay is written (default video)")
    p.add_argument("--out", type=output_folder, help="keep the overlays here (default: a temporary folder)")
    p.add_argument("--cpu-profile", action="store_true",
                   help="also the CPU time of each stage run in sequence on one thread (load-robust)")
    p.add_argument("--json", type=output_file, help="also write the results and the machine facts here")
    p.set_defaults(func=run)
    return p


def main(argv: list[str] | None = None) -> int:
    from surgenet.console import run_command

    return run_command(build_parser(), argv)


if __name__ == "__main__":
    sys.exit(main())
