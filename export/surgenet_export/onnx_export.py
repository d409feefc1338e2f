"""PyTorch -> ONNX: one self-contained file, simplified, with metadata, validated every time.

Two exporters: the TorchScript-based one (default for CNNs) traces in about a second and its
graph runs about 1.3x faster in ONNX Runtime; the dynamo one (``dynamo=True``, the default for
ViTs) follows data-dependent shapes symbolically, e.g. padding to a size multiple, so dynamic
spatial sizes that are not a multiple of ``size_multiple`` stay correct. Both emit GroupNorm as InstanceNormalization +
affine at opsets 17 to 20, which TensorRT 10 parses; opset 21 would bring GroupNormalization-21,
which it does not, hence the opset range.
"""

from __future__ import annotations

import collections
import logging
import tempfile
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Sequence

import torch
import torch.nn as nn

from surgenet._version import __version__ as SURGENET_VERSION
from surgenet.bounds import BOUNDS

from surgenet.runtime.errors import ExportError, ParityError
from surgenet.runtime.graph import GraphSpec, build_graph, detached_copy
from surgenet.runtime.metadata import embed_metadata, sidecar_path, write_bytes, write_json
from .validate import FP32_TOLERANCE, Tolerance, parity_shapes, validate_onnx

logger = logging.getLogger(__name__)

MIN_OPSET, MAX_OPSET = int(BOUNDS["opset"].low), int(BOUNDS["opset"].high)  # the table of bounds: 17, 20
DEFAULT_OPSET = 18


@dataclass
class ExportResult:
    """What an export produced: the artifact, its sidecar and the parity report."""

    path: Path
    sidecar: Path
    config: dict[str, Any]
    report: dict[str, Any] = field(default_factory=dict)
    spec: GraphSpec | None = field(default=None, repr=False)  # what was traced, for further checks

    @property
    def passed(self) -> bool:
        return bool(self.report.get("parity", {}).get("passed", False))


def export_onnx(model: nn.Module, path: str | Path, *, config: Mapping[str, Any] | None = None, batch: int = 1,
                imgsz: Sequence[int] | None = None, dynamic: bool = False, opset: int = DEFAULT_OPSET,
                dynamo: bool | None = None, bake_preprocess: bool = False, simplify: bool = True,
                tolerance: Tolerance = FP32_TOLERANCE, seed: int = 0, raise_on_mismatch: bool = True) -> ExportResult:
    """Export ``model`` to ONNX at ``path`` and check it against PyTorch with ONNX Runtime.

    Args:
        model: a surgenet task model (or any module with a ``config``); it is copied, never changed.
        path: the ``.onnx`` file to write; ``path.json`` receives the sidecar report.
        config: the config to embed when the model has none (task, num_classes, mean, std, input_size).
        batch: the export batch size.
        imgsz: the export image size (H, W); defaults to the model's input size.
        dynamic: dynamic batch, height and width (validated at two batch sizes and two sizes).
        opset: 17 to 20 (TensorRT 10 parses all of them).
        dynamo: use the ``torch.export``-based exporter; ``None`` (default) picks it for ViTs, whose
            position embeddings are resampled with antialiased bicubic interpolation (not exportable
            by the TorchScript exporter), and the faster TorchScript exporter for the CNNs.
        bake_preprocess: the graph takes RGB in 0..1 and normalises itself.
        simplify: run onnxslim (constant folding, fusion of shape arithmetic).
        tolerance: parity limits; ``raise_on_mismatch`` raises :class:`ParityError` beyond them
            (the file and its sidecar are kept for inspection).

    Returns:
        An :class:`ExportResult`; ``result.report`` is what the sidecar holds.
    """
    import onnx

    if not MIN_OPSET <= int(opset) <= MAX_OPSET:
        raise ExportError(f"opset {opset} is not supported; use {MIN_OPSET} to {MAX_OPSET} (TensorRT 10 cannot parse "
                          "the GroupNormalization-21 that opset 21 brings).")
    if batch < 1:
        raise ExportError(f"batch must be >= 1, got {batch}.")
    path = Path(path)
    spec = build_graph(detached_copy(model), config, bake_preprocess)
    hw = _image_size(spec.config, imgsz)
    if dynamo is None:
        dynamo = spec.config.get("family") == "vit"
    # A traced batch of 1 may be specialised by the exporter (the dynamo one always does): trace 2.
    trace_batch = max(batch, 2) if dynamic else batch
    example = spec.example_inputs(trace_batch, hw, seed=seed + 1)
    spec.config["export"] = {
        "exporter": "dynamo" if dynamo else "torchscript", "opset": int(opset), "dynamic": bool(dynamic),
        "batch": int(batch), "imgsz": list(hw), "torch_version": torch.__version__,
        "surgenet_version": SURGENET_VERSION,
    }
    start = time.perf_counter()
    proto = _trace(spec, example, int(opset), dynamo, dynamic)
    export_s = time.perf_counter() - start
    slim_note = None
    if simplify:
        proto, slim_note = _simplify(proto)
    embed_metadata(proto, spec.config)
    try:
        onnx.checker.check_model(proto, full_check=True)
    except onnx.checker.ValidationError as exc:
        raise ExportError(f"onnx.checker rejected the exported graph: {exc}") from exc
    write_bytes(path, proto.SerializeToString())
    ops = collections.Counter(node.op_type for node in proto.graph.node)
    shapes = parity_shapes(batch, hw, dynamic, spec.config["size_multiple"])
    parity = validate_onnx(path, spec, shapes, tolerance, seed=seed)
    report = {
        "artifact": path.name,
        "format": "onnx",
        "config": spec.config,
        "export": {**spec.config["export"], "export_seconds": round(export_s, 3), "simplified": simplify and slim_note is None,
                   "simplify_error": slim_note, "file_bytes": path.stat().st_size,
                   "inputs": spec.input_names, "outputs": spec.output_names, "op_types": dict(sorted(ops.items()))},
        "parity": parity,
    }
    side = write_json(sidecar_path(path), report)
    result = ExportResult(path, side, spec.config, report, spec)
    if not parity["passed"] and raise_on_mismatch:
        raise ParityError(_mismatch_message(path, parity))
    return result


