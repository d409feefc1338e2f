"""Post-training int8 for OpenVINO on CPU, calibrated with NNCF on real surgical frames.

The FP32 ONNX export is read by OpenVINO and quantised by ``nncf.quantize`` (the standard tool:
statistics of each activation over the calibration frames, then bias correction). Random or
synthetic inputs would give the wrong activation ranges, so calibration takes a folder of real
frames. The result is an OpenVINO IR (``model.int8.xml`` + ``.bin``) whose sidecar records the
calibration set, its size and the accuracy measured against the FP32 graph on frames kept out
of calibration: argmax agreement, logit errors and, when the folder has ``masks/`` beside
``images/``, the mIoU of both.
"""

from __future__ import annotations

import logging
import random
import tempfile
import time
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np

from surgenet.runtime.errors import BackendUnavailableError, ExportError
from .calibration_frames import image_files, load_frames
from surgenet.runtime.metadata import read_onnx_config, sidecar_path, write_bytes, write_json
from .validate import agreement

logger = logging.getLogger(__name__)

DEFAULT_CALIB_SIZE = 100
MAX_EVAL_FRAMES = 32


def require_nncf() -> None:
    """NNCF and OpenVINO, checked before any model is built."""
    for name in ("openvino", "nncf"):
        try:
            __import__(name)
        except ImportError as exc:
            raise BackendUnavailableError(f"int8 export needs {name}, which is not installed: pip install "
                                          "'surgenet[export]'.") from exc


def split_frames(files: Sequence[Path], calib_size: int, seed: int = 0) -> tuple[list[Path], list[Path]]:
    """A seeded random calibration set of ``calib_size`` frames and up to MAX_EVAL_FRAMES others to
    judge the result on; with too few frames for both, all are used for calibration and for the check."""
    if calib_size < 1:
        raise ExportError(f"--calib-size must be at least 1, got {calib_size}.")
    order = list(files)
    random.Random(seed).shuffle(order)
    calib = sorted(order[:calib_size])
    held_out = sorted(order[calib_size:calib_size + MAX_EVAL_FRAMES])
    return calib, held_out


def quantize_int8(onnx_path: str | Path, frames: str | Path, calib_size: int = DEFAULT_CALIB_SIZE,
                  out_path: str | Path | None = None, seed: int = 0, preset: str = "mixed",
                  max_miou_drop: float | None = None) -> dict[str, Any]:
    """Write ``model.int8.xml`` (+ ``.bin`` and ``.json``) beside ``onnx_path``; return the sidecar.

    Args:
        onnx_path: an FP32 ONNX file written by surgenet-export (its config is embedded).
        frames: a folder of frames, or a dataset folder with ``images/`` (and ``masks/``).
        calib_size: calibration frames (NNCF's ``subset_size``); at most the frames there are.
        preset: ``mixed`` (asymmetric activations: GELU and ReLU outputs are one-sided) or
            ``performance`` (symmetric everywhere).
        max_miou_drop: segmentation with masks: NNCF's accuracy-control mode, which measures the
            mIoU on the held-out frames and returns to FP32 the quantised layers that cost most,
            one at a time, until the drop is at most this many points.
    """
    require_nncf()
    import nncf
    import openvino as ov

    onnx_path = Path(onnx_path)
    out = Path(out_path) if out_path else onnx_path.with_name(onnx_path.stem + ".int8.xml")
    config = read_onnx_config(onnx_path)
    if config.get("streaming"):
        raise ExportError("int8 export supports frame models (segmentation, CVS); a phase model's temporal state "
                          "needs calibration over whole videos, which this export does not do.")
    files = image_files(frames)
    calib_files, held_out = split_frames(files, min(calib_size, len(files)), seed)
    hw = config.get("export", {}).get("imgsz") or config["input_size"][1:]
    calib = load_frames(calib_files, hw, config)
    core = ov.Core()
    fp32_model = core.read_model(str(onnx_path))
    input_name = fp32_model.inputs[0].get_any_name()
    presets = {"mixed": nncf.QuantizationPreset.MIXED, "performance": nncf.QuantizationPreset.PERFORMANCE}
    if preset not in presets:
        raise ExportError(f"unknown int8 preset {preset!r}; use {' or '.join(presets)}.")
    calib_data = nncf.Dataset(calib, lambda x: {input_name: x})
    start = time.perf_counter()
    if max_miou_drop is None:
        quantized = nncf.quantize(fp32_model, calib_data, preset=presets[preset], subset_size=len(calib))
        mode = "post-training quantisation"
    else:
        masks = _mask_files(held_out) if config["task"] == "segmentation" else None
        if not masks:
            raise ExportError("an mIoU limit on int8 needs a segmentation model and a dataset folder for --calib "
                              "(images/ + masks/) with frames left over after calibration; lower --calib-size or "
                              "leave the limit out.")
        pairs = list(zip(load_frames(held_out, hw, config), masks))
        num_classes = int(config["num_classes"])

        def validate(compiled, items) -> tuple[float, None]:
            from .fidelity import miou_against_masks

            items = list(items)
            preds = [np.asarray(compiled({input_name: x})[0])[0].argmax(0) for x, _ in items]
            return miou_against_masks(preds, [m for _, m in items], num_classes)["miou"], None

        quantized = nncf.quantize_with_accuracy_control(
            fp32_model, calib_data, nncf.Dataset(pairs), validate, max_drop=max_miou_drop / 100.0,
            drop_type=nncf.DropType.ABSOLUTE, preset=presets[preset], subset_size=len(calib))
        mode = f"accuracy control: mIoU drop at most {max_miou_drop:g} points on {len(pairs)} held-out frames"
    seconds = time.perf_counter() - start
    quantizers = sum(op.get_type_name() == "FakeQuantize" for op in quantized.get_ops())
    with tempfile.TemporaryDirectory(dir=out.parent, prefix=".int8-") as tmp:
        ov.save_model(quantized, str(Path(tmp) / "m.xml"), compress_to_fp16=False)
        write_bytes(out.with_suffix(".bin"), (Path(tmp) / "m.bin").read_bytes())  # the weights, then the entry
        write_bytes(out, (Path(tmp) / "m.xml").read_bytes())

    check_files = held_out or calib_files
    check = _accuracy_vs_fp32(core, onnx_path, out, check_files, hw, config)
    check["frames_source"] = "held out from calibration" if held_out else "the calibration frames (no others left)"
    report = {
        "artifact": out.name,
        "format": "openvino-ir-int8",
        "config": config,
        "int8": {
            "tool": f"nncf {nncf.__version__}, openvino {ov.__version__}", "preset": preset, "mode": mode,
            "fake_quantize_ops": quantizers, "source": onnx_path.name, "quantize_seconds": round(seconds, 1),
            "calibration": {"folder": str(Path(frames).expanduser().resolve()), "size": len(calib_files),
                            "available": len(files), "seed": seed, "imgsz": list(hw),
                            "files": [f.name for f in calib_files]},
            "accuracy_vs_fp32": check,
        },
    }
    write_json(sidecar_path(out), report)
    return report


