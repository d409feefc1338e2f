"""PyTorch runner: the same interface for an ``nn.Module``, in FP32, FP16, bf16 or channels_last,
eager, under ``torch.compile``, or compiled with CUDA graphs (``cuda_graphs=True``).

CUDA graphs (``torch.compile(mode="reduce-overhead")``) replay the whole forward as one recorded
graph, removing the per-kernel launch cost that dominates small batches on a fast GPU. A graph is
recorded for one input shape, so shapes are static (``dynamic=False``): each new batch or size is
compiled and recorded once, on its first call, which then runs it ``warmup`` more times so that
the timed calls replay a finished graph.
"""

from __future__ import annotations

import contextlib
import copy as copy_module
from typing import Any, Mapping

import numpy as np
import torch
import torch.nn as nn

from .errors import BackendUnavailableError, ExportError
from .graph import build_graph
from .base import Runner

DTYPES = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}


def _check_graph_device(device: str) -> None:
    """CUDA graphs record CUDA kernels: on another device ``reduce-overhead`` would quietly run without."""
    if not str(device).startswith("cuda") or not torch.cuda.is_available():
        raise BackendUnavailableError(f"CUDA graphs need an NVIDIA GPU with CUDA, and the runner's device is {device}"
                                      f"{'' if torch.cuda.is_available() else ' (no CUDA here)'}; use an eager or "
                                      "compiled CPU backend.")


class TorchRunner(Runner):
    """Runs a surgenet task model (its forward, or its online step for phase models).

    Args:
        model: the module; copied first (``copy=True``) so that moving or casting it here never
            changes the caller's model.
        device: ``cpu``, ``cuda`` or ``cuda:N``; default CUDA when available.
        precision: ``fp32``; ``fp16`` casts the weights (CUDA); ``bf16`` runs under autocast.
        channels_last: memory format of weights and inputs.
        compile: wrap the forward in ``torch.compile`` (compiled on the first call).
        cuda_graphs: ``torch.compile(mode="reduce-overhead", dynamic=False)`` on CUDA: one recorded
            graph per input shape, each warmed up on its first call (FP16 or bf16 weights).
        warmup: with ``cuda_graphs``, the extra runs of each new shape before its result is used.
        config: the model's config, when it has no ``config`` attribute.
    """

    backend = "torch"

    def __init__(self, model: nn.Module, device: str | None = None, precision: str = "fp32",
                 channels_last: bool = False, compile: bool = False, config: Mapping[str, Any] | None = None,
                 copy: bool = True, cuda_graphs: bool = False, warmup: int = 3) -> None:
        if precision not in DTYPES:
            raise ExportError(f"precision must be one of {', '.join(DTYPES)}, got {precision!r}.")
        device = device or ("cuda" if torch.cuda.is_available() else "cpu")
        if precision == "fp16" and not str(device).startswith("cuda"):
            raise ExportError("fp16 PyTorch inference needs a CUDA device; on CPU use precision='bf16'.")
        if cuda_graphs:
            _check_graph_device(device)
        spec = build_graph(copy_module.deepcopy(model) if copy else model, config)
        super().__init__(spec.config, spec.input_names, spec.output_names, str(device))
        module = spec.module.to(device).eval()
        # FP16 casts the weights; bf16 does too with CUDA graphs (one dtype in the recorded graph),
        # and otherwise runs under autocast.
        self._cast = DTYPES[precision] if precision == "fp16" or (cuda_graphs and precision == "bf16") else None
        if self._cast is not None:
            module = module.to(self._cast)
        if channels_last:
            module = module.to(memory_format=torch.channels_last)
        self._module = module
        if cuda_graphs:
            self._forward = torch.compile(module, mode="reduce-overhead", dynamic=False)
        else:
            self._forward = torch.compile(module) if compile else module
        self._dtype = DTYPES[precision]
        self._precision = precision
        self._channels_last = channels_last
        self.cuda_graphs, self.warmup = bool(cuda_graphs), int(warmup)
        self._warm: set[tuple[tuple[int, ...], ...]] = set()  # input shapes already recorded
        self.backend = f"torch-{precision}" + ("-cuda-graphs" if cuda_graphs else "")

    def _autocast(self):
        if self._precision == "bf16" and self._cast is None:
            return torch.autocast(device_type=torch.device(self.device).type, dtype=torch.bfloat16)
        return contextlib.nullcontext()

    def run(self, feeds: Mapping[str, np.ndarray]) -> list[np.ndarray]:
        args = []
        for i, name in enumerate(self.input_names):
            t = torch.from_numpy(np.ascontiguousarray(feeds[name], dtype=np.float32)).to(self.device, non_blocking=True)
            if self._cast is not None:
                t = t.to(self._cast)
            if i == 0 and self._channels_last:
                t = t.contiguous(memory_format=torch.channels_last)
            args.append(t)
        out = self._call(*args)
        outs = out if isinstance(out, (tuple, list)) else (out,)
        # .cpu() copies: a CUDA graph's outputs are overwritten by its next replay.
        return [o.float().cpu().numpy() for o in outs]

    def _call(self, *args: torch.Tensor) -> Any:
        """The forward; with CUDA graphs a new input shape is first recorded and warmed up."""
        with torch.inference_mode(), self._autocast():
            if self.cuda_graphs:
                shapes = tuple(tuple(a.shape) for a in args)
                if shapes not in self._warm:
                    for _ in range(self.warmup):
                        torch.compiler.cudagraph_mark_step_begin()
                        self._forward(*args)
                    self._warm.add(shapes)
                torch.compiler.cudagraph_mark_step_begin()
            return self._forward(*args)

    def forward_tensor(self, x: torch.Tensor) -> torch.Tensor:
        """Tensor in, tensor out, on the runner's device (no host copies: for GPU timing)."""
        if self._cast is not None:
            x = x.to(self._cast)
        if self._channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        out = self._call(x)
        out = out[0] if isinstance(out, (tuple, list)) else out
        return out.clone() if self.cuda_graphs else out
