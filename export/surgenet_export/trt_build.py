"""ONNX -> TensorRT engine with the TensorRT Python API, checked against PyTorch.

FP16 takes one of two routes, chosen from what the installed TensorRT offers:

* TensorRT 10 (``BuilderFlag.FP16`` exists): a weakly typed network with the FP16 flag; the
  normalisation and reduction layers are pinned to FP32 (precision, output type and
  ``OBEY_PRECISION_CONSTRAINTS``), because their sums of squares overflow FP16.
* TensorRT 11 (no precision flags) or ``strongly_typed=True``: the ONNX graph is converted to
  FP16 with those ops kept in FP32 (:mod:`.fp16`), and parsed into a strongly typed network.

Not verified on a GPU in this repository's CI (it has none): the GPU-only tests run this path
where CUDA and TensorRT are present.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping, Sequence

from ._cuda import import_tensorrt
from .errors import ExportError, ParityError
from .fp16 import convert_to_fp16
from .graph import GraphSpec
from .metadata import read_onnx_config, sidecar_path, write_bytes, write_json
from .validate import Tolerance, check_parity

logger = logging.getLogger(__name__)

Shape = tuple[int, ...]
# TF32 convolutions (TensorRT's FP32 default on Ampere and later) keep ~3 decimal digits.
TRT_FP32_TOLERANCE = Tolerance(atol=1e-3, rtol=1e-2, min_argmax_agreement=0.99)
TRT_FP16_TOLERANCE = Tolerance(atol=2e-2, rtol=3e-2, min_argmax_agreement=0.98)


@dataclass(frozen=True)
class Profile:
    """min/opt/max shapes of every input, the optimisation profile of the engine."""

    shapes: dict[str, tuple[Shape, Shape, Shape]]

    def to_dict(self) -> dict[str, Any]:
        return {name: {"min": list(a), "opt": list(b), "max": list(c)} for name, (a, b, c) in self.shapes.items()}


def make_profile(config: Mapping[str, Any], batch: int, imgsz: Sequence[int], dynamic: bool,
                 max_batch: int | None = None, min_imgsz: Sequence[int] | None = None,
                 max_imgsz: Sequence[int] | None = None) -> Profile:
    """The profile for an export: fixed shapes, or with ``dynamic`` batch 1..max_batch and sizes
    min_imgsz..max_imgsz (defaults: half and twice ``imgsz``, on the model's size multiple)."""
    h, w = int(imgsz[0]), int(imgsz[1])
    image_opt = (batch, 3, h, w)
    if dynamic:
        m = max(1, int(config.get("size_multiple", 1)))
        lo = tuple(min_imgsz) if min_imgsz else (max(m, h // 2 // m * m), max(m, w // 2 // m * m))
        hi = tuple(max_imgsz) if max_imgsz else (2 * h, 2 * w)
        mb = int(max_batch or max(2 * batch, 8))
        if not (lo[0] <= h <= hi[0] and lo[1] <= w <= hi[1] and 1 <= batch <= mb):
            raise ExportError(f"the optimisation profile must contain the export shape: batch 1..{mb} around {batch}, "
                              f"sizes {lo}..{hi} around {(h, w)}.")
        image = ((1, 3, *lo), image_opt, (mb, 3, *hi))
        batches = (1, batch, mb)
    else:
        image = (image_opt, image_opt, image_opt)
        batches = (batch, batch, batch)
    shapes: dict[str, tuple[Shape, Shape, Shape]] = {"input": image}
    for name, shape, axis in zip(config.get("state_names", []), config.get("state_shapes", []),
                                 config.get("state_batch_axes", [])):
        per = []
        for b in batches:
            s = list(shape)
            s[axis] = b
            per.append(tuple(s))
        shapes[name] = tuple(per)  # type: ignore[assignment]
    return Profile(shapes)


def build_engine(onnx_path: str | Path, engine_path: str | Path | None = None, *, profile: Profile,
                 fp16: bool = True, workspace_gib: float = 4.0, timing_cache: str | Path | None = None,
                 strongly_typed: bool | None = None, spec: GraphSpec | None = None,
                 parity_shapes: Sequence[tuple[int, int, int]] = (), tolerance: Tolerance | None = None,
                 raise_on_mismatch: bool = True) -> dict[str, Any]:
    """Build a TensorRT plan from ``onnx_path``; with ``spec``, check it against PyTorch.

    Returns the sidecar report (also written to ``engine_path.json``). Raises
    :class:`BackendUnavailableError` without CUDA or TensorRT, :class:`ExportError` when the
    build fails, :class:`ParityError` when the engine is over tolerance.
    """
    trt = import_tensorrt()
    import torch

    onnx_path = Path(onnx_path)
    engine_path = Path(engine_path) if engine_path else onnx_path.with_suffix(".engine")
    cache_path = Path(timing_cache) if timing_cache else engine_path.with_name("timing.cache")
    has_fp16_flag = hasattr(trt.BuilderFlag, "FP16")
    typed = (not has_fp16_flag) if strongly_typed is None else bool(strongly_typed)
    source = convert_to_fp16(onnx_path) if (fp16 and typed) else onnx_path

    trt_logger = trt.Logger(trt.Logger.WARNING)
    builder = trt.Builder(trt_logger)
    flags = 0
    if typed and hasattr(trt.NetworkDefinitionCreationFlag, "STRONGLY_TYPED"):
        flags |= 1 << int(trt.NetworkDefinitionCreationFlag.STRONGLY_TYPED)
    network = builder.create_network(flags)
    parser = trt.OnnxParser(network, trt_logger)
    if not parser.parse_from_file(str(source)):
        errors = "\n".join(f"  {parser.get_error(i)}" for i in range(parser.num_errors))
        raise ExportError(f"TensorRT {trt.__version__} cannot parse {source}:\n{errors}")

    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, int(workspace_gib * (1 << 30)))
    opt_profile = builder.create_optimization_profile()
    for i in range(network.num_inputs):
        name = network.get_input(i).name
        if name not in profile.shapes:
            raise ExportError(f"the optimisation profile has no shapes for input {name!r}.")
        opt_profile.set_shape(name, *profile.shapes[name])
    config.add_optimization_profile(opt_profile)
    pinned = 0
    if fp16 and not typed:
        config.set_flag(trt.BuilderFlag.FP16)
        pinned = _pin_norms_fp32(trt, network, config)
    cache = config.create_timing_cache(cache_path.read_bytes() if cache_path.is_file() else b"")
    config.set_timing_cache(cache, ignore_mismatch=False)

    start = time.perf_counter()
    plan = builder.build_serialized_network(network, config)
    build_s = time.perf_counter() - start
    if plan is None:
        raise ExportError("TensorRT could not build the engine (see the TensorRT messages above); try a larger "
                          "--workspace or a narrower profile.")
    write_bytes(engine_path, bytes(plan))
    write_bytes(cache_path, bytes(config.get_timing_cache().serialize()))

    model_config = read_onnx_config(onnx_path)
    precision = "fp16-strongly-typed" if (fp16 and typed) else ("fp16" if fp16 else "fp32")
    tolerance = tolerance or (TRT_FP16_TOLERANCE if fp16 else TRT_FP32_TOLERANCE)
    report: dict[str, Any] = {
        "artifact": engine_path.name,
        "format": "tensorrt-plan",
        "config": model_config,
        "tensorrt": {
            "version": trt.__version__, "gpu": torch.cuda.get_device_name(), "compute_capability":
            list(torch.cuda.get_device_capability()), "cuda": torch.version.cuda, "precision": precision,
            "strongly_typed": typed, "layers_pinned_fp32": pinned, "workspace_gib": workspace_gib,
            "profile": profile.to_dict(), "timing_cache": cache_path.name, "build_seconds": round(build_s, 1),
            "onnx": onnx_path.name, "parsed": Path(source).name,
        },
    }
    if spec is not None and parity_shapes:
        from .runners.trt_runner import TensorRTRunner

        runner = TensorRTRunner(engine_path, config=model_config)
        report["parity"] = check_parity(spec, runner.run, parity_shapes, tolerance)
        runner.close()
    write_json(sidecar_path(engine_path), report)
    if raise_on_mismatch and not report.get("parity", {"passed": True})["passed"]:
        raise ParityError(f"the TensorRT engine {engine_path} does not match PyTorch within {tolerance.to_dict()}; "
                          f"see {sidecar_path(engine_path)}.")
    return report


def _pin_norms_fp32(trt, network, config) -> int:
    """Keep normalisation and reduction layers in FP32 in a weakly typed FP16 build."""
    kinds = {trt.LayerType.NORMALIZATION, trt.LayerType.REDUCE}
    count = 0
    for i in range(network.num_layers):
        layer = network.get_layer(i)
        if layer.type not in kinds:
            continue
        layer.precision = trt.float32
        for j in range(layer.num_outputs):
            layer.set_output_type(j, trt.float32)
        count += 1
    if count:
        flag = getattr(trt.BuilderFlag, "OBEY_PRECISION_CONSTRAINTS", None) or getattr(
            trt.BuilderFlag, "PREFER_PRECISION_CONSTRAINTS", None)
        if flag is not None:
            config.set_flag(flag)
    return count
