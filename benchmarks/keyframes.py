"""Keyframe real time on real clips: mask quality per keyframe interval, and the real-time run.

1. Quality: the per-frame FP32 masks (the eager PyTorch model on every frame) are the reference
   for the first ``--frames`` frames of each clip; keyframe mode with a fixed interval k (the model
   on every k-th frame and on scene cuts, flow propagation in between) is replayed offline, frame by
   frame, with the very ``KeyframePropagation`` and scene-cut detector that ``run_keyframe_video``
   uses, and its masks are scored against the reference: mIoU per frame over the classes present in
   either mask, averaged over the frames. k = 1 must give exactly 1.0 (checked; the run fails
   otherwise). The offline replay is deterministic: which frames are keyframes does not depend on
   the machine's speed. Both modes (``--modes``): causal (masks carried forward from the last
   keyframe) and lookahead (the frames between two keyframes wait for the second and blend both,
   as ``surgenet predict --realtime --lookahead``).
2. Real time: ``run_keyframe_video`` with the adaptive interval on the first clip, looped to at least
   ``--min-frames`` frames, played at the clip's rate, ``--runs`` times: end-to-end latency (mean,
   p99, p99.9, max), sustained fps against the clip's, the keeps-up verdict, the intervals chosen and
   the busiest thread. Next to it the machine's measured peak (one large FP32 matmul, and bf16 where
   the CPU has it natively) and the share of it the model reaches (GFLOP per frame x model calls per
   second / peak). With ``--export DIR`` this part runs the exported model through the backend that
   ``surgenet predict --realtime --model DIR`` would use (``--backend``, default ``auto``: chosen for
   this machine), so the figures are those of the real-time command; the quality part stays FP32.
3. The goal, per mode: keeps up with the clip with every frame masked, and mIoU >= 0.85 against
   per-frame FP32 at the interval the adaptive run settled on; with the p99 latency it costs.

    python benchmarks/keyframes.py MODEL_FOLDER --data DATA --out results/keyframes
    python benchmarks/keyframes.py MODEL_FOLDER --export EXPORT_DIR --data DATA --out results/keyframes

The machine's load average is recorded with every result: figures taken on a busy machine are not
the machine's speed.
"""

from __future__ import annotations

import argparse
import math
import os
import statistics
import sys
import time
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from surgenet.runtime.measure import gemm_gflops, gflops_per_frame, machine_info, markdown_table, write_json

from surgenet.console import CommandParser
from surgenet.console.checks import existing_path, model_reference, output_folder
from surgenet.bounds import bounded
from surgenet.exceptions import InputError
from surgenet.evaluation.metrics import iou_per_class
from surgenet.video.keyframe_interval import DEFAULT_MAX_INTERVAL

INTERVALS = tuple(range(1, DEFAULT_MAX_INTERVAL + 1))  # every interval the adaptive run may settle on
MODES = ("causal", "lookahead")  # masks carried forward only; or held and blended from both keyframes
GOAL_MIOU = 0.85


def sequence_miou(masks: Sequence[np.ndarray], reference: Sequence[np.ndarray], num_classes: int) -> float:
    """Mean over frames of each frame's mIoU (classes present in either mask) against the reference."""
    if len(masks) != len(reference) or not masks:
        raise ValueError(f"need two equally long, non-empty mask sequences, got {len(masks)} and {len(reference)}")
    per_frame = []
    for mask, ref in zip(masks, reference):
        iou = iou_per_class(np.asarray(mask), np.asarray(ref), num_classes)
        per_frame.append(float(np.nanmean(iou)))
    return float(np.mean(per_frame))


def first_frames(path: Path, count: int) -> list[np.ndarray]:
    """The first ``count`` RGB frames of a clip."""
    from surgenet.io.video import iter_video

    frames, video = [], iter_video(path)
    try:
        for vf in video:
            frames.append(vf.image)
            if len(frames) >= count:
                break
    finally:
        video.close()
    return frames


