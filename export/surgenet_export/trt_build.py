"""ONNX -> TensorRT engine with the TensorRT Python API, checked against PyTorch.

FP16 takes one of two routes, chosen from what the installed TensorRT offers:

* TensorRT 10 (``BuilderFlag.FP16`` exists): a weakly typed network with the FP16 flag; the
  layers that square activations and reduce them (onnx-tensorrt's import of ReduceSumSquare,
  ReduceL2, Pow) are pinned to FP32 (precision, output type and ``OBEY_PRECISION_CONSTRAINTS``),
  because the squares overflow FP16; normalisation layers already compute in FP32.
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

from surgenet.runtime.cuda import create_trt_object, import_tensorrt
from surgenet.runtime.errors import ExportError, ParityError
from .fp16 import convert_to_fp16
from surgenet.runtime.graph import INPUT_NAME, GraphSpec
from surgenet.runtime.metadata import read_onnx_config, sidecar_path, write_bytes, write_json
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

    def clamp(self, shapes: Sequence[tuple[int, int, int]], size_multiple: int = 1) -> list[tuple[int, int, int]]:
        """``(batch, H, W)`` moved inside the image input's min..max, on the size multiple.

        The parity shapes of a dynamic export (batch + 1, about 3/4 of the size) can fall outside
        a profile the user narrowed; checking them there would fail a good engine.
        """
        lo, _, hi = self.shapes[INPUT_NAME]
        m = max(1, int(size_multiple))
        out: list[tuple[int, int, int]] = []
        for shape in shapes:
            fitted = []
            for value, axis in zip(shape, (0, 2, 3)):
                v = min(max(int(value), lo[axis]), hi[axis])
                if axis and m > 1 and v % m:
                    down = v // m * m
                    v = down if down >= lo[axis] else (down + m if down + m <= hi[axis] else lo[axis])
                fitted.append(v)
            item = (fitted[0], fitted[1], fitted[2])
            if item not in out:
                out.append(item)
        return out


def profile_for(config: Mapping[str, Any], batches: tuple[int, int, int],
                sizes: tuple[Sequence[int], Sequence[int], Sequence[int]]) -> Profile:
    """The profile of every input of the exported graph: the image (N, 3, H, W) for the
    ``batches`` and ``sizes`` (min, opt, max) and, for streaming graphs, each temporal state at
    the same three batches along its batch axis (states have no spatial size)."""
    if not (batches[0] <= batches[1] <= batches[2]):
        raise ExportError(f"profile batches must be min <= opt <= max, got {batches}.")
    for axis in (0, 1):
        if not (sizes[0][axis] <= sizes[1][axis] <= sizes[2][axis]):
            raise ExportError(f"profile sizes must be min <= opt <= max, got {[tuple(s) for s in sizes]}.")
    shapes: dict[str, tuple[Shape, Shape, Shape]] = {
        INPUT_NAME: tuple((int(b), 3, int(hw[0]), int(hw[1])) for b, hw in zip(batches, sizes))}  # type: ignore[dict-item]
    names = config.get("state_names", [])
    if len(names) != len(config.get("state_shapes", [])) or len(names) != len(config.get("state_batch_axes", [])):
        raise ExportError("the model config lists state names, shapes and batch axes of different lengths; "
                          "re-export the model.")
    for name, shape, axis in zip(names, config.get("state_shapes", []), config.get("state_batch_axes", [])):
        per = []
        for b in batches:
            s = [int(v) for v in shape]
            s[int(axis)] = int(b)
            per.append(tuple(s))
        shapes[name] = tuple(per)  # type: ignore[assignment]
    return Profile(shapes)


def make_profile(config: Mapping[str, Any], batch: int, imgsz: Sequence[int], dynamic: bool,
                 max_batch: int | None = None, min_imgsz: Sequence[int] | None = None,
                 max_imgsz: Sequence[int] | None = None) -> Profile:
    """The profile for an export: fixed shapes, or with ``dynamic`` batch 1..max_batch and sizes
    min_imgsz..max_imgsz (defaults: half and twice ``imgsz``, on the model's size multiple)."""
    h, w = int(imgsz[0]), int(imgsz[1])
    if not dynamic:
        return profile_for(config, (batch, batch, batch), ((h, w), (h, w), (h, w)))
    m = max(1, int(config.get("size_multiple", 1)))
    lo = tuple(min_imgsz) if min_imgsz else (max(m, h // 2 // m * m), max(m, w // 2 // m * m))
    hi = tuple(max_imgsz) if max_imgsz else (2 * h, 2 * w)
    mb = int(max_batch or max(2 * batch, 8))
    if not (lo[0] <= h <= hi[0] and lo[1] <= w <= hi[1] and 1 <= batch <= mb):
        raise ExportError(f"the optimisation profile must contain the export shape: batch 1..{mb} around {batch}, "
                          f"sizes {lo}..{hi} around {(h, w)}.")
    return profile_for(config, (1, batch, mb), (lo, (h, w), hi))


def attach_timing_cache(config: Any, cache_path: Path) -> bool:
    """Give the builder the saved timing cache, or a fresh one when the saved one does not fit.

    A cache from another GPU or TensorRT version is refused (``set_timing_cache`` returns False
    with ``ignore_mismatch=False``, the safe setting: foreign timings can pick wrong tactics);
    the builder then has no cache at all unless a fresh one is attached. Returns whether the
    saved cache was used.
    """
    data = cache_path.read_bytes() if cache_path.is_file() else b""
    if data and config.set_timing_cache(config.create_timing_cache(data), ignore_mismatch=False):
        return True
    if data:
        logger.warning("the timing cache %s was made on another GPU or TensorRT version; starting a new one "
                       "(it will be replaced after this build)", cache_path)
    if not config.set_timing_cache(config.create_timing_cache(b""), ignore_mismatch=False):
        logger.warning("TensorRT refused an empty timing cache; building without one")
    return False


def save_timing_cache(config: Any, cache_path: Path) -> bool:
    """Write the builder's timing cache; False (with a warning) when the builder holds none."""
    cache = config.get_timing_cache()
    if cache is None:
        logger.warning("TensorRT returned no timing cache after the build; %s was not updated", cache_path)
        return False
    write_bytes(cache_path, bytes(cache.serialize()))
    return True


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
    builder = create_trt_object(trt.Builder, trt_logger, trt.__version__)
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
            raise ExportError(f"the optimisation profile has no shapes for input {name!r} (it has "
                              f"{', '.join(profile.shapes)}); build it with trt_build.profile_for(config, ...).")
        opt_profile.set_shape(name, *profile.shapes[name])
    config.add_optimization_profile(opt_profile)
    pinned: list[str] = []
    if fp16 and not typed:
        config.set_flag(trt.BuilderFlag.FP16)
        pinned = pin_squares_fp32(trt, network, config)
    cache_reused = attach_timing_cache(config, cache_path)

    start = time.perf_counter()
    plan = builder.build_serialized_network(network, config)
    build_s = time.perf_counter() - start
    if plan is None:
        raise ExportError("TensorRT could not build the engine (see the TensorRT messages above); try a larger "
                          "--workspace or a narrower profile.")
    write_bytes(engine_path, bytes(plan))
    cache_saved = save_timing_cache(config, cache_path)

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
            "strongly_typed": typed, "layers_pinned_fp32": len(pinned), "workspace_gib": workspace_gib,
            "profile": profile.to_dict(), "timing_cache": cache_path.name if cache_saved else None,
            "timing_cache_reused": cache_reused, "build_seconds": round(build_s, 1),
            "onnx": onnx_path.name, "parsed": Path(source).name,
        },
    }
    # The sidecar is what makes the plan loadable: write it before anything else can fail.
    write_json(sidecar_path(engine_path), report)
    if spec is not None and parity_shapes:
        from surgenet.runtime.trt_runner import TensorRTRunner

        shapes = profile.clamp(parity_shapes, int(model_config.get("size_multiple", 1)))
        runner = TensorRTRunner(engine_path, config=model_config)
        try:
            report["parity"] = check_parity(spec, runner.run, shapes, tolerance)
        finally:
            runner.close()
        write_json(sidecar_path(engine_path), report)
    if raise_on_mismatch and not report.get("parity", {"passed": True})["passed"]:
        raise ParityError(f"the TensorRT engine {engine_path} does not match PyTorch within {tolerance.to_dict()}; "
                          f"see {sidecar_path(engine_path)}.")
    return report


def pin_squares_fp32(trt, network, config) -> list[str]:
    """In a weakly typed FP16 build, keep the layers that square activations (and sum or root
    the squares) in FP32, and return their names.

    onnx-tensorrt imports ReduceSumSquare and ReduceL2 as an element-wise product of a tensor
    with itself followed by a SUM reduction (and a SQRT for L2), and Pow as an element-wise POW:
    squares of activations of a few hundred already exceed FP16's 65504 (ConvNeXtV2's GRN,
    hand-written norms). Normalisation layers are left alone: TensorRT computes them in FP32 by
    default, and pinning them only adds reformats. Layers with non-float outputs (shape
    arithmetic on int32/int64) are skipped, since a precision there is invalid.
    """
    floats = {trt.float32, trt.float16}
    squares = {trt.ElementWiseOperation.POW}
    names: list[str] = []
    for i in range(network.num_layers):
        layer = network.get_layer(i)
        if not all(layer.get_output(j).dtype in floats for j in range(layer.num_outputs)):
            continue
        if layer.type == trt.LayerType.REDUCE:
            pin = True
        elif layer.type == trt.LayerType.ELEMENTWISE:
            layer.__class__ = trt.IElementWiseLayer  # the Python API hands out the base ILayer
            pin = layer.op in squares or (layer.op == trt.ElementWiseOperation.PROD and layer.num_inputs == 2
                                          and layer.get_input(0).name == layer.get_input(1).name)
        elif layer.type == trt.LayerType.UNARY:
            layer.__class__ = trt.IUnaryLayer
            pin = layer.op == trt.UnaryOperation.SQRT
        else:
            pin = False
        if not pin:
            continue
        layer.precision = trt.float32
        for j in range(layer.num_outputs):
            layer.set_output_type(j, trt.float32)
        names.append(layer.name)
    if names:
        flag = getattr(trt.BuilderFlag, "OBEY_PRECISION_CONSTRAINTS", None) or getattr(
            trt.BuilderFlag, "PREFER_PRECISION_CONSTRAINTS", None)
        if flag is not None:
            config.set_flag(flag)
    logger.info("pinned %d squaring/reduction layers to FP32", len(names))
    return names
