"""Resolution as a choice with its price: speed and mIoU on real frames per input size and backend.

    python benchmarks/resolution.py --model runs/seg/best --data DATA/endoscapes/val \\
        --sizes 192 224 256 256x448 --json out/resolution.json --out out/resolution.md
    python benchmarks/resolution.py --model surgenet-caformer --no-pretrained --num-classes 7 \\
        --data DATA/endoscapes/val --frames 4 --sizes 64 64x96 --iters 3 --warmup 1   # a smoke run

For each size (``256`` square, ``256x448`` height x width) the model is exported to ONNX at that
size (a static graph, as ``surgenet-export --imgsz`` writes for a deployment at one size; int8 is
calibrated at that size) and every backend (the registry's names, as ``surgenet predict --backend``
takes them) segments every frame of ``--data`` (images/ + masks/, an Endoscapes split folder)
resized to it, by the Predictor's own pre- and post-processing: the frame resized bilinearly and
normalised, the logits resized bilinearly back to the frame's own size, then the argmax. The mIoU
is that of :mod:`surgenet.evaluation.metrics` over one confusion matrix of all frames (mask values
outside the model's classes, 255 and the undocumented 7, are ignored); ``delta`` is the mIoU
difference in points against PyTorch eager FP32 at the reference size (``--reference-size``,
default 256 when it is benchmarked). Speed is batch 1, numpy in and numpy out (the runner's call;
reading, resizing and the full-size argmax are not in it): ``--warmup`` calls, then the median and
p90 of ``--iters`` calls cycling through the real frames; fps = 1000 / median. GFLOP per frame at
each size is counted by :func:`surgenet.runtime.measure.gflops_per_frame`.

Default backends: PyTorch eager FP32 (always run: the reference), ONNX Runtime CPU, OpenVINO FP32,
OpenVINO bf16 where the CPU computes bf16 natively (AVX512-BF16 or AMX; the registry decides), and
the OpenVINO int8 backends only with ``--calib FRAMES_DIR`` (frames other than ``--data``'s).
Each ONNX Runtime or OpenVINO row is measured in a fresh child process (the files are built once
here), so a runtime that dies is one ``unavailable`` line, not the end of the table (OpenVINO 2026.4
segfaults at 224x224 under ``ONEDNN_MAX_CPU_ISA=AVX2``, even alone in its process), and no runtime
shares threads or oneDNN with eager PyTorch; ``--in-process`` measures everything here. Under an
ISA cap the rows of runtimes that ignore it (ONNX Runtime: kernels chosen from CPUID) are marked †.
The CPU, its features and the load average before and after are printed with the table: CPU
timings on a busy machine are slow and noisy, eager PyTorch most of all: after each of its operators
(about 2,200 per frame for SurgeNetXL CAFormer) its OpenMP threads spin-wait for each other, and a
spinning thread burns the time slice a descheduled one needs (several times slower on 2 busy cores;
``OMP_WAIT_POLICY=PASSIVE`` avoids it there: ``surgenet.runtime.measure.OMP_HINT``).
"""

from __future__ import annotations

import argparse
import itertools
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from surgenet.console import CommandParser
from surgenet.console.checks import output_file
from surgenet.bounds import bounded
from surgenet.exceptions import InputError
from surgenet.runtime import registry
from surgenet.runtime.auto import IGNORE_ISA_CAP
from surgenet.runtime.cpu import cpu_has_native_bf16, cpu_label, isa_limit
from surgenet.runtime.isolated import call_in_child
from surgenet.runtime.measure import (CALIB_HINT, Unavailable, gflops_per_frame, latency_stats,
                                      load_average, machine_info, markdown_table, open_benchmark_runner, parse_size,
                                      time_calls, warn_if_busy, write_json)

REFERENCE = registry.REFERENCE  # eager FP32: every mIoU is compared with its mIoU at the reference size
DEFAULT_SIZES = [(192, 192), (224, 224), (256, 256), (256, 448)]
INT8 = [n for n, b in registry.BACKENDS.items() if b.artefact == "openvino-ir"]


def size_label(hw: tuple[int, int]) -> str:
    return f"{hw[0]}x{hw[1]}"


def default_backends(calib: Path | None) -> list[str]:
    """Eager FP32 and the fastest CPU backends of this machine: bf16 only with native bf16, int8 only
    with calibration frames."""
    names = [REFERENCE, "onnxruntime-cpu", "openvino-f32"]
    if cpu_has_native_bf16():
        names.append("openvino-bf16")
    if calib is not None:
        names += [n for n in INT8 if n == "openvino-int8" or cpu_has_native_bf16()]
    return names