def keyframe_masks(predictor: Any, images: list[np.ndarray], logits: list[Any], reference: list[np.ndarray],
                   interval: int, cut_threshold: float | None, lookahead: bool = False) -> tuple[list[np.ndarray], int, int]:
    """Keyframe mode's masks with a fixed interval, replayed offline with the real-time code: a
    keyframe's mask is the per-frame prediction, other frames get the propagated labels (with
    ``lookahead``: blended from both keyframes around them, released at the second).
    Returns the masks, the keyframes and the scene cuts."""
    from surgenet.video.keyframes import SceneCutDetector
    from surgenet.realtime_keyframes import full_size_labels, keyframe_stream

    model_size = tuple(int(v) for v in predictor.config["input_size"][-2:])
    stream = keyframe_stream("flow", predictor.model, model_size, lookahead)  # as run_keyframe_video builds it
    cuts = SceneCutDetector(cut_threshold) if cut_threshold is not None else None
    masks: list[np.ndarray | None] = []
    held: list[int] = []  # indices into masks waiting for the next keyframe
    keyframes, scene_cuts, since = 0, 0, None

    def release(probs_list: list[np.ndarray]) -> None:
        for i, probs in zip(held, probs_list, strict=True):
            masks[i] = full_size_labels(probs, images[i].shape[:2])
        held.clear()

    for image, frame_logits, ref in zip(images, logits, reference):
        is_cut = cuts(image) if cuts is not None else False
        if since is None or since >= interval or is_cut:
            release(stream.keyframe(image, frame_logits, scene_cut=is_cut))
            masks.append(ref)  # the writer gives a keyframe the model's own (per-frame) mask
            keyframes += 1
            scene_cuts += int(is_cut and since is not None)
            since = 1
        else:
            probs = stream.propagate(image)
            if probs is None:
                held.append(len(masks))
                masks.append(None)
            else:
                masks.append(full_size_labels(probs, image.shape[:2]))
            since += 1
    release(stream.flush())
    return masks, keyframes, scene_cuts


def quality(predictor: Any, clips: list[Path], frames: int, cut_threshold: float | None,
            modes: Sequence[str] = MODES) -> list[dict[str, Any]]:
    """mIoU of keyframe-mode masks against per-frame FP32 masks, per clip, mode and interval."""
    import torch

    from surgenet.io.video import Frame

    num_classes = int(predictor.config["num_classes"])
    results = []
    for clip in clips:
        images = first_frames(clip, frames)
        logits, reference = [], []
        start = time.perf_counter()
        with torch.inference_mode():
            for i, image in enumerate(images):
                out = predictor._forward(predictor.transform(image)[None])[0]
                logits.append(out)
                reference.append(predictor._postprocess(Frame(i, f"frame_{i:06d}", image, None, str(clip)), out).class_map)
        per_frame_s = time.perf_counter() - start
        print(f"{clip.name}: {len(images)} per-frame reference masks in {per_frame_s:.1f} s", file=sys.stderr)
        for mode in modes:
            for k in INTERVALS:
                start = time.perf_counter()
                masks, keyframes, scene_cuts = keyframe_masks(predictor, images, logits, reference, k, cut_threshold,
                                                              lookahead=mode == "lookahead")
                miou = sequence_miou(masks, reference, num_classes)
                if k == 1 and miou != 1.0:
                    raise RuntimeError(f"interval 1 must reproduce the per-frame masks exactly, got mIoU {miou!r}")
                results.append({"clip": clip.name, "frames": len(images), "mode": mode, "interval": k, "miou": miou,
                                "keyframes": keyframes, "scene_cuts": scene_cuts,
                                "replay_s": time.perf_counter() - start, "load_average_1min": os.getloadavg()[0]})
                print(f"  {mode} interval {k}: mIoU {miou:.4f} ({keyframes} keyframes, {scene_cuts} cuts)",
                      file=sys.stderr)
    return results


