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

from .errors import BackendUnavailableError, ExportError
from .metadata import read_json, read_onnx_config, sidecar_path
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


class StaticShapeOpenVINO:
    """OpenVINO compiled for one input shape at a time (faster on CPU than a dynamic model).

    By default one model per size (H, W), for the graph's batch if it is fixed, else the first
    batch it is given; other batches are split and padded (:func:`~surgenet.runtime.shapes.split_batches`),
    never recompiled: frame graphs only (segmentation, CVS). With ``shape_per_batch`` one model per
    (N, H, W), each batch compiled on its first call, which also runs streaming (phase) graphs."""

    def __init__(self, path: str | Path, precision: str = "f32", threads: int | None = None,
                 shape_per_batch: bool = False) -> None:
        try:
            import openvino as ov
        except ImportError as exc:
            raise BackendUnavailableError("OpenVINO is not installed: pip install openvino.") from exc

        self.path, self.precision, self.threads = Path(path), precision, threads
        self.shape_per_batch = bool(shape_per_batch)
        self.config: dict[str, Any] = (read_json(sidecar_path(self.path))["config"] if self.path.suffix == ".xml"
                                       else read_onnx_config(self.path))
        if self.config.get("streaming") and not self.shape_per_batch:
            raise ExportError(f"{path}: a streaming (phase) graph runs with --backend onnxruntime or tensorrt.")
        first = ov.Core().read_model(str(self.path)).inputs[0].get_partial_shape()[0]
        self.fixed_batch = first.get_length() if first.is_static else None
        self._compiled: dict[tuple[int, ...], tuple[int, OpenVINORunner]] = {}  # shape key -> (batch, runner)

    def __call__(self, x: np.ndarray) -> np.ndarray:
        from .shapes import split_batches

        n, _, h, w = x.shape
        key = (n, h, w) if self.shape_per_batch else (h, w)
        if key not in self._compiled:
            batch = n if self.shape_per_batch else self.fixed_batch or n
            self._compiled[key] = batch, OpenVINORunner(self.path, precision=self.precision,
                                                        static_shape=(batch, h, w), threads=self.threads,
                                                        config=self.config)
        batch, runner = self._compiled[key]
        return runner(x) if self.shape_per_batch else split_batches(runner, x, batch)

    def reset(self) -> None:
        """Forget the temporal state of every compiled shape (streaming graphs)."""
        for _, runner in self._compiled.values():
            runner.reset()
