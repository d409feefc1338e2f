"""Mask propagation by RAFT optical flow (torchvision ``raft_small`` / ``raft_large``).

Weights are read only from the local torch hub cache (``torch.hub.get_dir()/checkpoints``, where
``torchvision`` puts them), never downloaded here: an operating-room machine is often offline,
and a download in the middle of a run would stall it. The occlusion check and the warping are
those of :class:`~.flow.FlowPropagator`.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from ..exceptions import InputError
from .flow import FlowPropagator

RAFT_VARIANTS = ("raft_small", "raft_large")


def _weights_enum(variant: str):
    from torchvision.models import optical_flow

    return {"raft_small": optical_flow.Raft_Small_Weights, "raft_large": optical_flow.Raft_Large_Weights}[variant]


def raft_weights_path(variant: str = "raft_small") -> Path:
    """Where torchvision keeps the default weights of ``variant`` in the torch hub cache."""
    if variant not in RAFT_VARIANTS:
        raise InputError(f"unknown RAFT variant {variant!r}; valid: {', '.join(RAFT_VARIANTS)}.")
    url = _weights_enum(variant).DEFAULT.url
    return Path(torch.hub.get_dir()) / "checkpoints" / os.path.basename(url)


def load_raft(variant: str = "raft_small", device: str | torch.device = "cpu") -> torch.nn.Module:
    """The torchvision RAFT network with its cached default weights, strictly loaded, in eval mode."""
    from torchvision.models.optical_flow import raft_large, raft_small

    path = raft_weights_path(variant)
    if not path.is_file():
        url = _weights_enum(variant).DEFAULT.url
        raise InputError(
            f"RAFT weights not found at {path}. On a machine with internet run: python -c \"import torchvision; "
            f"torchvision.models.optical_flow.{variant}(weights='DEFAULT')\" (or download {url} to that path, "
            "TORCH_HOME sets the cache folder); or use --method flow, which needs no weights.")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # a truncated or foreign file: say which and how to fix it
        raise InputError(f"cannot read RAFT weights {path}: {exc}. Delete the file and fetch it again.") from exc
    net = (raft_small if variant == "raft_small" else raft_large)(weights=None, progress=False)
    try:
        net.load_state_dict(state, strict=True)
    except (RuntimeError, TypeError, AttributeError) as exc:  # missing/unexpected keys, shapes, not a dict
        first = str(exc).strip().splitlines()[:3]
        raise InputError(f"RAFT weights {path} do not fit {variant} ({' '.join(first)} ...). "
                         "Delete the file and fetch it again.") from exc
    return net.eval().to(device)


class RAFTPropagator(FlowPropagator):
    """RAFT flow (Teed and Deng, ECCV 2020) for both directions in one batch.

    Args:
        variant: ``raft_small`` (default, faster) or ``raft_large``.
        max_side: frames are resized so their longer side is at most this (RAFT's cost grows with area).
        num_flow_updates: RAFT's recurrent refinement steps (torchvision's default is 12).
        device: where RAFT runs (default CUDA when available).
        scale, alpha, beta, fill_radius, consistency: see :class:`~.flow.FlowPropagator` (``scale`` is set
            from ``max_side``).
    """

    name = "raft"

    def __init__(self, variant: str = "raft_small", max_side: int = 512, num_flow_updates: int = 12,
                 device: str | torch.device | None = None, alpha: float = 0.01, beta: float = 0.5,
                 fill_radius: int = 3, consistency: bool = True) -> None:
        super().__init__(1.0, alpha, beta, fill_radius, consistency)
        if max_side < 64:
            raise InputError(f"max_side must be at least 64, got {max_side}.")
        self.device = torch.device(device) if device else torch.device("cuda" if torch.cuda.is_available() else "cpu")
        self.net = load_raft(variant, self.device)
        self.variant, self.max_side, self.num_flow_updates = variant, int(max_side), int(num_flow_updates)

    def _prepare(self, frame: np.ndarray) -> torch.Tensor:
        x = torch.from_numpy(np.array(frame)).permute(2, 0, 1)[None].float().div_(127.5).sub_(1.0)
        h, w = frame.shape[:2]
        factor = min(1.0, self.max_side / max(h, w))
        if factor < 1:
            x = F.interpolate(x, size=(max(8, round(h * factor)), max(8, round(w * factor))), mode="bilinear",
                              align_corners=False, antialias=True)
        return x

    @torch.inference_mode()
    def _flows(self, prev: torch.Tensor, cur: torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
        h, w = prev.shape[-2:]
        # RAFT needs sizes divisible by 8 and at least 128 (its correlation pyramid halves 4 times)
        pad = (0, max(128, w + (-w) % 8) - w, 0, max(128, h + (-h) % 8) - h)
        a = F.pad(torch.cat([prev, cur]), pad, mode="replicate").to(self.device)
        b = F.pad(torch.cat([cur, prev]), pad, mode="replicate").to(self.device)
        flow = self.net(a, b, num_flow_updates=self.num_flow_updates)[-1][..., :h, :w]
        flow = flow.permute(0, 2, 3, 1).float().cpu().numpy()
        return np.ascontiguousarray(flow[0]), np.ascontiguousarray(flow[1])
