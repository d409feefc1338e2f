"""TensorRT engine runner: deserialise a plan, bind torch CUDA buffers, ``execute_async_v3``.

Written against the TensorRT 10/11 Python API (named I/O tensors, ``set_input_shape``,
``set_tensor_address``); it needs an NVIDIA GPU and is exercised by the GPU-only tests.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np

from .cuda import create_trt_object, import_tensorrt
from .errors import BackendUnavailableError, ExportError
from .metadata import read_json, sidecar_path
from .base import Runner


class EngineMismatchError(BackendUnavailableError):
    """A plan built for another TensorRT version or GPU architecture: it cannot run here."""


def engine_mismatch(built: Mapping[str, Any], trt_version: str, capability: Sequence[int]) -> str | None:
    """Why a plan described by its sidecar's ``tensorrt`` block cannot run here, or None.

    A plan runs only with the exact TensorRT version that built it and on GPUs of the same
    compute capability (SM version); another GPU model of the same capability can run it,
    possibly with other tactics' speed.
    """
    version = built.get("version")
    if version and str(version) != str(trt_version):
        return f"it was built with TensorRT {version} and this is TensorRT {trt_version}"
    cc = built.get("compute_capability")
    if cc and [int(v) for v in cc] != [int(v) for v in capability]:
        return (f"it was built for compute capability {'.'.join(map(str, cc))} ({built.get('gpu', 'another GPU')}) "
                f"and this GPU is {'.'.join(map(str, capability))}")
    return None


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
        sidecar = read_json(sidecar_path(path))
        if config is None:
            config = sidecar["config"]
        self.torch_device = torch.device(device if device != "cuda" else "cuda:0")
        why = engine_mismatch(sidecar.get("tensorrt", {}), trt.__version__,
                              torch.cuda.get_device_capability(self.torch_device))
        if why:
            raise EngineMismatchError(f"{path} cannot run here: {why}. Rebuild it on this machine with "
                                      "surgenet-export --trt (or run the ONNX file beside it).")
        self._logger = trt.Logger(trt.Logger.WARNING)
        with torch.cuda.device(self.torch_device):
            self.runtime = create_trt_object(trt.Runtime, self._logger, trt.__version__)
            self.engine = self.runtime.deserialize_cuda_engine(path.read_bytes())
            if self.engine is None:
                raise EngineMismatchError(f"TensorRT could not deserialise {path}: a plan only runs with the TensorRT "
                                          "version and GPU it was built for; rebuild it here with surgenet-export "
                                          "--trt.")
            self.context = self.engine.create_execution_context()
            self.stream = torch.cuda.Stream(self.torch_device)
        names = [self.engine.get_tensor_name(i) for i in range(self.engine.num_io_tensors)]
        inputs = [n for n in names if self.engine.get_tensor_mode(n) == trt.TensorIOMode.INPUT]
        outputs = [n for n in names if self.engine.get_tensor_mode(n) == trt.TensorIOMode.OUTPUT]
        super().__init__(config, inputs, outputs, str(self.torch_device))
        self._dtypes = {n: _torch_dtype(trt, self.engine.get_tensor_dtype(n)) for n in names}

    def run_tensors(self, feeds: Mapping[str, Any]) -> list[Any]:
        """CUDA tensors in, CUDA tensors out (no host copies), ordered with the caller's stream.

        The engine runs on the runner's own stream. That stream first waits for the caller's
        current stream (whose kernels may still be writing the inputs); the caller's stream then
        waits for the engine, so the outputs are ready for whatever the caller queues next. The
        caching allocator is told about each cross-stream use (``record_stream``), so no buffer
        is reused while the other stream may still read it.
        """
        import torch

        caller = torch.cuda.current_stream(self.torch_device)
        self.stream.wait_stream(caller)
        with torch.cuda.stream(self.stream):
            for name in self.input_names:
                t = torch.as_tensor(feeds[name]).to(self.torch_device, self._dtypes[name]).contiguous()
                t.record_stream(self.stream)  # may be the caller's own buffer, read on our stream
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
        caller.wait_stream(self.stream)
        for out in outs:
            out.record_stream(caller)  # allocated on our stream, used (and freed) on the caller's
        return outs

    def run(self, feeds: Mapping[str, np.ndarray]) -> list[np.ndarray]:
        import torch

        tensors = {n: torch.from_numpy(np.ascontiguousarray(feeds[n], dtype=np.float32)) for n in self.input_names}
        # .cpu() runs on the caller's stream, which waits for the engine (see run_tensors).
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
