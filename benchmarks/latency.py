"""Latency of a SurgeNet task model on every available backend, side by side, and its fidelity.

    python benchmarks/latency.py --model surgenetxl-caformer --task segmentation --num-classes 13 \\
        --batch 1 --imgsz 256 512 --no-pretrained --json out/latency.json
    python benchmarks/latency.py --model runs/seg/best --eval-data data/endoscapes/val \\
        --calib data/endoscapes/train --imgsz 256 512 256x448 --json out/fidelity.json

Backends (``--backends`` picks some) are those of the registry (:mod:`surgenet.runtime.registry`),
under the names ``surgenet predict --backend`` takes: PyTorch eager FP32 (the baseline,
``torch-eager-fp32``), channels_last, bf16 autocast, torch.compile, ONNX Runtime CPU, OpenVINO
f32/bf16/f16 and int8 (NNCF-calibrated on ``--calib`` frames; the unquantised layers in f32, or bf16
for ``openvino-int8-bf16``); with CUDA also PyTorch FP32/FP16 on the GPU, FP16 and bf16 compiled
with CUDA graphs (``torch-cuda-graphs-fp16``/``-bf16``), ONNX Runtime CUDA and TensorRT providers
and the TensorRT engine (built FP16 here, ``tensorrt``). Every call is numpy in, numpy out (host copies
included, as in a deployed pipeline). ``first_call_ms`` is the first call alone: torch.compile's
compilation, OpenVINO's compilation for the shape, TensorRT's context set-up.

Fidelity. With a fine-tuned model (``--model RUN/best``) and ``--eval-data`` (images/ + masks/),
each backend segments every eval frame at each size; its mIoU against the masks
(:mod:`surgenet_export.fidelity`, one confusion matrix), the drop against eager FP32 in points
and the pixel agreement with FP32 go into each row (``miou``, ``miou_drop``, ``eval_agreement``),
and the summary picks the fastest backend within ``--max-miou-drop`` (0.5 points). Otherwise
(random weights, no eval data) fidelity is not judged and the summary falls back to argmax
agreement with FP32 on the sample frame and three views of it, which with near-tied random
logits is a pessimistic estimate.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from surgenet.exceptions import InputError
from surgenet.runtime import registry
from surgenet.tasks import TASKS
from surgenet.console import CommandParser
from surgenet.console.checks import output_file
from surgenet.bounds import bounded
from surgenet.evaluation.metrics import decision_agreement
from surgenet.runtime.measure import (CALIB_HINT, Unavailable, gemm_gflops, gflops_per_frame,
                                      latency_stats, machine_info, markdown_table, open_benchmark_runner, parse_size,
                                      plot_results, time_calls, warn_if_busy, write_json)

BASELINE = registry.REFERENCE
SAMPLE_FRAME = Path(__file__).resolve().parents[1] / "surgenet" / "assets" / "sample_frame.png"


BACKENDS = registry.BACKENDS  # the registry's names are the rows' names


def agreement_frames(config: dict[str, Any], hw: tuple[int, int], frames: list[Path] | None) -> tuple[np.ndarray, str]:
    """Real frames through the models' own preprocessing (``surgenet.create_transform`` at ``hw``),
    (K, 3, H, W) float32."""
    from PIL import Image, ImageOps

    from surgenet import create_transform

    paths = frames or ([SAMPLE_FRAME] if SAMPLE_FRAME.is_file() else [])
    if not paths:
        images = [np.random.default_rng(0).integers(0, 256, (hw[0], hw[1], 3), dtype=np.uint8)]
        source = "uniform random images (no sample frame found)"
    else:
        images = []
        for path in paths:
            img = Image.open(path).convert("RGB")
            w, h = img.size
            images += [img] if frames else [
                img, ImageOps.mirror(img), img.crop((w // 6, h // 6, w - w // 6, h - h // 6)),
                Image.fromarray((np.asarray(img, dtype=np.float32) * [1.1, 0.9, 0.95]).clip(0, 255).astype(np.uint8)),
            ]
        source = ", ".join(str(p) for p in paths) + ("" if frames else " (+ flip, zoom, colour-shift views)")
    return create_transform(config, size=hw).batch(images).numpy(), source


def fidelity_plan(args: argparse.Namespace, config: dict[str, Any]) -> tuple[tuple[list[Path], list[Path]] | None, str]:
    """The eval pairs to judge fidelity on, or None and why it is not judged."""
    if not args.eval_data:
        return None, "not judged: no --eval-data (images/ + masks/) given; argmax agreement with FP32 only"
    if config["task"] != "segmentation":
        raise InputError(f"--eval-data judges segmentation models; this is a {config['task']} model. Leave "
                         "--eval-data out for a speed-only run.")
    from surgenet_export.fidelity import eval_pairs

    pairs = eval_pairs(args.eval_data)
    if args.eval_size:
        pairs = (pairs[0][:args.eval_size], pairs[1][:args.eval_size])
    trained = Path(args.model).is_dir() or args.weights is not None
    if args.no_pretrained or not trained:
        return None, ("not judged: random weights (the segmentation head is untrained, so its mIoU says nothing "
                      "about a backend); pass a fine-tuned model: --model RUN/best")
    return pairs, f"mIoU on {len(pairs[0])} frames of {args.eval_data} against their masks"


def judge_fidelity(runner: Any, pairs: tuple[list[Path], list[Path]], hw: tuple[int, int], config: dict[str, Any],
                   reference: list[np.ndarray] | None) -> tuple[dict[str, Any], list[np.ndarray]]:
    """A backend's mIoU (and per-class IoU) against the masks at size ``hw``, one frame at a time,
    and the share of pixels whose class matches the FP32 baseline's (``reference``)."""
    from surgenet.io.images import read_image
    from surgenet_export.fidelity import miou_against_masks
    from surgenet_export.calibration_frames import preprocess

    preds = [np.asarray(runner(preprocess(read_image(image), hw, config)))[0].argmax(0) for image in pairs[0]]
    scores = miou_against_masks(preds, pairs[1], int(config["num_classes"]))
    agree = float(np.mean([np.mean(a == b) for a, b in zip(preds, reference)])) if reference else 1.0
    return {"miou": scores["miou"], "per_class_iou": scores["per_class_iou"], "eval_agreement": agree}, preds


