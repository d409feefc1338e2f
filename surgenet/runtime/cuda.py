"""The checks every CUDA-only path makes first, each with one message that says the fix."""

from __future__ import annotations

from typing import Any, Callable

from .errors import BackendUnavailableError

NEEDS_GPU = ("TensorRT needs an NVIDIA GPU with CUDA, and none is available here "
             "(torch.cuda.is_available() is False). Export the ONNX model here (surgenet-export without --trt) "
             "and build the engine on the deployment machine with `surgenet-export ... --trt`.")


def require_cuda() -> None:
    import torch

    if not torch.cuda.is_available():
        raise BackendUnavailableError(NEEDS_GPU)


def import_tensorrt():
    """The ``tensorrt`` module, after checking for a GPU (the GPU is the first thing users lack)."""
    require_cuda()
    try:
        import tensorrt
    except ImportError as exc:
        raise BackendUnavailableError("the TensorRT Python package is not installed: pip install 'surgenet[trt]' "
                                      "(tensorrt>=10).") from exc
    return tensorrt


def create_trt_object(factory: Callable[[Any], Any], logger: Any, trt_version: str) -> Any:
    """``trt.Builder(logger)`` or ``trt.Runtime(logger)``, with the failure users actually meet named.

    When the NVIDIA driver is older than the CUDA that TensorRT was built with, the C++
    constructor fails and returns nullptr, which the pybind layer reports as a ``TypeError``
    ("__init__(): incompatible constructor arguments") rather than a CUDA error.
    """
    try:
        return factory(logger)
    except TypeError as exc:
        name = getattr(factory, "__name__", "the TensorRT object")
        raise BackendUnavailableError(
            f"TensorRT {trt_version} could not create {name} ({exc}). This usually means the NVIDIA driver is too "
            "old for the CUDA version this TensorRT wheel needs: update the driver (nvidia-smi shows the highest "
            "CUDA version it supports) or install a TensorRT built for an older CUDA.") from exc