def _image_size(config: Mapping[str, Any], imgsz: Sequence[int] | None) -> tuple[int, int]:
    if imgsz is None:
        size = list(config["input_size"])
        hw = size[-2:]
    else:
        hw = list(imgsz)
        if len(hw) == 1:
            hw = hw * 2
    if len(hw) != 2 or min(int(v) for v in hw) < 1:
        raise ExportError(f"imgsz must be (H, W) with positive sizes, got {imgsz}.")
    return int(hw[0]), int(hw[1])


def _trace(spec: GraphSpec, example: tuple[torch.Tensor, ...], opset: int, dynamo: bool, dynamic: bool):
    import onnx

    kwargs: dict[str, Any] = dict(input_names=spec.input_names, output_names=spec.output_names,
                                  opset_version=opset)
    with torch.inference_mode(False), torch.no_grad(), warnings.catch_warnings():
        # Tracer warnings about Python ints are expected (constant shapes at fixed sizes); the
        # parity check at other sizes is what tells whether a dynamic graph is right.
        warnings.simplefilter("ignore", torch.jit.TracerWarning)
        # The TorchScript exporter announces its own deprecation and warns about LSTM batch sizes
        # with implicit initial states; ours are graph inputs, and the exporter choice is deliberate.
        warnings.filterwarnings("ignore", message=".*legacy TorchScript-based ONNX export", category=DeprecationWarning)
        warnings.filterwarnings("ignore", category=DeprecationWarning, module=r"torch\.onnx")
        warnings.filterwarnings("ignore", category=UserWarning, module=r"torch\.onnx")
        if dynamo:
            if dynamic:
                kwargs["dynamic_shapes"] = _dynamic_shapes(spec)
            try:
                program = torch.onnx.export(spec.module, example, dynamo=True, external_data=False,
                                            verbose=False, **kwargs)
            except Exception as exc:  # torch.export raises many types; all mean the same to the user
                raise ExportError(f"the dynamo exporter failed: {exc}. Try the default exporter (no --dynamo).") from exc
            return program.model_proto
        if dynamic:
            kwargs["dynamic_axes"] = spec.dynamic_axes(spatial=True)
        with tempfile.TemporaryDirectory(prefix="surgenet-export-") as tmp:
            out = Path(tmp) / "model.onnx"
            try:
                torch.onnx.export(spec.module, example, str(out), dynamo=False, do_constant_folding=True, **kwargs)
            except Exception as exc:
                raise ExportError(f"the TorchScript exporter failed: {exc}. Try --dynamo.") from exc
            return onnx.load(str(out))


def _dynamic_shapes(spec: GraphSpec) -> tuple:
    batch = torch.export.Dim("batch", min=1, max=1024)
    m = max(1, int(spec.config.get("size_multiple", 1)))
    image = {0: batch, 2: torch.export.Dim("height", min=m, max=8192), 3: torch.export.Dim("width", min=m, max=8192)}
    return (image, *({axis: batch} for axis in spec.state_batch_axes))


def _simplify(proto):
    """onnxslim's simplified graph, or the original and the reason when it fails."""
    import onnxslim

    try:
        return onnxslim.slim(proto), None
    except Exception as exc:  # onnxslim wraps many failure types; the export stays valid without it
        logger.warning("onnxslim could not simplify the graph (%s); keeping the unsimplified graph.", exc)
        return proto, f"{type(exc).__name__}: {exc}"


def _mismatch_message(path: Path, parity: Mapping[str, Any]) -> str:
    lines = [f"{path} does not match PyTorch within tolerance {parity['tolerance']}:"]
    for check in parity["checks"]:
        if not check["passed"]:
            lines.append(f"  shape {check['shape']}: max abs error {check['max_abs_err']:.3g} (allowed "
                         f"{check['allowed_abs_err']:.3g})" + (f", {check['error']}" if check.get("error") else ""))
    lines.append(f"The report is in {sidecar_path(path)}. With --dynamic, sizes must be multiples of "
                 f"{parity.get('size_multiple', 32)} for the default exporter; try --dynamo or a static shape.")
    return "\n".join(lines)