def run_benchmark(args: argparse.Namespace) -> dict[str, Any]:
    import torch

    import surgenet
    from surgenet_export.artefacts import BackendArtefacts

    names = args.backends or list(BACKENDS)
    unknown = [n for n in names if n not in BACKENDS and n not in registry.ALIASES]
    if unknown:
        raise InputError(f"unknown backends {', '.join(unknown)}; valid: {', '.join(BACKENDS)}.")
    names = list(dict.fromkeys(registry.get_backend(n).name for n in names))
    if args.calib is not None and not args.calib.is_dir():
        raise InputError(f"--calib {args.calib} is not a folder; pass {CALIB_HINT.removeprefix('needs ')}.")
    asked_int8 = [n for n in (args.backends or ()) if registry.get_backend(n).artefact == "openvino-ir"]
    if asked_int8 and args.calib is None:  # asked for by name: refused now, not after the other backends ran
        raise InputError(f"--backends {' '.join(asked_int8)} {CALIB_HINT}; or drop them from --backends.")
    if registry.get_backend(args.reference).precision != "fp32":
        raise InputError(f"--reference {args.reference} is not an FP32 backend; the others are checked against it.")
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)  # random weights (and untrained heads) are the same draw in every run
    model = surgenet.load_model(args.model, task=args.task, num_classes=args.num_classes,
                                pretrained=not args.no_pretrained, weights=args.weights).eval()
    config = dict(model.config)
    sizes = list(dict.fromkeys(args.imgsz))
    pairs, fidelity_note = fidelity_plan(args, config)
    warn_if_busy()
    baseline = registry.get_backend(args.reference).name
    names = [baseline, *[n for n in names if n != baseline]]  # first: the others are checked against it
    # The ONNX, int8 and engine files are scratch: removed when the benchmark ends, whatever happens.
    with tempfile.TemporaryDirectory(prefix="surgenet-latency-") as scratch:
        workdir = Path(scratch)
        ctx = BackendArtefacts(model, config, workdir, list(args.batch), sizes, args.threads, args.calib, args.calib_size)
        runners: dict[str, Any] = {}
        unavailable: dict[str, str] = {}
        for name in names:
            try:
                runners[name] = open_benchmark_runner(name, ctx)
            except Unavailable as exc:
                unavailable[name] = str(exc)
            except Exception as exc:  # a backend that fails to build is reported, not fatal to the others
                unavailable[name] = f"failed to build: {type(exc).__name__}: {exc}"
        gflops = {f"{h}x{w}": gflops_per_frame(model, (h, w)) for h, w in sizes}
        results = []
        frame_source = ""
        fidelity: dict[tuple[str, tuple[int, int]], dict[str, Any]] = {}
        for hw in sizes:
            frames, frame_source = agreement_frames(config, hw, args.frames)
            reference_preds: list[np.ndarray] | None = None
            for batch in args.batch:
                x = np.ascontiguousarray(np.resize(frames, (batch, *frames.shape[1:])))
                ref = None
                for name in [n for n in names if n in runners]:
                    runner = runners[name]
                    reset = getattr(runner, "reset", None)
                    try:
                        start = time.perf_counter()
                        out = np.asarray(runner(x), dtype=np.float32)  # first call: compile/plan time
                        first_ms = (time.perf_counter() - start) * 1e3
                        sync = torch.cuda.synchronize if BACKENDS[name].device == "cuda" else None
                        times = time_calls(lambda: runner(x), args.warmup, args.iters, sync)
                        if pairs and (name, hw) not in fidelity:  # once per backend and size, at batch 1
                            fidelity[(name, hw)], preds = judge_fidelity(runner, pairs, hw, config, reference_preds)
                            if name == baseline:
                                reference_preds = preds
                    except Exception as exc:  # e.g. out of memory at one size: record it, keep the others
                        unavailable[f"{name} @ batch {batch} {hw[0]}x{hw[1]}"] = f"{type(exc).__name__}: {exc}"
                        continue
                    if reset:
                        reset()
                    if name == baseline:
                        ref = out
                    row = {"backend": name, "device": BACKENDS[name].device, "batch": batch, "imgsz": list(hw),
                           **latency_stats(times, batch), "first_call_ms": first_ms,
                           "gflops_per_s": gflops[f"{hw[0]}x{hw[1]}"] * batch / (float(np.median(times)) / 1e3)}
                    row["argmax_agreement"] = decision_agreement(ref, out, config["task"])
                    row["max_abs_err"] = float(np.abs(out - ref).max())
                    if (name, hw) in fidelity:
                        row.update(fidelity[(name, hw)])
                    results.append(row)
                base = next((r for r in results if r["backend"] == baseline and r["batch"] == batch
                             and r["imgsz"] == list(hw)), None)
                for r in results:
                    if base and r["batch"] == batch and r["imgsz"] == list(hw):
                        r["speedup"] = base["median_ms"] / r["median_ms"]
                        if "miou" in r and "miou" in base:
                            r["miou_drop"] = 100.0 * (base["miou"] - r["miou"])
        machine = machine_info()
        machine["gemm_gflops"] = gemm_gflops() if not args.no_roofline else {}
        judged = bool(pairs)
        return {
            "machine": machine,
            "model": {"name": args.model, "task": config["task"], "num_classes": config["num_classes"],
                      "weights": _weights_label(args),
                      "gflops_per_frame": gflops},
            "settings": {"seed": args.seed, "warmup": args.warmup, "iters": args.iters, "reference": baseline,
                         "threads": args.threads or torch.get_num_threads(),
                         "agreement_frames": frame_source, **ctx.notes},
            "fidelity": {"judged": judged, "how": fidelity_note, "max_miou_drop": args.max_miou_drop},
            "results": results,
            "summary": fastest_backends(results, max_miou_drop=args.max_miou_drop if judged else None) if results else [],
            "unavailable": [{"backend": k, "reason": v} for k, v in unavailable.items()],
        }


