"""Device names checked once, before any model is built: ``auto``, ``cpu``, ``cuda``, ``cuda:N``, ``mps``, ``xpu``.

``torch.device("gpu")`` raises a RuntimeError that lists twenty device types, and
``torch.device("cuda")`` on a machine without a GPU only fails at the first ``.to()``, after
the model has been built and its weights read. :func:`resolve_device` turns both into an
:class:`~surgenet.exceptions.InputError` that says what to pass instead.
"""

from __future__ import annotations

import torch

from .exceptions import InputError
from .runtime.cpu import cpu_flags, cpu_has_native_bf16  # noqa: F401 - the CPU features live in runtime.cpu

DEVICE_HELP = "auto, cpu, cuda, cuda:N, mps or xpu"
_ALIASES = {"gpu": "cuda"}


def resolve_device(name: str | torch.device | None = "auto", local_rank: int = 0) -> torch.device:
    """The device ``name`` stands for, checked to exist on this machine.

    ``auto`` (or None) is this process's GPU (``cuda:local_rank``) when CUDA is available, else
    the CPU; plain ``cuda`` is ``cuda:local_rank`` too, so each torchrun process takes its own.
    """
    if isinstance(name, torch.device):
        device = name
    else:
        text = "auto" if name is None else str(name).strip().lower()
        if text == "auto":
            text = "cuda" if torch.cuda.is_available() else "cpu"
        if text in _ALIASES:
            raise InputError(f"unknown device {name!r}; did you mean {_ALIASES[text]!r}? Valid: {DEVICE_HELP}.")
        try:
            device = torch.device(text)
        except RuntimeError:
            raise InputError(f"unknown device {name!r}; valid: {DEVICE_HELP}.") from None
        if device.type == "cuda" and device.index is None:
            device = torch.device("cuda", local_rank)
    _check_available(device, str(name))
    return device


def _check_available(device: torch.device, asked: str) -> None:
    if device.type == "cpu":
        return
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise InputError(f"device {asked!r}: no CUDA GPU is visible to PyTorch (torch.cuda.is_available() is "
                             "False); pass cpu, or run where a GPU and a CUDA build of PyTorch are present.")
        count = torch.cuda.device_count()
        if device.index is not None and device.index >= count:
            raise InputError(f"device {asked!r}: this machine has {count} CUDA GPU(s), cuda:0 to cuda:{count - 1}.")
        return
    if device.type == "mps":
        if not torch.backends.mps.is_available():
            raise InputError(f"device {asked!r}: Apple's MPS backend is not available here; pass cpu.")
        return
    if device.type == "xpu":
        if not (hasattr(torch, "xpu") and torch.xpu.is_available()):
            raise InputError(f"device {asked!r}: no Intel XPU is visible to PyTorch; pass cpu.")
        return
    raise InputError(f"device {asked!r} cannot run a model here; valid: {DEVICE_HELP}.")


__all__ = ["DEVICE_HELP", "cpu_flags", "cpu_has_native_bf16", "resolve_device"]
