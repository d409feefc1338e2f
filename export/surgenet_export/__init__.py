"""surgenet_export: SurgeNet models to ONNX and TensorRT, with parity checks.

The compilers live here (ONNX export, TensorRT build, int8, FP16, parity); what runs their
artefacts is the core's runtime (:mod:`surgenet.runtime`), re-exported here for compatibility.
This package imports ``surgenet``; ``surgenet`` never imports this one. Install it with
``pip install 'surgenet[export]'`` (ONNX, ONNX Runtime, OpenVINO) or ``'surgenet[trt]'`` (TensorRT, CUDA).

    >>> from surgenet_export import export_onnx, load_runner
    >>> result = export_onnx(model, "out/model.onnx", dynamic=True)   # validated against PyTorch
    >>> runner = load_runner("out/model.onnx")                          # runner(x) -> logits
    >>> quantize_int8("out/model.onnx", "frames/")                      # out/model.int8.xml, OpenVINO
"""

from __future__ import annotations

from surgenet.runtime import BackendUnavailableError, ExportError, ParityError, Runner, load_runner
from surgenet.runtime.graph import GraphSpec, build_graph
from surgenet.runtime.metadata import read_onnx_config
from surgenet.runtime.registry import RUNTIMES as BACKENDS

from .int8 import quantize_int8
from .onnx_export import DEFAULT_OPSET, ExportResult, export_onnx
from .validate import FP16_TOLERANCE, FP32_TOLERANCE, Tolerance

__all__ = [
    "BACKENDS", "BackendUnavailableError", "DEFAULT_OPSET", "ExportError", "ExportResult", "FP16_TOLERANCE",
    "FP32_TOLERANCE", "GraphSpec", "ParityError", "Runner", "Tolerance", "build_graph", "export_onnx",
    "load_runner", "quantize_int8", "read_onnx_config",
]
