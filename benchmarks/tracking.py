"""Video segmentation that follows the scene: quality of mask propagation on a sequence with known
masks, and speed and memory on the real 854x480 clips.

Quality: sequences built from real footage (``surgenet.video.synthetic``: Endoscapes instrument
cut-outs moved along known paths over consecutive frames of a real clip), the first mask given,
J&F (DAVIS semi-supervised protocol) of each method against copying the first mask unchanged.
Speed: flow propagation (decode + DIS flow both ways + consistency check + warping) over every
frame of each clip, resident memory at the start and at the end; keyframe mode with a SurgeNet
segmentation model (fps and the share of frames that needed the model).

    python benchmarks/tracking.py --data data/
    python benchmarks/tracking.py --data data/ --quick        # fewer frames, for a smoke run
"""

from __future__ import annotations

import argparse
import os
import resource
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from surgenet.runtime.measure import machine_info, markdown_table, write_json

from surgenet.evaluation.metrics import davis_scores
from surgenet.video.frame_source import Frame, iter_frames
from surgenet.video.methods import create_propagator
from surgenet.video.propagate import labels_of
from surgenet.video.semi import propagate_mask
from surgenet.console import CommandParser
from surgenet.console.checks import output_file
from surgenet.bounds import bounded


def rss_mb() -> tuple[float, float]:
    """(current resident memory, peak resident memory) of this process in MiB."""
    current = 0.0
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            current = int(line.split()[1]) / 1024
    return current, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def load_average() -> str:
    return " ".join(f"{v:.2f}" for v in os.getloadavg())


# ----------------------------------------------------------------------------- quality
def quality(args: argparse.Namespace, methods: dict[str, Any]) -> list[dict[str, Any]]:
    from surgenet.video.synthetic import build_sequence

    rows = []
    for seed in args.seeds:
        seq = build_sequence(args.data, num_frames=args.quality_frames, size=(854, 480), seed=seed)
        frames = [Frame(i, str(i), f) for i, f in enumerate(seq.frames)]
        results = {"copy": davis_scores([seq.masks[0]] * len(seq.masks), seq.masks)}
        for name, make in methods.items():
            start = time.perf_counter()
            out = [o.class_map for o in propagate_mask(frames, seq.masks[0], make())]
            results[name] = davis_scores(out, seq.masks)
            results[name]["seconds_per_frame"] = (time.perf_counter() - start) / len(frames)
        for name, r in results.items():
            decay = np.mean([o["J"]["decay"] for o in r["per_object"].values()])
            recall = np.mean([o["J"]["recall"] for o in r["per_object"].values()])
            rows.append({"seed": seed, "method": name, "JF": r["JF_mean"], "J": r["J_mean"], "F": r["F_mean"],
                         "J_recall": float(recall), "J_decay": float(decay),
                         "s_per_frame": r.get("seconds_per_frame")})
            print(f"  seed {seed} {name:9s} J&F {r['JF_mean']:.3f}  J {r['J_mean']:.3f}  F {r['F_mean']:.3f}",
                  flush=True)
    return rows


# ----------------------------------------------------------------------------- speed
def first_mask(height: int, width: int) -> np.ndarray:
    """Two objects for the clips, which have no labels: the speed does not depend on where they are."""
    yy, xx = np.mgrid[:height, :width]
    mask = np.zeros((height, width), np.int64)
    mask[((xx - width * 0.35) / (width * 0.12)) ** 2 + ((yy - height * 0.5) / (height * 0.2)) ** 2 <= 1] = 1
    mask[int(height * 0.3):int(height * 0.7), int(width * 0.6):int(width * 0.75)] = 2
    return mask


def flow_speed(clip: Path, max_frames: int) -> dict[str, Any]:
    frames = iter_frames(clip)
    first = next(frames)
    propagator = create_propagator("flow")
    mask = first_mask(*first.image.shape[:2])
    count, rss_start, step_time = 1, None, 0.0
    start = time.perf_counter()
    propagator.start(first.image, np.eye(3, dtype=np.float32)[mask])
    for frame in frames:
        t0 = time.perf_counter()
        step = propagator.step(frame.image)
        labels_of(step.probs)  # the class map, as every consumer needs it
        step_time += time.perf_counter() - t0
        count += 1
        if count == 10:
            rss_start = rss_mb()
        if count >= max_frames:
            break
    total = time.perf_counter() - start
    rss_end = rss_mb()
    return {"clip": clip.name, "frames": count, "fps_with_decode": count / total,
            "fps_propagation": (count - 1) / step_time, "rss_mb_at_10": rss_start, "rss_mb_at_end": rss_end}