def fastest_backends(results: list[dict[str, Any]], min_agreement: float = 0.995,
                     max_miou_drop: float | None = None) -> list[dict[str, Any]]:
    """Per (device, batch, size): the fastest backend overall and the fastest faithful one. With
    ``max_miou_drop`` (fidelity judged on a trained model) faithful means an mIoU at most that many
    points below eager FP32; otherwise an argmax agreement with eager FP32 of ``min_agreement``."""
    groups: dict[tuple, list[dict[str, Any]]] = {}
    for r in results:
        groups.setdefault((r["device"], r["batch"], tuple(r["imgsz"])), []).append(r)
    summary = []
    for (device, batch, imgsz), rows in groups.items():
        fastest = min(rows, key=lambda r: r["median_ms"])
        if max_miou_drop is not None:
            criterion = f"mIoU drop <= {max_miou_drop:g} points"
            faithful = [r for r in rows if r.get("miou_drop") is not None and r["miou_drop"] <= max_miou_drop]
        else:
            criterion = f"argmax agreement >= {100 * min_agreement:.1f} %"
            faithful = [r for r in rows if r["argmax_agreement"] >= min_agreement]
        best = min(faithful, key=lambda r: r["median_ms"]) if faithful else None
        summary.append({
            "device": device, "batch": batch, "imgsz": list(imgsz), "criterion": criterion,
            "min_agreement": min_agreement, "max_miou_drop": max_miou_drop,
            "fastest": fastest["backend"], "fastest_speedup": fastest.get("speedup"),
            "fastest_agreement": fastest["argmax_agreement"], "fastest_miou_drop": fastest.get("miou_drop"),
            "fastest_faithful": best["backend"] if best else None,
            "fastest_faithful_speedup": best.get("speedup") if best else None,
            "fastest_faithful_fps": best.get("fps") if best else None,
            "fastest_faithful_miou_drop": best.get("miou_drop") if best else None,
        })
    return summary