def realtime_runs(predictor: Any, clip: Path, min_frames: int, runs: int, mode: str = "causal") -> list[dict[str, Any]]:
    """run_keyframe_video with the adaptive interval, the clip looped to >= ``min_frames`` frames."""
    from surgenet.io.video import video_info
    from surgenet.realtime_keyframes import run_keyframe_video

    info = video_info(clip)
    if not info.fps:
        raise InputError(f"{clip} does not state its frame rate, which the real-time run plays it at.")
    repeat = max(1, math.ceil(min_frames / max(info.frames or 1, 1)))
    results = []
    for run in range(runs):
        load = os.getloadavg()[0]
        report = run_keyframe_video(predictor, clip, sink=lambda result: result.class_map, repeat=repeat,
                                    max_frames=min_frames, lookahead=mode == "lookahead")
        d = report.as_dict()
        name, ms = report.bottleneck()
        results.append({"run": run, "mode": mode, "load_average_1min_before": load, "load_average_1min_after": os.getloadavg()[0],
                        "frames": report.processed, "decoded": report.decoded, "keyframes": report.keyframes,
                        "source_fps": report.source_fps, "sustained_fps": report.sustained_fps,
                        "keeps_up": report.keeps_up, "wall_s": report.wall_s, "latency_ms": d["latency_ms"],
                        "intervals": report.intervals,
                        "stage_ms": {k: v.mean_ms for k, v in report.stage_times().items()},
                        "thread_ms_per_frame": report.thread_loads(),
                        "bottleneck": {"thread": name, "ms_per_frame": ms}})
        print(f"real-time {mode} run {run + 1}/{runs}: {report.processed} frames, {report.sustained_fps:.2f} fps, "
              f"keeps up: {report.keeps_up}, busiest {name} {ms:.1f} ms/frame", file=sys.stderr)
    return results


def settled_interval(intervals: Sequence[int]) -> int:
    """The interval the adaptive run used most (ties: the larger one)."""
    counts = {k: intervals.count(k) for k in set(intervals)}
    return max(counts, key=lambda k: (counts[k], k)) if counts else 1


def nearest_measured(interval: int) -> int:
    """The measured interval closest to ``interval`` (the larger one on ties)."""
    return min(INTERVALS, key=lambda k: (abs(k - interval), -k))


