"""TensorRT engine runner: deserialise a plan, bind torch CUDA buffers, ``execute_async_v3``.

Written against the TensorRT 10/11 Python API (named I/O tensors, ``set_input_shape``,
``set_tensor_address``); it needs an NVIDIA GPU and is exercised by the GPU-only tests.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping

import numpy as np

from .._cuda import import_tensorrt
from ..errors import ExportError
from ..metadata import read_json, sidecar_path
from .base import Runner


class TensorRTRunner(Runner):
    """Args:
        path: a ``.engine`` plan written by ``surgenet-export --trt``; its config comes from
            ``path.json`` (a plan has no metadata of its own).
        device: ``cuda`` or ``cuda:N``.
    """

    backend = "tensorrt"

    def __init__(self, path: str | Path, device: str = "cuda", config: Mapping[str, Any] | None = None) -> None:
        trt = import_tensorrt()
        import torch

        path = Path(path)
        if config is None:
            config = read_json(sidecar_path(path))["config"]
        self.torch_device = torch.device(device if device != "cuda" else "cuda:0")
        self._logger = trt.Logger(trt.Logger.WARNING)
        with torch.cuda.device(self.torch_device):
            self.runtime = trt.Runtime(self._logger)
            self.engine = self.runtime.deserialize_cuda_engine(path.read_bytes())
            if self.engine is None:
                raise ExportError(f"TensorRT could not deserialise {path}: a plan only runs with the TensorRT "
                                  "version and GPU it was built for; rebuild it here with surgenet-export --trt.")
            self.context = self.engine.create_execution_context()
            self.stream = torch.cuda.Stream(self.torch_device)
        names = [self.engine.get_tensor_name(i) for i in range(self.engine.num_io_tensors)]
        inputs = [n for n in names if self.engine.get_tensor_mode(n) == trt.TensorIOMode.INPUT]
        outputs = [n for n in names if self.engine.get_tensor_mode(n) == trt.TensorIOMode.OUTPUT]
        super().__init__(config, inputs, outputs, str(self.torch_device))
        self._dtypes = {n: _torch_dtype(trt, self.engine.get_tensor_dtype(n)) for n in names}

    def run_tensors(self, feeds: Mapping[str, Any]) -> list[Any]:
        """CUDA tensors in, CUDA tensors out (no host copies)."""
        import torch

        keep = []
        with torch.cuda.stream(self.stream):
            for name in self.input_names:
                t = torch.as_tensor(feeds[name]).to(self.torch_device, self._dtypes[name]).contiguous()
                keep.append(t)  # the buffer must outlive the enqueued execution
                if not self.context.set_input_shape(name, tuple(t.shape)):
                    raise ExportError(f"input {name} of shape {tuple(t.shape)} is outside the engine's optimisation "
                                      "profile; rebuild with --dynamic and a wider --max-batch/--max-imgsz.")
                self.context.set_tensor_address(name, t.data_ptr())
            outs = []
            for name in self.output_names:
                out = torch.empty(tuple(self.context.get_tensor_shape(name)), dtype=self._dtypes[name],
                                  device=self.torch_device)
                self.context.set_tensor_address(name, out.data_ptr())
                outs.append(out)
            if not self.context.execute_async_v3(self.stream.cuda_stream):
                raise ExportError("TensorRT execution failed; run with TensorRT logging (verbose) for the cause.")
        self.stream.synchronize()
        return outs

    def run(self, feeds: Mapping[str, np.ndarray]) -> list[np.ndarray]:
        import torch

        tensors = {n: torch.from_numpy(np.ascontiguousarray(feeds[n], dtype=np.float32)) for n in self.input_names}
        return [o.float().cpu().numpy() for o in self.run_tensors(tensors)]

    def close(self) -> None:
        self.context = None
        self.engine = None
        self.runtime = None


def _torch_dtype(trt, dtype):
    import torch

    table = {trt.float32: torch.float32, trt.float16: torch.float16, trt.int32: torch.int32,
             trt.int8: torch.int8, trt.bool: torch.bool}
    if hasattr(trt, "int64"):
        table[trt.int64] = torch.int64
    if hasattr(trt, "bfloat16"):
        table[trt.bfloat16] = torch.bfloat16
    if dtype not in table:
        raise ExportError(f"engine tensor type {dtype} is not supported by the runner.")
    return table[dtype]