def print_report(report: dict[str, Any]) -> None:
    m = report["machine"]
    print(f"{report['model']['name']} {report['model']['task']} ({report['model']['weights']}) on {m['cpu']} "
          f"({m['torch_threads']} threads, {', '.join(m['cpu_flags'])}){'; GPU ' + m['gpu'] if m['gpu'] else ''}")
    if m.get("load_average"):
        busy = m["load_average"][0] > 0.5 * (m["logical_cpus"] or 1)
        print(f"load average at the end: {m['load_average'][0]:.1f} on {m['logical_cpus']} CPUs"
              + (" (a busy machine: these timings are pessimistic)" if busy else ""))
    print("GFLOPs per frame: " + ", ".join(f"{k}: {v:.2f}" for k, v in report["model"]["gflops_per_frame"].items()))
    if m.get("gemm_gflops"):
        print("machine ceiling, one large matrix product in PyTorch: "
              + ", ".join(f"{k} {v:.0f} GFLOP/s" for k, v in m["gemm_gflops"].items()))
    fid = report.get("fidelity", {})
    print(f"fidelity: {fid.get('how', 'not judged')}")
    judged = bool(fid.get("judged"))
    headers = ["backend", "batch", "size", "median ms", "p90 ms", "p99 ms", "fps", "speed-up", "agreement",
               "max abs err", "GFLOP/s"] + (["mIoU", "drop (points)", "eval agreement"] if judged else [])
    rows = []
    for r in report["results"]:
        row = [r["backend"], r["batch"], f"{r['imgsz'][0]}x{r['imgsz'][1]}", f"{r['median_ms']:.1f}",
               f"{r['p90_ms']:.1f}", f"{r['p99_ms']:.1f}", f"{r['fps']:.1f}", f"{r.get('speedup', float('nan')):.2f}x",
               f"{100 * r['argmax_agreement']:.2f} %", f"{r['max_abs_err']:.2e}", f"{r['gflops_per_s']:.0f}"]
        if judged:
            row += ([f"{100 * r['miou']:.2f} %", f"{r.get('miou_drop', float('nan')):+.2f}",
                     f"{100 * r['eval_agreement']:.2f} %"] if "miou" in r else ["-", "-", "-"])
        rows.append(row)
    print(markdown_table(headers, rows))
    for item in report["unavailable"]:
        print(f"unavailable: {item['backend']}: {item['reason']}")
    for g in report.get("summary", []):
        where = f"{g['device']} batch {g['batch']} {g['imgsz'][0]}x{g['imgsz'][1]}"
        line = (f"{where}: fastest {g['fastest']} ({g['fastest_speedup']:.2f}x, "
                f"{100 * g['fastest_agreement']:.2f} % agreement)")
        if g["fastest_faithful"]:
            line += (f"; fastest with {g['criterion']}: {g['fastest_faithful']} "
                     f"({g['fastest_faithful_speedup']:.2f}x, {g['fastest_faithful_fps']:.1f} fps)")
        else:
            line += f"; no backend meets {g['criterion']}"
        print(line)


