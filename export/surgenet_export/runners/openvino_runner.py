"""OpenVINO runner (CPU): reads the ONNX file directly, or the int8 IR of ``surgenet-export --int8``;
FP32 by default, bf16 on request.

On CPUs with AMX or AVX-512 BF16, OpenVINO runs in bf16 unless told otherwise, so precision is
always set explicitly here: ``f32`` for parity, ``bf16`` or ``f16`` for speed when the hardware
has them (on other CPUs OpenVINO falls back to f32 and says so in ``execution_precision``). For an
int8 IR the precision applies to the layers left unquantised.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np

from ..errors import BackendUnavailableError, ExportError
from ..metadata import read_json, read_onnx_config, sidecar_path
from .base import Runner


class OpenVINORunner(Runner):
    """Args:
        path: an ``.onnx`` file written by ``surgenet-export``, or its int8 IR ``model.int8.xml``
            (config from ``model.int8.xml.json``).
        device: an OpenVINO device name (``CPU``, ``GPU``).
        precision: ``f32``, ``bf16`` or ``f16`` (INFERENCE_PRECISION_HINT).
        static_shape: (N, H, W): compile for this one input shape (lets OpenVINO pick kernels
            for it, usually faster than a dynamic model).
        threads: inference threads (INFERENCE_NUM_THREADS).
    """

    def __init__(self, path: str | Path, device: str = "CPU", precision: str = "f32",
                 static_shape: Sequence[int] | None = None, threads: int | None = None,
                 config: Mapping[str, Any] | None = None) -> None:
        try:
            import openvino as ov
        except ImportError as exc:
            raise BackendUnavailableError("OpenVINO is not installed: pip install openvino.") from exc
        if precision not in ("f32", "bf16", "f16"):
            raise ExportError(f"precision must be f32, bf16 or f16, got {precision!r}.")
        path = Path(path)
        core = ov.Core()
        model = core.read_model(str(path))
        int8 = path.suffix == ".xml"
        if config is None:
            config = read_json(sidecar_path(path))["config"] if int8 else read_onnx_config(path)
        inputs = [p.get_any_name() for p in model.inputs]
        if static_shape is not None:
            n, h, w = (int(v) for v in static_shape)
            model.reshape({inputs[0]: [n, 3, h, w]})
        properties: dict[str, Any] = {"INFERENCE_PRECISION_HINT": precision, "PERFORMANCE_HINT": "LATENCY"}
        if threads:
            properties["INFERENCE_NUM_THREADS"] = int(threads)
        self.compiled = core.compile_model(model, device.upper(), properties)
        self.request = self.compiled.create_infer_request()
        super().__init__(config, inputs, [p.get_any_name() for p in model.outputs], device.upper())
        self.backend = f"openvino-{precision}" if not int8 else ("openvino-int8" if precision == "f32"
                                                                 else f"openvino-int8-{precision}")
        self.execution_precision = str(self.compiled.get_property("INFERENCE_PRECISION_HINT"))

    def run(self, feeds: Mapping[str, np.ndarray]) -> list[np.ndarray]:
        result = self.request.infer({n: np.ascontiguousarray(feeds[n], dtype=np.float32) for n in self.input_names})
        return [np.array(result[out]) for out in self.compiled.outputs]

    def close(self) -> None:
        self.request = None
        self.compiled = None