def check_backends(args: argparse.Namespace) -> list[str]:
    """The backends to run, reference first; a user mistake is an :class:`InputError` (exit 2)."""
    if args.calib is not None and not args.calib.is_dir():
        raise InputError(f"--calib {args.calib} is not a folder; pass {CALIB_HINT.removeprefix('needs ')}.")
    if not args.backends:
        names = default_backends(args.calib)
    else:
        unknown = [n for n in args.backends if n not in registry.BACKENDS and n not in registry.ALIASES]
        if unknown:
            raise InputError(f"unknown backends {', '.join(unknown)}; valid: {', '.join(registry.BACKENDS)}.")
        names = [registry.get_backend(n).name for n in args.backends]
        asked_int8 = [n for n in names if n in INT8]
        if asked_int8 and args.calib is None:
            raise InputError(f"--backends {' '.join(asked_int8)} {CALIB_HINT}; or drop them from --backends.")
    return list(dict.fromkeys([REFERENCE, *names]))


def check_sizes(sizes: list[tuple[int, int]], multiple: int, model_name: str) -> None:
    """Every size a multiple of the model's ``size_multiple``: at other sizes the model pads inside
    and the benchmark would time the padded size, not the one it names."""
    for h, w in sizes:
        bad = [v for v in (h, w) if v % multiple]
        if bad:
            v = bad[0]
            lo, hi = max(multiple, v // multiple * multiple), (v // multiple + 1) * multiple
            raise InputError(f"--sizes {h}x{w}: {v} is not a multiple of {multiple}, which {model_name} needs "
                             f"(it would pad to the next multiple inside); use {lo} or {hi}.")


def load_frames(pairs: tuple[list[Path], list[Path]], num_classes: int) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """The RGB frames and their masks, mask values outside the classes set to 255 (ignored)."""
    from surgenet.io.images import read_image
    from surgenet_export.fidelity import IGNORE, read_mask

    images, masks = [], []
    for image, mask in zip(*pairs):
        rgb, target = read_image(image), read_mask(mask)
        if target.shape != rgb.shape[:2]:
            raise InputError(f"{mask} is {target.shape[1]}x{target.shape[0]}, its frame {image} "
                             f"{rgb.shape[1]}x{rgb.shape[0]}; a mask labels every pixel of its frame.")
        images.append(rgb)
        masks.append(np.where(target < num_classes, target, IGNORE).astype(np.uint8))
    return images, masks


def frame_labels(logits: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """Labels at the frame's size from one output (1, C, h, w): the Predictor's resize-then-argmax."""
    import torch

    from surgenet.postprocess import segmentation_labels

    return segmentation_labels(torch.from_numpy(np.asarray(logits, dtype=np.float32)[0]), shape)


def score(runner: Any, inputs: list[np.ndarray], masks: list[np.ndarray], num_classes: int,
          progress: Any = None) -> dict[str, Any]:
    """mIoU and per-class IoU of one runner over all frames, one confusion matrix."""
    from surgenet.evaluation.metrics import confusion_matrix, segmentation_metrics_from_confusion
    from surgenet_export.fidelity import IGNORE

    cm = np.zeros((num_classes, num_classes), np.int64)
    for x, mask in zip(inputs, masks):
        cm += confusion_matrix(frame_labels(runner(x), mask.shape), mask, num_classes, ignore_index=IGNORE)
        if progress is not None:
            progress.update(1)
    scores = segmentation_metrics_from_confusion(cm)
    return {"miou": float(scores["mean_iou"]),
            "per_class_iou": [None if np.isnan(v) else float(v) for v in scores["iou"]]}


def measure_runner(runner: Any, inputs: list[np.ndarray], masks: list[np.ndarray], num_classes: int,
                   warmup: int, iters: int, device: str, label: str, no_progress: bool) -> dict[str, Any]:
    """The first call (OpenVINO compiles for the shape there), ``iters`` timed calls after ``warmup``
    cycling through the real frames, then the mIoU over every frame."""
    from tqdm.auto import tqdm

    sync = None
    if device == "cuda":
        import torch

        sync = torch.cuda.synchronize
    start = time.perf_counter()
    runner(inputs[0])
    first_ms = (time.perf_counter() - start) * 1e3
    calls = itertools.count()
    times = time_calls(lambda: runner(inputs[next(calls) % len(inputs)]), warmup, iters, sync)
    with tqdm(total=len(inputs), desc=label, unit="frame", leave=False, file=sys.stderr, disable=no_progress) as bar:
        quality = score(runner, inputs, masks, num_classes, bar)
    return {"times": times, "first_call_ms": first_ms, "quality": quality}


def measure_in_child(name: str, artefact: str, threads: int | None, frames_file: str, num_classes: int,
                     warmup: int, iters: int, label: str, no_progress: bool) -> dict[str, Any]:
    """:func:`measure_runner` for one file backend, run by :func:`~surgenet.runtime.isolated.call_in_child`
    in a fresh process: a crash there loses this row only, and no eager PyTorch ran there to share
    its threads or oneDNN with the backend."""
    with np.load(frames_file, allow_pickle=False) as data:
        count = sum(1 for k in data.files if k.startswith("x"))
        inputs = [data[f"x{i}"] for i in range(count)]
        masks = [data[f"m{i}"] for i in range(count)]
    backend = registry.get_backend(name)
    runner = registry.open_runner(backend, Path(artefact), threads=threads, shape_per_batch=True)
    try:
        return measure_runner(runner, inputs, masks, num_classes, warmup, iters, backend.device,
                              f"{label} {name}", no_progress)
    finally:
        getattr(runner, "close", lambda: None)()


def run_benchmark(args: argparse.Namespace) -> dict[str, Any]:
    import torch
    from tqdm.auto import tqdm

    import surgenet
    from surgenet.transforms import ImageTransform
    from surgenet_export.artefacts import BackendArtefacts
    from surgenet_export.fidelity import eval_pairs

    names = check_backends(args)
    pairs = eval_pairs(args.data)
    if args.frames:
        pairs = (pairs[0][:args.frames], pairs[1][:args.frames])
    sizes = list(dict.fromkeys(args.sizes))
    reference_size = args.reference_size or ((256, 256) if (256, 256) in sizes else sizes[0])
    if reference_size not in sizes:
        raise InputError(f"--reference-size {size_label(reference_size)} is not one of --sizes "
                         f"{' '.join(size_label(s) for s in sizes)}.")
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)  # random weights (a smoke run) are the same draw in every run
    trained = Path(args.model).is_dir() and not args.no_pretrained
    model = surgenet.load_model(args.model, task=None if Path(args.model).is_dir() else "segmentation",
                                num_classes=args.num_classes, pretrained=not args.no_pretrained).eval()
    config = dict(model.config)
    if config["task"] != "segmentation":
        raise InputError(f"{args.model} is a {config['task']} model; this benchmark scores segmentation models.")
    num_classes = int(config["num_classes"])
    check_sizes(sizes, int(getattr(model, "size_multiple", 1)), args.model)
    images, masks = load_frames(pairs, num_classes)
    load_before = warn_if_busy()
    rows: list[dict[str, Any]] = []
    unavailable: dict[str, str] = {}
    notes: dict[str, Any] = {}
    torch_runners: dict[str, Any] = {}  # PyTorch runs every size: opened once
    steps = tqdm(total=len(sizes) * len(names), desc="resolution", unit="run", file=sys.stderr,
                 disable=args.no_progress)
    # The ONNX and int8 files are scratch: removed when the benchmark ends, whatever happens.
    with tempfile.TemporaryDirectory(prefix="surgenet-resolution-") as scratch:
        for hw in sizes:
            label = size_label(hw)
            transform = ImageTransform(hw, config["mean"], config["std"])  # the Predictor's preprocessing
            inputs = [np.ascontiguousarray(transform(rgb).numpy()[None], dtype=np.float32) for rgb in images]
            gflops = gflops_per_frame(model, hw)
            workdir = Path(scratch) / label
            workdir.mkdir()
            artefacts = BackendArtefacts(model, config, workdir, [1], [hw], args.threads, args.calib,
                                         args.calib_size, dynamic=False)
            frames_file = workdir / "frames.npz"  # what a child process reads: written for the first child
            for name in names:
                backend = registry.BACKENDS[name]
                steps.set_postfix_str(f"{label} {name}")
                try:
                    if backend.artefact == "model":  # PyTorch runs every size in this process: opened once
                        if name not in torch_runners:
                            torch_runners[name] = open_benchmark_runner(name, artefacts)
                        measured = measure_runner(torch_runners[name], inputs, masks, num_classes, args.warmup,
                                                  args.iters, backend.device, label, args.no_progress)
                    elif args.in_process:
                        runner = open_benchmark_runner(name, artefacts)
                        try:
                            measured = measure_runner(runner, inputs, masks, num_classes, args.warmup, args.iters,
                                                      backend.device, label, args.no_progress)
                        finally:
                            getattr(runner, "close", lambda: None)()  # OpenVINO frees its compiled shapes
                    else:
                        why = registry.unavailable_reason(backend)
                        if why:
                            raise Unavailable(why)
                        artefact = artefacts.artefact(backend.artefact)  # built here, once, for every child
                        if not frames_file.exists():
                            np.savez(frames_file, **{f"x{i}": x for i, x in enumerate(inputs)},
                                     **{f"m{i}": m for i, m in enumerate(masks)})
                        measured = call_in_child(__file__, "measure_in_child", name=name, artefact=str(artefact),
                                                 threads=args.threads, frames_file=str(frames_file),
                                                 num_classes=num_classes, warmup=args.warmup, iters=args.iters,
                                                 label=label, no_progress=args.no_progress)
                except Unavailable as exc:
                    unavailable.setdefault(name, str(exc))
                    continue
                except Exception as exc:  # one backend failing at one size is reported, not fatal to the others
                    unavailable[f"{name} @ {label}"] = f"{type(exc).__name__}: {exc}"
                    continue
                finally:
                    steps.update(1)
                times, first_ms, quality = measured["times"], measured["first_call_ms"], measured["quality"]
                rows.append({"size": list(hw), "size_label": label, "backend": name, "precision": backend.precision,
                             "device": backend.device, "batch": 1, "gflops_per_frame": gflops,
                             **latency_stats(times, 1), "first_call_ms": first_ms, "timed_calls": len(times),
                             "process": "this" if backend.artefact == "model" or args.in_process else "child",
                             # ONNX Runtime picks its kernels from CPUID: under a cap its row is this CPU's full ISA
                             "ignores_isa_cap": bool(isa_limit()) and backend.runtime in IGNORE_ISA_CAP,
                             **quality})
            if artefacts.notes:
                notes[label] = dict(artefacts.notes)
        steps.close()
    reference = next((r for r in rows if r["backend"] == REFERENCE and tuple(r["size"]) == reference_size), None)
    for r in rows:
        r["miou_delta"] = None if reference is None else 100.0 * (r["miou"] - reference["miou"])
    load_after = load_average()
    machine = machine_info()
    machine.update(cpu_label=cpu_label(), load_average_before=load_before, load_average_after=load_after)
    return {
        "machine": machine,
        "model": {"name": args.model, "task": "segmentation", "num_classes": num_classes,
                  "weights": "random (--no-pretrained)" if args.no_pretrained else (
                      f"as saved in {args.model}" if Path(args.model).is_dir() else "released backbone, random head"),
                  "trained": trained, "size_multiple": int(getattr(model, "size_multiple", 1))},
        "data": {"folder": str(args.data), "frames": len(images), "ignore_index": 255,
                 "frame_sizes": sorted({f"{m.shape[0]}x{m.shape[1]}" for m in masks})},
        "settings": {"sizes": [list(s) for s in sizes], "backends": names, "warmup": args.warmup,
                     "iters": args.iters, "threads": args.threads or torch.get_num_threads(), "seed": args.seed,
                     "reference": {"backend": REFERENCE, "size": list(reference_size),
                                   "miou": reference["miou"] if reference else None},
                     "int8": ("run" if any(n in INT8 for n in names) else
                              "not run: not among --backends" if args.calib else f"not run: {CALIB_HINT}"),
                     "notes": notes},
        "results": rows,
        "unavailable": [{"backend": k, "reason": v} for k, v in unavailable.items()],
    }


def report_lines(report: dict[str, Any]) -> list[str]:
    """The report as printed: a header, the table, the machine line, what did not run."""
    m, model, data, settings = report["machine"], report["model"], report["data"], report["settings"]
    ref = settings["reference"]
    lines = [f"{model['name']} segmentation, {model['num_classes']} classes ({model['weights']}); "
             f"{data['frames']} frames of {data['folder']} ({', '.join(data['frame_sizes'])}); batch 1, "
             f"{settings['warmup']} warm-up + {settings['iters']} timed calls, {settings['threads']} threads"]
    if not model["trained"]:
        lines.append("random weights: the mIoU column checks the mechanics, it says nothing about quality")
    lines.append("")
    headers = ["size", "backend", "GFLOP", "median ms", "p90 ms", "fps", "mIoU",
               f"ΔmIoU vs FP32 @ {ref['size'][0]}x{ref['size'][1]} (points)"]
    rows = [[r["size_label"], r["backend"] + (" †" if r.get("ignores_isa_cap") else ""), f"{r['gflops_per_frame']:.2f}", f"{r['median_ms']:.1f}",
             f"{r['p90_ms']:.1f}", f"{r['fps']:.1f}", f"{100 * r['miou']:.2f} %",
             "-" if r["miou_delta"] is None else f"{r['miou_delta']:+.2f}"] for r in report["results"]]
    lines += [markdown_table(headers, rows), ""]
    before, after = m.get("load_average_before"), m.get("load_average_after")
    load = (f"load average {before:.2f} before, {after:.2f} after on {m['logical_cpus']} CPUs"
            if before is not None and after is not None else "load average unknown")
    omp = f"OMP_WAIT_POLICY={m['omp_wait_policy']}" if m.get("omp_wait_policy") else "OMP_WAIT_POLICY unset"
    lines.append(f"CPU: {m['cpu_label']}; {load}; {omp}" + (f"; GPU {m['gpu']}" if m.get("gpu") else ""))
    if any(r.get("ignores_isa_cap") for r in report["results"]):
        lines.append("† ignores ONEDNN_MAX_CPU_ISA (its kernels follow CPUID): this CPU's full ISA, not the capped one's")
    if settings["int8"] != "run":
        lines.append(f"int8 (openvino-int8, openvino-int8-bf16) {settings['int8']}")
    lines += [f"unavailable: {u['backend']}: {u['reason']}" for u in report["unavailable"]]
    return lines


def build_parser() -> argparse.ArgumentParser:
    p = CommandParser(prog="resolution.py", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", required=True, help="a fine-tuned segmentation model folder (save_pretrained), or a "
                                                  "zoo name with --no-pretrained --num-classes for a smoke run")
    p.add_argument("--num-classes", type=bounded("num_classes"), help="classes of a zoo-name model (a folder knows its own)")
    p.add_argument("--no-pretrained", action="store_true", help="random weights (no download)")
    p.add_argument("--data", required=True, type=Path, metavar="DIR",
                   help="images/*.jpg + masks/<stem>.png (class ids, 255 = ignore): an Endoscapes split folder")
    p.add_argument("--frames", type=bounded("frames"), help="at most this many frames of --data (default: all)")
    p.add_argument("--sizes", type=parse_size, nargs="+", default=DEFAULT_SIZES, metavar="SIZE",
                   help="input sizes: 256 (square) or 256x448 (height x width); default 192 224 256 256x448")
    p.add_argument("--reference-size", type=parse_size, metavar="SIZE",
                   help="the size of the eager FP32 row every ΔmIoU is taken against (default 256 if benchmarked, "
                        "else the first size)")
    p.add_argument("--backends", nargs="+", metavar="NAME",
                   help=f"registry names (default: {REFERENCE}, onnxruntime-cpu, openvino-f32, openvino-bf16 with "
                        f"native bf16, int8 with --calib); any of: {', '.join(registry.BACKENDS)}")
    p.add_argument("--calib", type=Path, metavar="FRAMES_DIR",
                   help="frames to calibrate the int8 backends on, at each size (not the --data frames)")
    p.add_argument("--calib-size", type=bounded("calib_frames"), default=100, help="int8 calibration frames")
    p.add_argument("--warmup", type=bounded("warmup_iterations"), default=5, help="untimed calls before the timed ones")
    p.add_argument("--iters", type=bounded("iterations"), default=30, help="timed calls, cycling through the frames")
    p.add_argument("--threads", type=bounded("threads"), help="CPU threads of every backend (default: all cores)")
    p.add_argument("--seed", type=bounded("seed"), default=0, help="seed of random weights")
    p.add_argument("--json", type=output_file, help="write the results here")
    p.add_argument("--out", type=output_file, help="write the printed report (markdown) here")
    p.add_argument("--in-process", action="store_true",
                   help="run the ONNX Runtime and OpenVINO backends in this process too (default: each backend at "
                        "each size in a fresh child process, away from eager PyTorch's oneDNN and threads)")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    p.add_argument("-v", "--verbose", action="store_true", help="log what happens")
    p.set_defaults(func=run)
    return p


def run(args: argparse.Namespace) -> int:
    if not args.data.is_dir():
        raise InputError(f"--data {args.data} is not a folder; pass a split folder with images/ and masks/, "
                         "such as DATA/endoscapes/val.")
    report = run_benchmark(args)
    text = "\n".join(report_lines(report))
    print(text)
    if args.json:
        write_json(args.json, report)
        print(f"wrote {args.json}")
    if args.out:
        from surgenet.io.atomic import atomic_write_text

        atomic_write_text(args.out, text + "\n")
        print(f"wrote {args.out}")
    return 0


def main(argv: list[str] | None = None) -> int:
    from surgenet.console import run_command

    return run_command(build_parser(), argv)


if __name__ == "__main__":
    sys.exit(main())