def raft_speed(clip: Path, max_frames: int, max_side: int) -> dict[str, Any]:
    """RAFT-small propagation speed on the CPU. Without cached weights it runs random ones from a
    temporary torch hub folder: the speed does not depend on the weights, the masks do (not scored)."""
    import tempfile

    from surgenet.video.raft import raft_weights_path

    note = "cached weights"
    if not raft_weights_path("raft_small").is_file():
        from torchvision.models.optical_flow import raft_small

        os.environ["TORCH_HOME"] = tempfile.mkdtemp(prefix="raft-speed-")
        path = raft_weights_path("raft_small")
        path.parent.mkdir(parents=True)
        torch.manual_seed(0)
        torch.save(raft_small().state_dict(), path)
        note = "random weights (speed only)"
    propagator = create_propagator("raft", device="cpu", max_side=max_side)
    frames = iter_frames(clip)
    first = next(frames)
    propagator.start(first.image, np.eye(3, dtype=np.float32)[first_mask(*first.image.shape[:2])])
    start, count = time.perf_counter(), 0
    for frame in frames:
        labels_of(propagator.step(frame.image).probs)
        count += 1
        if count >= max_frames:
            break
    return {"clip": clip.name, "frames": count, "fps": count / (time.perf_counter() - start), "max_side": max_side,
            "weights": note}


def keyframe_speed(clip: Path, max_frames: int, every: int, model_name: str) -> dict[str, Any]:
    import surgenet
    from surgenet.video.keyframes import KeyframePolicy, KeyframeSegmenter

    torch.manual_seed(0)
    model = surgenet.load_model(model_name, task="segmentation", num_classes=7, pretrained=False)
    predictor = surgenet.Predictor(model, device="cpu", batch_size=1)
    # the segmenter alone, for the comparison with segmenting every frame
    frame0 = next(iter_frames(clip)).image
    predictor.probabilities(frame0)
    t0 = time.perf_counter()
    for _ in range(3):
        predictor.probabilities(frame0)
    model_s = (time.perf_counter() - t0) / 3
    runner = KeyframeSegmenter(predictor.probabilities, create_propagator("flow"), KeyframePolicy(every=every))
    start = time.perf_counter()
    count = 0
    for frame in runner.run(iter_frames(clip)):
        count += 1
        if count >= max_frames:
            break
    total = time.perf_counter() - start
    stats = runner.stats
    return {"clip": clip.name, "frames": count, "every": every, "fps": count / total,
            "model_calls": stats.model_calls, "share_segmented": stats.model_calls / stats.frames,
            "reasons": dict(stats.reasons), "model_seconds_per_frame": model_s,
            "fps_if_every_frame_segmented": 1.0 / model_s, "model": model_name,
            "model_input_size": model.config["input_size"]}