def run(args: argparse.Namespace) -> int:
    import torch

    import surgenet
    from surgenet.models.loading import model_source

    clips = [args.data / "clips" / name for name in args.clips]
    for clip in clips:
        if not clip.is_file():
            raise InputError(f"clip {clip} not found (looked in {args.data / 'clips'}).")
    if model_source(args.model) == "zoo":
        raise InputError("give a fine-tuned segmentation model folder (save_pretrained), not a zoo name.")
    model = surgenet.load_model(args.model)
    predictor = surgenet.Predictor(model, device="cpu")
    if predictor.task != "segmentation":
        raise InputError(f"{args.model} does {predictor.task}; keyframe mode needs a segmentation model.")
    machine = machine_info()
    size = [int(v) for v in predictor.config["input_size"][-2:]]

    modes = list(dict.fromkeys(args.modes))
    qual = quality(predictor, clips, args.frames, args.cut_threshold, modes)
    live = predictor
    if args.export is not None:  # the real-time run with the exported model, as `surgenet predict --realtime`
        from surgenet.backends import check_backend, load_runner_for

        backend = check_backend(args.export, args.backend)
        chosen_backend = [backend]

        def on_choice(choice: Any) -> None:
            print(choice.summary(), file=sys.stderr)
            chosen_backend[0] = choice.backend

        live = surgenet.Predictor(load_runner_for(args.export, backend, on_choice=on_choice))
        machine["realtime_backend"] = chosen_backend[0]
    realtime = [r for mode in modes for r in realtime_runs(live, clips[0], args.min_frames, args.runs, mode)]
    peak = gemm_gflops(2048)
    gflop = gflops_per_frame(model, size)

    qrows = []
    mean_miou: dict[str, dict[int, float]] = {}
    for mode in modes:
        for clip in clips:
            row = [mode, clip.name, str(next(r["frames"] for r in qual if r["clip"] == clip.name))]
            for k in INTERVALS:
                r = next(r for r in qual if r["clip"] == clip.name and r["interval"] == k and r["mode"] == mode)
                row.append(f"{r['miou']:.3f}")
            qrows.append(row)
        mean_miou[mode] = {k: statistics.mean(r["miou"] for r in qual if r["interval"] == k and r["mode"] == mode)
                           for k in INTERVALS}
        qrows.append([mode, "mean", "", *(f"{mean_miou[mode][k]:.3f}" for k in INTERVALS)])
    quality_table = markdown_table(["mode", "clip", "frames", *(f"k={k}" for k in INTERVALS)], qrows)

    rrows = []
    for r in realtime:
        lat = r["latency_ms"]
        model_calls_per_s = r["keyframes"] / r["wall_s"]
        r["model_gflops_per_s"] = gflop * model_calls_per_s
        r["infer_gflops_per_s"] = gflop * 1e3 / r["stage_ms"]["infer"] if r["stage_ms"].get("infer") else float("nan")
        r["fraction_of_fp32_peak"] = r["model_gflops_per_s"] / peak["float32"]
        r["infer_fraction_of_fp32_peak"] = r["infer_gflops_per_s"] / peak["float32"]
        interpolate = r["stage_ms"].get("interpolate", float("nan"))  # lookahead's walk back, per held frame
        propagate = r["stage_ms"].get("propagate", float("nan")) + (0.0 if math.isnan(interpolate) else interpolate)
        rrows.append([r["mode"], str(r["run"] + 1), str(r["frames"]), f"{lat['mean']:.0f}", f"{lat['p99']:.0f}",
                      f"{lat['p99.9']:.0f}", f"{lat['max']:.0f}", f"{r['sustained_fps']:.2f} / {r['source_fps']:.0f}",
                      "yes" if r["keeps_up"] else "no", f"{min(r['intervals'])}..{max(r['intervals'])} "
                      f"(mostly {settled_interval(r['intervals'])})", f"{r['stage_ms'].get('infer', float('nan')):.0f}",
                      f"{propagate:.0f}",
                      f"{r['bottleneck']['thread']} {r['bottleneck']['ms_per_frame']:.1f}",
                      f"{100 * r['fraction_of_fp32_peak']:.1f} % ({100 * r['infer_fraction_of_fp32_peak']:.1f} %)",
                      f"{r['load_average_1min_before']:.1f}"])
    realtime_table = markdown_table(["mode", "run", "frames", "latency mean ms", "p99", "p99.9", "max", "fps / clip",
                                     "keeps up", "intervals", "infer ms", "propagate ms", "busiest thread ms/frame",
                                     "of FP32 peak (in infer)", "load"], rrows)
    peak_line = (f"peak: {peak['float32']:.0f} GFLOP/s FP32" +
                 (f", {peak['bfloat16']:.0f} GFLOP/s bf16" if "bfloat16" in peak else ", no native bf16") +
                 f" (2048x2048 matmul, torch {torch.get_num_threads()} threads); model {gflop:.2f} GFLOP/frame at "
                 f"{size[0]}x{size[1]}")

    goals: dict[str, dict[str, Any]] = {}
    for mode in modes:
        runs_of = [r for r in realtime if r["mode"] == mode]
        chosen = settled_interval([k for r in runs_of for k in r["intervals"]])
        measured = nearest_measured(chosen)
        keeps_up = all(r["keeps_up"] for r in runs_of)
        miou_at = mean_miou[mode][measured]
        worst = min(runs_of, key=lambda r: r["sustained_fps"])
        p99 = max(r["latency_ms"]["p99"] for r in runs_of)
        parts = [f"keeps up with {worst['source_fps']:.0f} fps, every frame masked: "
                 + ("yes" if keeps_up else f"NO (worst run {worst['sustained_fps']:.2f} fps, "
                    f"{100 * (1 - worst['sustained_fps'] / worst['source_fps']):.0f} % short; held back by "
                    f"{worst['bottleneck']['thread']}, {worst['bottleneck']['ms_per_frame']:.1f} ms per frame of a "
                    f"{1000 / worst['source_fps']:.0f} ms period)"),
                 f"mIoU vs per-frame FP32 at the chosen interval {chosen}"
                 + (f" (measured at k={measured})" if measured != chosen else "")
                 + f": {miou_at:.3f} " + (f">= {GOAL_MIOU}: yes" if miou_at >= GOAL_MIOU else
                                           f"< {GOAL_MIOU}: NO ({GOAL_MIOU - miou_at:.3f} short)"),
                 f"latency p99 {p99:.0f} ms"]
        goals[mode] = {"chosen_interval": chosen, "measured_interval": measured, "miou": miou_at,
                       "miou_goal": GOAL_MIOU, "keeps_up": keeps_up, "latency_p99_ms": p99,
                       "text": f"goal, {mode}: " + "; ".join(parts)}
    goal = "\n".join(g["text"] for g in goals.values())

    header = (f"{machine['cpu']}, {machine['logical_cpus']} logical CPUs, flags {' '.join(machine['cpu_flags'])}; "
              f"load average at start {' '.join(f'{v:.2f}' for v in machine['load_average'])}, at end "
              f"{' '.join(f'{v:.2f}' for v in os.getloadavg())}")
    report = "\n\n".join([header, "mIoU of keyframe-mode masks vs per-frame FP32 masks, fixed interval k "
                          "(causal: carried forward; lookahead: blended from both keyframes):",
                          quality_table, f"real time, adaptive interval, {clips[0].name} looped, backend "
                          f"{machine.get('realtime_backend', 'torch-eager-fp32')}:", realtime_table,
                          peak_line, goal])
    print(report)
    if args.out:
        from surgenet.io.atomic import atomic_write_text

        args.out.mkdir(parents=True, exist_ok=True)
        write_json(args.out / "keyframes.json", {
            "machine": machine, "load_average_end": list(os.getloadavg()), "model": str(args.model),
            "input_size": size, "gflop_per_frame": gflop, "peak_gflops": peak, "quality": qual,
            "mean_miou": {mode: {str(k): v for k, v in by_k.items()} for mode, by_k in mean_miou.items()},
            "realtime": realtime, "goal": goals})
        atomic_write_text(args.out / "keyframes.md", report + "\n")
    return 0


