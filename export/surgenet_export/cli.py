"""``surgenet-export``: a SurgeNet task model to a validated ONNX file and a TensorRT engine.

    surgenet-export surgenetxl-caformer --task segmentation --num-classes 13 --dynamic --out export/
    surgenet-export runs/seg/best --task segmentation --trt --fp16 --out export/   # a save_pretrained folder
    surgenet-export runs/seg/best --int8 --calib data/endoscapes/train --out export/

Writes ``model.onnx`` (+ ``model.onnx.json``), with ``--fp16`` also ``model.fp16.onnx``, with
``--int8 --calib FRAMES`` ``model.int8.xml`` (OpenVINO, NNCF-calibrated) and with ``--trt``
``model.engine`` (+ ``model.engine.json``, ``timing.cache``) into ``--out``.
Every artifact is checked against PyTorch; the command fails (exit 2) when one is over tolerance.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from pathlib import Path
from typing import Any, Sequence

from surgenet._version import __version__
from surgenet.console import CommandParser
from surgenet.console.checks import output_folder
from surgenet.bounds import bounded
from surgenet.cli.zoo_flags import check_zoo_flags

from surgenet.exceptions import InputError
from surgenet.tasks import TASKS

from surgenet.runtime.cuda import import_tensorrt
from surgenet.runtime.errors import BackendUnavailableError
from .calibration_frames import image_files
from .int8 import DEFAULT_CALIB_SIZE, require_nncf, split_frames
from .onnx_export import DEFAULT_OPSET, MAX_OPSET, MIN_OPSET

PROG = "surgenet-export"


def build_parser() -> argparse.ArgumentParser:
    p = CommandParser(prog=PROG, description="Export a SurgeNet task model to ONNX and TensorRT, "
                                "validated against PyTorch.")
    p.add_argument("model", metavar="MODEL_OR_DIR", help="a zoo name (surgenet list) or a save_pretrained folder")
    p.add_argument("--task", choices=TASKS,
                   help="task head (required with a zoo name; phase exports the online step)")
    p.add_argument("--num-classes", type=bounded("num_classes"), help="classes (segmentation), phases (phase) or tools (tools)")
    weights = p.add_mutually_exclusive_group()
    weights.add_argument("--weights", type=Path, help="a local checkpoint or folder to load")
    weights.add_argument("--no-pretrained", action="store_true", help="random weights (for testing the pipeline)")
    target = p.add_mutually_exclusive_group()
    target.add_argument("--onnx", action="store_true",
                        help="stop at the ONNX artifacts (the default; refuses --trt, which builds on them)")
    target.add_argument("--trt", action="store_true",
                        help="also build a TensorRT engine from model.onnx (needs an NVIDIA GPU and tensorrt)")
    p.add_argument("--fp16", action="store_true", help="FP16: the engine with --trt; model.fp16.onnx otherwise")
    p.add_argument("--int8", action="store_true",
                   help="also write model.int8.xml: OpenVINO int8 calibrated with NNCF on --calib frames (CPU)")
    p.add_argument("--calib", type=Path, metavar="FRAMES_DIR",
                   help="--int8: real frames to calibrate on (a folder of images, or a dataset folder with images/)")
    p.add_argument("--calib-size", type=bounded("calib_frames"), default=DEFAULT_CALIB_SIZE,
                   help=f"--int8: calibration frames (default {DEFAULT_CALIB_SIZE}); others are kept to check it")
    p.add_argument("--int8-max-drop", type=bounded("points"), metavar="POINTS",
                   help="--int8, segmentation, --calib with masks/: keep the layers that cost most mIoU in FP32 "
                        "until the drop on held-out frames is at most POINTS (NNCF accuracy control; slower)")
    p.add_argument("--batch", type=bounded("batch_size"), default=1, help="export batch (the optimisation profile's opt batch)")
    p.add_argument("--imgsz", type=bounded("image_side"), nargs=2, metavar=("H", "W"), help="export size; default the model's")
    p.add_argument("--dynamic", action="store_true", help="dynamic batch, height and width")
    p.add_argument("--opset", type=bounded("opset"), default=DEFAULT_OPSET, help=f"ONNX opset, {MIN_OPSET} to {MAX_OPSET}")
    exporter = p.add_mutually_exclusive_group()
    exporter.add_argument("--dynamo", dest="dynamo", action="store_true", default=None,
                          help="use the torch.export-based ONNX exporter (default for ViTs)")
    exporter.add_argument("--torchscript", dest="dynamo", action="store_false",
                          help="use the TorchScript-based ONNX exporter (default for CNNs: about 10x faster)")
    p.add_argument("--bake-preprocess", action="store_true",
                   help="the graph takes RGB in 0..1 and applies the model's mean/std itself")
    p.add_argument("--no-simplify", action="store_true", help="skip onnxslim")
    p.add_argument("--max-batch", type=bounded("batch_size"), help="--trt --dynamic: largest batch of the profile (default max(2B, 8))")
    p.add_argument("--min-imgsz", type=bounded("image_side"), nargs=2, metavar=("H", "W"), help="--trt --dynamic: smallest size")
    p.add_argument("--max-imgsz", type=bounded("image_side"), nargs=2, metavar=("H", "W"), help="--trt --dynamic: largest size")
    p.add_argument("--workspace", type=bounded("workspace_gib"), default=4.0, help="TensorRT workspace limit in GiB")
    p.add_argument("--strongly-typed", action="store_true",
                   help="TensorRT 10: use the strongly typed FP16 path (the only one on TensorRT 11)")
    p.add_argument("--out", type=output_folder, required=True, help="output folder")
    p.add_argument("-v", "--verbose", action="store_true", help="log what happens")
    p.add_argument("--version", action="version", version=f"{PROG} {__version__}")
    p.set_defaults(func=run)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    from surgenet.console import run_command

    return run_command(build_parser(), list(argv) if argv is not None else None)


def check_requirements(args: argparse.Namespace) -> None:
    """Everything the export needs that is missing (packages, GPU, frames), said before any model is built."""
    missing = [name for name in ("onnx", "onnxruntime") if not _importable(name)]
    if missing:
        raise BackendUnavailableError(f"surgenet-export needs {' and '.join(missing)}, which is not installed: "
                                      "pip install 'surgenet[export]' (CPU) or 'surgenet[trt]' (NVIDIA GPU).")
    check_zoo_flags(str(args.model), args.task, args.num_classes)
    if args.int8 and args.task == "phase":
        raise InputError("--int8 quantises frame models (segmentation, CVS, tools); a phase model's temporal state "
                         "would need calibration over whole videos. Export it without --int8.")
    if args.int8_max_drop is not None and not args.int8:
        raise InputError("--int8-max-drop goes with --int8 --calib FRAMES_DIR.")
    if args.int8 or args.calib:
        if not (args.int8 and args.calib):
            raise InputError("--int8 and --calib FRAMES_DIR go together: int8 is calibrated on real frames.")
        if args.calib_size < 1:
            raise InputError(f"--calib-size must be at least 1, got {args.calib_size}.")
        require_nncf()
        check_calibration_frames(args.calib, args.calib_size)
    if args.trt:  # the GPU, then the TensorRT package (and a driver recent enough to load it)
        import_tensorrt()


def check_calibration_frames(folder: Path, calib_size: int) -> None:
    """The frames int8 will read (the calibration set and the held-out check), decoded now: a
    broken file is one line before the export, not after it."""
    from surgenet.io.images import read_image

    files = image_files(folder)  # a folder that exists and holds frames
    calib, held_out = split_frames(files, min(calib_size, len(files)))
    for path in [*calib, *held_out]:
        read_image(path)


def _importable(name: str) -> bool:
    try:
        importlib.import_module(name)
    except ImportError:
        return False
    return True


def run(args: argparse.Namespace) -> int:
    check_requirements(args)
    import surgenet

    from .onnx_export import export_onnx
    from .validate import FP16_TOLERANCE, check_parity, parity_shapes

    model = surgenet.load_model(str(args.model), task=args.task, num_classes=args.num_classes,
                                pretrained=not args.no_pretrained, weights=args.weights)
    out: Path = args.out
    out.mkdir(parents=True, exist_ok=True)
    onnx_path = out / "model.onnx"
    print(f"exporting {args.model} ({model.config['task']}) to {onnx_path} ...")
    result = export_onnx(model, onnx_path, batch=args.batch, imgsz=args.imgsz, dynamic=args.dynamic,
                         opset=args.opset, dynamo=args.dynamo, bake_preprocess=args.bake_preprocess,
                         simplify=not args.no_simplify)
    _print_report(onnx_path, result.report)
    hw = result.config["export"]["imgsz"]
    shapes = parity_shapes(args.batch, hw, args.dynamic, result.config["size_multiple"])
    if args.fp16 and not args.trt:
        _export_fp16_onnx(onnx_path, result, shapes, FP16_TOLERANCE, check_parity)
    if args.int8:
        from .int8 import quantize_int8

        print(f"int8: calibrating on up to {args.calib_size} frames of {args.calib} with NNCF ...")
        report = quantize_int8(onnx_path, args.calib, calib_size=args.calib_size, max_miou_drop=args.int8_max_drop)
        _print_int8(out / report["artifact"], report["int8"])
    if args.trt:
        from .trt_build import build_engine, make_profile

        profile = make_profile(result.config, args.batch, hw, args.dynamic, args.max_batch, args.min_imgsz,
                               args.max_imgsz)
        engine_path = out / "model.engine"
        print(f"building the TensorRT engine {engine_path} ({'fp16' if args.fp16 else 'fp32'}) ...")
        report = build_engine(onnx_path, engine_path, profile=profile, fp16=args.fp16, workspace_gib=args.workspace,
                              strongly_typed=True if args.strongly_typed else None, spec=result.spec,
                              parity_shapes=shapes)
        _print_report(engine_path, report)
    print(f"done: {out}")
    return 0


def _export_fp16_onnx(onnx_path: Path, result, shapes, tolerance, check_parity) -> None:
    """model.fp16.onnx (norms in FP32, FP32 inputs/outputs), checked with ONNX Runtime."""
    import onnxruntime as ort

    from surgenet.runtime.errors import ParityError
    from .fp16 import convert_to_fp16
    from surgenet.runtime.metadata import read_json, sidecar_path, write_json

    path = convert_to_fp16(onnx_path)
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    parity = check_parity(result.spec, lambda feeds: session.run(None, feeds), shapes, tolerance)
    report = {**read_json(result.sidecar), "artifact": path.name, "format": "onnx-fp16", "parity": parity}
    write_json(sidecar_path(path), report)
    _print_report(path, report)
    if not parity["passed"]:
        raise ParityError(f"{path} is over the FP16 tolerance {parity['tolerance']}; see {sidecar_path(path)}.")


def _print_int8(path: Path, facts: dict[str, Any]) -> None:
    check = facts["accuracy_vs_fp32"]
    line = (f"  {path}: {facts['calibration']['size']} calibration frames; against FP32 on {check['frames']} frames "
            f"({check['frames_source']}): agreement {100 * check['argmax_agreement']:.2f} %, "
            f"mean abs err {check['mean_abs_err']:.2e}")
    if "miou_drop" in check:
        line += (f", mIoU {100 * check['miou_fp32']:.2f} -> {100 * check['miou_int8']:.2f} "
                 f"({check['miou_drop']:+.2f} points drop)")
    print(line)


def _print_report(path: Path, report: dict[str, Any]) -> None:
    parity = report.get("parity")
    if not parity:
        print(f"  {path}: written (no parity check)")
        return
    print(f"  {path}: {'PASS' if parity['passed'] else 'FAIL'} against PyTorch ({parity['tolerance']})")
    for check in parity["checks"]:
        agree = check.get("argmax_agreement")
        line = f"    shape {check['shape']}: max abs err {check['max_abs_err']:.2e}"
        if agree is not None:
            line += f", agreement {100 * agree:.3f} %"
        if check.get("error"):
            line += f", {check['error']}"
        print(line)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
