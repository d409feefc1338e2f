"""The files a benchmark's backends run, built from one model when a backend first needs them.

The ONNX export (dynamic, or static at one size), its NNCF int8 quantisation and a TensorRT FP16
engine, written to a scratch folder with the export tools here; the core's
:func:`surgenet.runtime.measure.open_benchmark_runner` opens a registry backend on them. Shared by
``benchmarks/latency.py`` and ``benchmarks/resolution.py``.
"""

from __future__ import annotations

import copy
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from surgenet.runtime.measure import CALIB_HINT, Unavailable


@dataclass
class BackendArtefacts:
    """What the backends of one benchmark share: the model, its config and the files built from it,
    lazily (each export tool imported only when its file is needed).

    ``dynamic``: one ONNX export with dynamic batch and size for every benchmarked shape (exported at
    the first batch and size); ``False`` exports a static graph at ``sizes[0]``, batch ``batches[0]``.
    """

    model: Any
    config: dict[str, Any]
    workdir: Path
    batches: list[int]
    sizes: list[tuple[int, int]]
    threads: int | None
    calib: Path | None = None
    calib_size: int = 100
    dynamic: bool = True
    _onnx: Path | None = None
    _engine: Path | None = None
    _int8: Path | None = None
    _failed: dict[str, Exception] = field(default_factory=dict)  # an export that failed is not retried
    notes: dict[str, Any] = field(default_factory=dict)

    def onnx(self) -> Path:
        """The ONNX export shared by the ONNX Runtime and OpenVINO backends (validated); one that
        failed raises its error again for the next backend instead of exporting again."""
        if "onnx" in self._failed:
            raise self._failed["onnx"]
        if self._onnx is None:
            from .onnx_export import export_onnx

            path = self.workdir / "model.onnx"
            start = time.perf_counter()
            try:
                result = export_onnx(self.model, path, batch=self.batches[0], imgsz=self.sizes[0],
                                     dynamic=self.dynamic)
            except Exception as exc:
                self._failed["onnx"] = exc
                raise
            self.notes["onnx_export_s"] = round(time.perf_counter() - start, 1)
            self.notes["onnx_exporter"] = result.config["export"]["exporter"]
            self._onnx = path
        return self._onnx

    def int8(self) -> Path:
        """The ONNX export quantised to int8 by NNCF, calibrated on ``calib`` frames at the first size
        (a quantisation that failed is not tried again)."""
        if "int8" in self._failed:
            raise self._failed["int8"]
        if self._int8 is None:
            from .int8 import quantize_int8

            if self.calib is None:
                raise Unavailable(CALIB_HINT)
            start = time.perf_counter()
            onnx = self.onnx()
            try:
                report = quantize_int8(onnx, self.calib, calib_size=self.calib_size)
            except Exception as exc:
                self._failed["int8"] = exc
                raise
            self.notes["int8_quantize_s"] = round(time.perf_counter() - start, 1)
            self.notes["int8_calibration"] = {k: v for k, v in report["int8"]["calibration"].items() if k != "files"}
            self.notes["int8_accuracy_vs_fp32"] = report["int8"]["accuracy_vs_fp32"]
            self._int8 = self.workdir / report["artifact"]
        return self._int8

    def engine(self) -> Path:
        """A TensorRT FP16 engine whose profile spans every benchmarked batch and size (validated)."""
        if self._engine is None:
            from surgenet.runtime.graph import build_graph
            from surgenet.runtime.metadata import read_onnx_config

            from .trt_build import build_engine, profile_for

            lo_b, hi_b = min(self.batches), max(self.batches)
            lo = (min(h for h, _ in self.sizes), min(w for _, w in self.sizes))
            hi = (max(h for h, _ in self.sizes), max(w for _, w in self.sizes))
            # The export's own profile builder: every input, including a phase model's states.
            profile = profile_for(read_onnx_config(self.onnx()), (lo_b, self.batches[0], hi_b), (lo, self.sizes[0], hi))
            path = self.workdir / "model.engine"
            build_engine(self.onnx(), path, profile=profile, fp16=True, spec=build_graph(copy.deepcopy(self.model)),
                         parity_shapes=[(self.batches[0], *self.sizes[0])])
            self._engine = path
        return self._engine

    def artefact(self, kind: str) -> Any:
        """What a backend of the registry runs: the model, or the file its artefact names."""
        return {"model": lambda: self.model, "onnx": self.onnx, "openvino-ir": self.int8,
                "tensorrt-engine": self.engine}[kind]()


__all__ = ["BackendArtefacts"]