def build_parser() -> argparse.ArgumentParser:
    p = CommandParser(prog="latency.py", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", required=True, help="zoo name or save_pretrained folder")
    p.add_argument("--task", choices=TASKS)
    p.add_argument("--num-classes", type=bounded("num_classes"))
    p.add_argument("--weights", type=Path, help="local weights instead of the released ones")
    p.add_argument("--no-pretrained", action="store_true", help="random weights (no download)")
    p.add_argument("--backends", nargs="+", metavar="NAME", help=f"subset of: {', '.join(BACKENDS)}")
    p.add_argument("--reference", default=BASELINE, metavar="NAME",
                   help=f"the FP32 backend the others are checked and timed against (default {BASELINE}; on a GPU "
                        "machine torch-cuda-fp32 spares the slow CPU rows)")
    p.add_argument("--batch", type=bounded("batch_size"), nargs="+", default=[1])
    p.add_argument("--imgsz", type=parse_size, nargs="+", default=[(256, 256)], metavar="SIZE",
                   help="sizes: 256 (square) or 256x448 (height x width)")
    p.add_argument("--warmup", type=bounded("warmup_iterations"), default=5)
    p.add_argument("--iters", type=bounded("iterations"), default=30)
    p.add_argument("--threads", type=bounded("threads"), help="CPU threads for every backend (default: all cores)")
    p.add_argument("--frames", type=Path, nargs="+", help="images for the agreement check (default: sample frame)")
    p.add_argument("--seed", type=bounded("seed"), default=0, help="seed of the random weights and untrained heads")
    p.add_argument("--eval-data", type=Path, metavar="DIR",
                   help="images/ + masks/ to judge each backend's mIoU on (needs a fine-tuned --model DIR)")
    p.add_argument("--eval-size", type=bounded("frames"), help="at most this many --eval-data frames (default: all)")
    p.add_argument("--max-miou-drop", type=bounded("points"), default=0.5,
                   help="mIoU points a backend may lose against eager FP32 and still count as faithful")
    p.add_argument("--calib", type=Path, metavar="FRAMES_DIR",
                   help="frames to calibrate the int8 backends on (not the --eval-data frames)")
    p.add_argument("--calib-size", type=bounded("calib_frames"), default=100, help="int8 calibration frames")
    p.add_argument("--no-roofline", action="store_true",
                   help="skip measuring the machine's matrix-product GFLOP/s (seconds on a busy 2-core machine)")
    p.add_argument("--json", type=output_file, help="write the results here (and a PNG plot beside it)")
    p.add_argument("--plot", type=Path, help="PNG plot path (default: the --json path with .png)")
    p.add_argument("-v", "--verbose", action="store_true", help="log what happens")
    p.set_defaults(func=run)
    return p


def _weights_label(args: argparse.Namespace) -> str:
    if args.no_pretrained:
        return "random (--no-pretrained)"
    if args.weights:
        return str(args.weights)
    return f"as saved in {args.model}" if Path(args.model).is_dir() else "released"


def main(argv: list[str] | None = None) -> int:
    from surgenet.console import run_command

    return run_command(build_parser(), argv)


def run(args: argparse.Namespace) -> int:
    report = run_benchmark(args)
    print_report(report)
    if args.json:
        write_json(args.json, report)
        print(f"wrote {args.json}")
    plot = args.plot or (args.json.with_suffix(".png") if args.json else None)
    if plot and report["results"]:
        plot_results(report["results"], plot, f"{report['model']['name']} {report['model']['task']}")
        print(f"wrote {plot}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