def _accuracy_vs_fp32(core, onnx_path: Path, int8_path: Path, files: Sequence[Path], hw: Sequence[int],
                      config: Mapping[str, Any]) -> dict[str, Any]:
    """Both graphs on the same frames, in OpenVINO at f32 inference precision (so the difference is
    the quantisation alone): argmax agreement, logit errors, and mIoU where masks exist."""
    task = config["task"]
    props = {"INFERENCE_PRECISION_HINT": "f32"}
    fp32 = core.compile_model(core.read_model(str(onnx_path)), "CPU", props)
    int8 = core.compile_model(core.read_model(str(int8_path)), "CPU", props)
    masks = _mask_files(files) if task == "segmentation" else None
    agree, mean_err, max_err = [], [], 0.0
    preds: dict[str, list[np.ndarray]] = {"fp32": [], "int8": []}
    for x in load_frames(files, hw, config):
        ref = np.asarray(fp32(x)[0], np.float32)
        out = np.asarray(int8(x)[0], np.float32)
        agree.append(agreement(ref, out, task))
        diff = np.abs(out - ref)
        mean_err.append(float(diff.mean()))
        max_err = max(max_err, float(diff.max()))
        if masks:
            preds["fp32"].append(ref[0].argmax(0))
            preds["int8"].append(out[0].argmax(0))
    result: dict[str, Any] = {"frames": len(files), "argmax_agreement": float(np.mean(agree)),
                              "mean_abs_err": float(np.mean(mean_err)), "max_abs_err": max_err,
                              "precision": "OpenVINO CPU, f32 inference precision for both"}
    if masks:
        from .fidelity import miou_against_masks

        scores = {k: miou_against_masks(v, masks, int(config["num_classes"])) for k, v in preds.items()}
        result.update(miou_fp32=scores["fp32"]["miou"], miou_int8=scores["int8"]["miou"],
                      miou_drop=100.0 * (scores["fp32"]["miou"] - scores["int8"]["miou"]))
    return result


def _mask_files(files: Sequence[Path]) -> list[Path] | None:
    """``masks/<stem>.png`` for every image of an ``images/`` folder, or None when any is missing."""
    masks = [f.parent.parent / "masks" / (f.stem + ".png") for f in files]
    return masks if files and files[0].parent.name == "images" and all(m.is_file() for m in masks) else None
