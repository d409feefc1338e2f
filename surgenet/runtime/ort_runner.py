"""ONNX Runtime runner: CPU, CUDA or TensorRT execution providers; io_binding on GPU."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any, Mapping

import numpy as np

from .errors import BackendUnavailableError
from .metadata import config_from_props
from .base import Runner

PROVIDER_OF = {"cpu": "CPUExecutionProvider", "cuda": "CUDAExecutionProvider", "tensorrt": "TensorrtExecutionProvider"}


def _split_device(device: str) -> tuple[str, int]:
    kind, _, index = str(device).partition(":")
    return kind.lower(), int(index or 0)


def trt_cache_dir(path: str | Path, fp16: bool, root: str | Path | None = None) -> Path:
    """The folder of ONNX Runtime's TensorRT engine and timing caches for this model file.

    ONNX Runtime names its cached engines after the graph's name and inputs, not its weights, so
    two models exported under one name would share (and wrongly reuse) an engine. The folder is
    keyed on a hash of the file's bytes (and of its external data, if any) and on the precision.
    """
    path = Path(path)
    digest = hashlib.sha256()
    for part in [path, *sorted(path.parent.glob(path.name + ".data")), *sorted(path.parent.glob(path.stem + ".onnx_data"))]:
        with open(part, "rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                digest.update(block)
    base = Path(root) if root else path.parent / "ort_trt_cache"
    return base / f"{path.stem}-{digest.hexdigest()[:16]}-{'fp16' if fp16 else 'fp32'}"


class OnnxRuntimeRunner(Runner):
    """Runs an ``.onnx`` file written by ``surgenet-export``.

    Args:
        path: the ONNX file; its config is read from its metadata.
        device: ``cpu``; ``cuda[:N]`` (CUDA provider); ``tensorrt[:N]`` (TensorRT provider, engines
            cached beside the model in a folder keyed on the file's hash, FP16 when ``fp16``). GPU runs bind outputs on the device and
            copy them back once.
        threads: intra-op threads on CPU (default: ONNX Runtime's choice, the physical cores).
        fp16: TensorRT provider only: allow FP16 kernels.
        config: overrides the embedded config.
        cache_dir: where the TensorRT provider's cache folders go (default ``ort_trt_cache/``
            beside the model).
    """

    def __init__(self, path: str | Path, device: str = "cpu", threads: int | None = None, fp16: bool = False,
                 config: Mapping[str, Any] | None = None, cache_dir: str | Path | None = None) -> None:
        import onnxruntime as ort

        kind, index = _split_device(device)
        if kind not in PROVIDER_OF:
            raise BackendUnavailableError(f"unknown ONNX Runtime device {device!r}; use cpu, cuda[:N] or tensorrt[:N].")
        available = ort.get_available_providers()
        if PROVIDER_OF[kind] not in available:
            hint = "pip install onnxruntime-gpu (and a CUDA GPU)" if kind != "cpu" else "reinstall onnxruntime"
            raise BackendUnavailableError(f"ONNX Runtime here has no {PROVIDER_OF[kind]} (available: "
                                          f"{', '.join(available)}); {hint}.")
        path = Path(path)
        providers: list[Any] = []
        if kind == "tensorrt":
            cache = trt_cache_dir(path, fp16, cache_dir)
            cache.mkdir(parents=True, exist_ok=True)
            providers.append(("TensorrtExecutionProvider", {
                "device_id": index, "trt_fp16_enable": bool(fp16), "trt_engine_cache_enable": True,
                "trt_engine_cache_path": str(cache), "trt_timing_cache_enable": True,
                "trt_timing_cache_path": str(cache)}))
        if kind in ("cuda", "tensorrt"):
            providers.append(("CUDAExecutionProvider", {"device_id": index}))
        providers.append("CPUExecutionProvider")
        options = ort.SessionOptions()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        options.log_severity_level = 3
        if threads:
            options.intra_op_num_threads = int(threads)
        self.session = ort.InferenceSession(str(path), options, providers=providers)
        # ONNX Runtime lists the GPU providers of onnxruntime-gpu even when CUDA, cuDNN or TensorRT
        # cannot be loaded, and then quietly builds a CPU session: check what the session got.
        active = self.session.get_providers()
        if PROVIDER_OF[kind] not in active:
            self.session = None
            raise BackendUnavailableError(
                f"ONNX Runtime could not start its {PROVIDER_OF[kind]} (the session runs on {', '.join(active)}): "
                "the CUDA/cuDNN" + (" or TensorRT" if kind == "tensorrt" else "") + " libraries it needs did not "
                "load; its log (severity 0-2) names the missing library. Install the versions this onnxruntime-gpu "
                "was built for, or use device='cpu'.")
        if config is None:
            config = config_from_props(self.session.get_modelmeta().custom_metadata_map, str(path))
        super().__init__(config, [i.name for i in self.session.get_inputs()],
                         [o.name for o in self.session.get_outputs()], f"{kind}:{index}" if kind != "cpu" else "cpu")
        self.backend = f"onnxruntime-{kind}"
        self._gpu = kind != "cpu"
        self._device_index = index

    def run(self, feeds: Mapping[str, np.ndarray]) -> list[np.ndarray]:
        feeds = {n: np.ascontiguousarray(feeds[n], dtype=np.float32) for n in self.input_names}
        if not self._gpu:
            return self.session.run(None, feeds)
        binding = self.session.io_binding()
        for name, value in feeds.items():
            binding.bind_cpu_input(name, value)
        for name in self.output_names:
            binding.bind_output(name, "cuda", self._device_index)
        self.session.run_with_iobinding(binding)
        return binding.copy_outputs_to_cpu()

    def close(self) -> None:
        self.session = None
