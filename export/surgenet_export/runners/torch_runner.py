"""PyTorch runner: the same interface for an ``nn.Module``, in FP32, FP16, bf16 or channels_last."""

from __future__ import annotations

import contextlib
import copy as copy_module
from typing import Any, Mapping

import numpy as np
import torch
import torch.nn as nn

from ..errors import ExportError
from ..graph import build_graph
from .base import Runner

DTYPES = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}


class TorchRunner(Runner):
    """Runs a surgenet task model (its forward, or its online step for phase models).

    Args:
        model: the module; copied first (``copy=True``) so that moving or casting it here never
            changes the caller's model.
        device: ``cpu``, ``cuda`` or ``cuda:N``; default CUDA when available.
        precision: ``fp32``; ``fp16`` casts the weights (CUDA); ``bf16`` runs under autocast.
        channels_last: memory format of weights and inputs.
        compile: wrap the forward in ``torch.compile`` (compiled on the first call).
        config: the model's config, when it has no ``config`` attribute.
    """

    backend = "torch"

    def __init__(self, model: nn.Module, device: str | None = None, precision: str = "fp32",
                 channels_last: bool = False, compile: bool = False, config: Mapping[str, Any] | None = None,
                 copy: bool = True) -> None:
        if precision not in DTYPES:
            raise ExportError(f"precision must be one of {', '.join(DTYPES)}, got {precision!r}.")
        device = device or ("cuda" if torch.cuda.is_available() else "cpu")
        if precision == "fp16" and not str(device).startswith("cuda"):
            raise ExportError("fp16 PyTorch inference needs a CUDA device; on CPU use precision='bf16'.")
        spec = build_graph(copy_module.deepcopy(model) if copy else model, config)
        super().__init__(spec.config, spec.input_names, spec.output_names, str(device))
        module = spec.module.to(device).eval()
        if precision == "fp16":
            module = module.half()
        if channels_last:
            module = module.to(memory_format=torch.channels_last)
        self._module = module
        self._forward = torch.compile(module) if compile else module
        self._dtype = DTYPES[precision]
        self._precision = precision
        self._channels_last = channels_last
        self.backend = f"torch-{precision}"

    def _autocast(self):
        if self._precision == "bf16":
            return torch.autocast(device_type=torch.device(self.device).type, dtype=torch.bfloat16)
        return contextlib.nullcontext()

    def run(self, feeds: Mapping[str, np.ndarray]) -> list[np.ndarray]:
        args = []
        for i, name in enumerate(self.input_names):
            t = torch.from_numpy(np.ascontiguousarray(feeds[name], dtype=np.float32)).to(self.device, non_blocking=True)
            if self._precision == "fp16":
                t = t.half()
            if i == 0 and self._channels_last:
                t = t.contiguous(memory_format=torch.channels_last)
            args.append(t)
        with torch.inference_mode(), self._autocast():
            out = self._forward(*args)
        outs = out if isinstance(out, (tuple, list)) else (out,)
        return [o.float().cpu().numpy() for o in outs]

    def forward_tensor(self, x: torch.Tensor) -> torch.Tensor:
        """Tensor in, tensor out, on the runner's device (no host copies: for GPU timing)."""
        if self._precision == "fp16":
            x = x.half()
        if self._channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        with torch.inference_mode(), self._autocast():
            out = self._forward(x)
        return out[0] if isinstance(out, (tuple, list)) else out