def build_parser() -> argparse.ArgumentParser:
    p = CommandParser(prog="keyframes", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("model", type=model_reference, help="a fine-tuned segmentation model folder (save_pretrained)")
    p.add_argument("--data", type=existing_path, required=True,
                   help="the data folder with clips/ (the real 25 fps clips)")
    p.add_argument("--clips", nargs="+", default=["clip_a.mp4", "clip_b.mp4"],
                   help="clip names in DATA/clips (default clip_a.mp4 clip_b.mp4; the first one is run in real time)")
    p.add_argument("--frames", type=bounded("frames"), default=200, help="frames of each clip scored (default 200)")
    p.add_argument("--min-frames", type=bounded("frames"), default=1000,
                   help="frames of the real-time run, the clip looped (default 1000)")
    p.add_argument("--runs", type=bounded("runs"), default=3, help="real-time runs (default 3)")
    p.add_argument("--modes", nargs="+", choices=MODES, default=list(MODES),
                   help="keyframe modes to measure: causal (masks carried forward) and lookahead (frames wait for the "
                        "next keyframe, masks blended from both: `predict --realtime --lookahead`); default both")
    p.add_argument("--cut-threshold", type=bounded("fraction"), default=0.5,
                   help="scene-cut histogram correlation forcing a keyframe, as real time uses (default 0.5)")
    p.add_argument("--export", type=existing_path, metavar="DIR",
                   help="run the real-time part with this surgenet-export folder of the model (as `surgenet predict "
                        "--realtime` does); default: the eager PyTorch model")
    p.add_argument("--backend", default="auto",
                   help="with --export: a backend name of the registry, or auto (default: chosen for this machine)")
    p.add_argument("--out", type=output_folder, help="write keyframes.json and keyframes.md here")
    p.set_defaults(func=run)
    return p


def main(argv: list[str] | None = None) -> int:
    from surgenet.console import run_command

    return run_command(build_parser(), argv)


if __name__ == "__main__":
    sys.exit(main())
