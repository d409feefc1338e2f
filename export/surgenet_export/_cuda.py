"""The one check every CUDA-only path makes first, with one message."""

from __future__ import annotations

from .errors import BackendUnavailableError

NEEDS_GPU = ("TensorRT needs an NVIDIA GPU with CUDA, and none is available here "
             "(torch.cuda.is_available() is False). Export the ONNX model here (--onnx) and build the "
             "engine on the deployment machine with `surgenet-export ... --trt`.")


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
