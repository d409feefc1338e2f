"""``load_runner(path)``: a runner of an exported file or folder, its runtime picked from the file.

(A backend of the registry, runtime and precision together, opens with
:func:`surgenet.runtime.registry.open_runner`.) ``load_runner`` picks the runtime from the file: ``.onnx`` -> ONNX Runtime (or OpenVINO),
``.xml`` (the int8 IR of ``--int8``) -> OpenVINO, ``.engine``/``.plan`` -> TensorRT, a folder -> its engine when a GPU is present and the engine
runs here (else its ONNX file, with a warning), or a ``save_pretrained`` folder -> PyTorch.
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

from .base import Runner
from .errors import BackendUnavailableError, ExportError
from .registry import RUNTIMES
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
    if backend is not None and backend not in RUNTIMES:
        raise ExportError(f"unknown backend {backend!r}; valid: {', '.join(RUNTIMES)}.")
    path = Path(path).expanduser()
    if not path.exists():
        raise ExportError(f"{path} does not exist.")
    if path.is_dir():
        folder = path
        path, picked = _pick_in_folder(path, backend)
        if picked == "tensorrt" and backend is None:
            return _engine_or_onnx(folder, path, device, options)
        backend = picked
    if backend is None:
        backend = ("tensorrt" if path.suffix in ENGINE_SUFFIXES else "openvino" if path.suffix == ".xml"
                   else "onnxruntime")
    if path.suffix == ".xml" and backend != "openvino":
        raise ExportError(f"{path} is an OpenVINO IR; only backend='openvino' runs it.")
    if backend == "torch":
        from ..models import load_model
        from .torch_runner import TorchRunner

        return TorchRunner(load_model(path), device=device, **options)
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


def _engine_or_onnx(folder: Path, engine: Path, device: str | None, options: dict[str, Any]) -> Runner:
    """The folder's engine, or its ONNX file when the engine cannot run here (TensorRT missing,
    a driver too old, a plan built for another TensorRT version or GPU), with a warning."""
    from .trt_runner import TensorRTRunner

    onnx_file = folder / "model.onnx"
    try:
        return TensorRTRunner(engine, device=device or "cuda", **options)
    except BackendUnavailableError as exc:
        if not onnx_file.is_file():
            raise
        reason = exc
    import onnxruntime as ort

    from .ort_runner import OnnxRuntimeRunner

    ort_device = "cuda" if "CUDAExecutionProvider" in ort.get_available_providers() else "cpu"
    if device and device.startswith("cuda"):
        ort_device = device if ort_device == "cuda" else "cpu"
    warnings.warn(f"not using {engine}: {reason} Running {onnx_file} with ONNX Runtime ({ort_device}) instead.",
                  stacklevel=3)
    try:
        return OnnxRuntimeRunner(onnx_file, device=ort_device)
    except BackendUnavailableError:
        if ort_device == "cpu":
            raise
        return OnnxRuntimeRunner(onnx_file, device="cpu")  # CUDA libraries listed but not loadable


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


__all__ = ["ENGINE_SUFFIXES", "Runner", "load_runner"]
