"""Runners with one interface (``runner(x) -> logits``, ``runner.config``) for every backend.

``load_runner(path)`` picks the backend from the file: ``.onnx`` -> ONNX Runtime (or OpenVINO),
``.engine``/``.plan`` -> TensorRT, a folder -> its engine when a GPU is present, else its ONNX
file, or a ``save_pretrained`` folder -> PyTorch.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ..errors import ExportError
from .base import Runner

BACKENDS = ("torch", "onnxruntime", "openvino", "tensorrt")
ENGINE_SUFFIXES = (".engine", ".plan")


def load_runner(path: str | Path, backend: str | None = None, device: str | None = None, **options: Any) -> Runner:
    """A runner for an exported model (or a saved PyTorch model folder).

    Args:
        path: an ``.onnx`` file, a TensorRT ``.engine``, the output folder of ``surgenet-export``
            (holding ``model.onnx`` and/or ``model.engine``) or a ``save_pretrained`` folder.
        backend: ``onnxruntime``, ``openvino``, ``tensorrt`` or ``torch``; default from ``path``.
        device: ``cpu``/``cuda[:N]`` (ONNX Runtime also ``tensorrt[:N]``; OpenVINO ``CPU``/``GPU``).
        options: passed to the runner class (e.g. ``threads``, ``precision``, ``static_shape``).

    Example:
        >>> runner = load_runner("export/model.onnx")
        >>> logits = runner(batch)          # float32 (N, 3, H, W) -> numpy logits
        >>> surgenet.Predictor(runner)      # the same Predictor as for the PyTorch model
    """
    if backend is not None and backend not in BACKENDS:
        raise ExportError(f"unknown backend {backend!r}; valid: {', '.join(BACKENDS)}.")
    path = Path(path).expanduser()
    if not path.exists():
        raise ExportError(f"{path} does not exist.")
    if path.is_dir():
        path, backend = _pick_in_folder(path, backend)
    if backend is None:
        backend = "tensorrt" if path.suffix in ENGINE_SUFFIXES else "onnxruntime"
    if backend == "torch":
        import surgenet

        from .torch_runner import TorchRunner

        return TorchRunner(surgenet.load_model(path), device=device, **options)
    if path.suffix in ENGINE_SUFFIXES and backend != "tensorrt":
        raise ExportError(f"{path} is a TensorRT plan; only backend='tensorrt' runs it.")
    if backend == "tensorrt":
        if path.suffix not in ENGINE_SUFFIXES:
            raise ExportError(f"{path} is not a TensorRT engine; build one with surgenet-export --trt.")
        from .trt_runner import TensorRTRunner

        return TensorRTRunner(path, device=device or "cuda", **options)
    if backend == "openvino":
        from .openvino_runner import OpenVINORunner

        return OpenVINORunner(path, device=device or "CPU", **options)
    from .ort_runner import OnnxRuntimeRunner

    return OnnxRuntimeRunner(path, device=device or "cpu", **options)


def _pick_in_folder(folder: Path, backend: str | None) -> tuple[Path, str | None]:
    if (folder / "config.json").is_file() and (folder / "model.safetensors").is_file():
        if backend not in (None, "torch"):
            raise ExportError(f"{folder} is a saved PyTorch model; export it with surgenet-export first.")
        return folder, "torch"
    engine, onnx_file = folder / "model.engine", folder / "model.onnx"
    if backend in (None, "tensorrt") and engine.is_file():
        import torch

        if backend == "tensorrt" or torch.cuda.is_available():
            return engine, "tensorrt"
    if onnx_file.is_file():
        return onnx_file, backend if backend != "tensorrt" else None
    raise ExportError(f"{folder} holds neither model.onnx nor model.engine nor a saved model; "
                      "point at the output folder of surgenet-export.")


__all__ = ["BACKENDS", "Runner", "load_runner"]
