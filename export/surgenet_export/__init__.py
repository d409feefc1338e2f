"""surgenet_export: SurgeNet models to ONNX and TensorRT, with parity checks and runners.

The core package ``surgenet`` never imports this one; install it with ``pip install
'surgenet[export]'`` (ONNX, ONNX Runtime, OpenVINO) or ``'surgenet[trt]'`` (TensorRT, CUDA).

    >>> from surgenet_export import export_onnx, load_runner
    >>> result = export_onnx(model, "out/model.onnx", dynamic=True)   # validated against PyTorch
    >>> runner = load_runner("out/model.onnx")                          # runner(x) -> logits
    >>> quantize_int8("out/model.onnx", "frames/")                      # out/model.int8.xml, OpenVINO
"""

from __future__ import annotations

from .errors import BackendUnavailableError, ExportError, ParityError
from .graph import GraphSpec, build_graph
from .int8 import quantize_int8
from .metadata import read_onnx_config
from .onnx_export import DEFAULT_OPSET, ExportResult, export_onnx
from .runners import BACKENDS, Runner, load_runner
from .validate import FP16_TOLERANCE, FP32_TOLERANCE, Tolerance

__all__ = [
    "BACKENDS", "BackendUnavailableError", "DEFAULT_OPSET", "ExportError", "ExportResult", "FP16_TOLERANCE",
    "FP32_TOLERANCE", "GraphSpec", "ParityError", "Runner", "Tolerance", "build_graph", "export_onnx",
    "load_runner", "quantize_int8", "read_onnx_config",
]