def main(argv: list[str] | None = None) -> int:
    parser = CommandParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, required=True, help="a data folder with endoscapes/ (Endoscapes2023 segmentation subset) and clips/ (videos)")
    parser.add_argument("--seeds", type=bounded("seed"), nargs="+", default=[0, 1, 2])
    parser.add_argument("--quality-frames", type=bounded("frames"), default=32)
    parser.add_argument("--frames", type=bounded("frames"), default=800, help="frames per clip for the speed runs")
    parser.add_argument("--keyframe-every", type=bounded("keyframe_interval"), default=10)
    parser.add_argument("--keyframe-frames", type=bounded("frames"), default=800)
    parser.add_argument("--model", default="surgenetxl-caformer", help="segmenter of keyframe mode and the "
                        "backbone of feature propagation (random weights: the speed and the share of keyframes "
                        "do not depend on them)")
    parser.add_argument("--raft-frames", type=bounded("frames"), default=5, help="frames for the RAFT speed run")
    parser.add_argument("--skip", nargs="*", default=[],
                        choices=("quality", "flow", "keyframes", "features", "raft"))
    parser.add_argument("--quick", action="store_true", help="a smoke run: 1 seed, 8 frames, 50 clip frames")
    parser.add_argument("--json", type=output_file, help="write every figure here")
    args = parser.parse_args(argv)
    if args.quick:
        args.seeds, args.quality_frames, args.frames, args.keyframe_frames, args.raft_frames = [0], 8, 50, 30, 3
    clips = sorted((args.data / "clips").glob("*.mp4"))
    if not clips:
        parser.error(f"no clips under {args.data / 'clips'}")
    report: dict[str, Any] = {"machine": machine_info(), "load_average_start": load_average()}
    print(f"load average at start: {report['load_average_start']} (machine shared with other jobs)", flush=True)

    if "quality" not in args.skip:
        from surgenet.video.raft import raft_weights_path

        methods: dict[str, Any] = {"flow": lambda: create_propagator("flow")}
        if raft_weights_path("raft_small").is_file():
            methods["raft"] = lambda: create_propagator("raft", device="cpu")
        else:
            report["raft"] = f"not measured: no weights at {raft_weights_path('raft_small')} (offline machine)"
            print(report["raft"])
        if "features" not in args.skip:
            import surgenet

            torch.manual_seed(0)
            backbone_model = surgenet.load_model(args.model, task="segmentation", num_classes=2, pretrained=False)
            methods["features"] = lambda: create_propagator("features", backbone_model)
        print(f"quality: {len(args.seeds)} sequence(s) of {args.quality_frames} frames at 854x480", flush=True)
        rows = quality(args, methods)
        report["quality"] = rows
        table = []
        for method in ["copy", *methods]:
            mine = [r for r in rows if r["method"] == method]
            mean = lambda k: float(np.mean([r[k] for r in mine]))  # noqa: E731
            table.append([method, f"{mean('JF'):.3f}", f"{mean('J'):.3f}", f"{mean('F'):.3f}",
                          f"{mean('J_recall'):.2f}", f"{mean('J_decay'):.3f}"])
        print(markdown_table(["method", "J&F", "J", "F", "J recall", "J decay"], table))

    if "flow" not in args.skip:
        report["flow_speed"] = []
        for clip in clips:
            r = flow_speed(clip, args.frames)
            report["flow_speed"].append(r)
            print(f"flow {clip.name}: {r['frames']} frames, {r['fps_with_decode']:.1f} fps with decoding, "
                  f"{r['fps_propagation']:.1f} fps propagation alone; RSS at frame 10 "
                  f"{r['rss_mb_at_10'][0]:.0f} MiB (peak {r['rss_mb_at_10'][1]:.0f}), at the end "
                  f"{r['rss_mb_at_end'][0]:.0f} MiB (peak {r['rss_mb_at_end'][1]:.0f})", flush=True)

    if "raft" not in args.skip:
        r = raft_speed(clips[0], args.raft_frames, 512)
        report["raft_speed"] = r
        print(f"raft_small {r['clip']}: {r['frames']} frames at {r['fps']:.2f} fps (longer side {r['max_side']}, "
              f"{r['weights']})", flush=True)

    if "keyframes" not in args.skip:
        r = keyframe_speed(clips[0], args.keyframe_frames, args.keyframe_every, args.model)
        report["keyframes"] = r
        print(f"keyframes {r['clip']}: {r['frames']} frames at {r['fps']:.2f} fps, model on "
              f"{r['model_calls']} ({100 * r['share_segmented']:.1f}%) {r['reasons']}; the model alone "
              f"{r['model_seconds_per_frame'] * 1000:.0f} ms/frame = {r['fps_if_every_frame_segmented']:.2f} fps "
              "if every frame were segmented", flush=True)
    report["load_average_end"] = load_average()
    print(f"load average at end: {report['load_average_end']}")
    if args.json:
        write_json(args.json, report)
    return 0


if __name__ == "__main__":
    sys.exit(main())
