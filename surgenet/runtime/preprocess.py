"""Preprocessing baked into the graph: the exported model takes RGB frames scaled to 0..1.

Deployment code then only resizes and divides by 255; the mean/std cannot be forgotten or
mixed up (ImageNet vs surgical statistics) on the way to the operating room.
"""

from __future__ import annotations

from typing import Sequence

import torch
import torch.nn as nn


class BakedNormalize(nn.Module):
    """``model((x - mean) / std)``, with mean and std stored as graph constants."""

    def __init__(self, model: nn.Module, mean: Sequence[float], std: Sequence[float]) -> None:
        super().__init__()
        self.model = model
        self.register_buffer("mean", torch.tensor(mean, dtype=torch.float32).view(1, -1, 1, 1))
        # Multiplying by the reciprocal is one op cheaper than a division and exact enough (1 ulp).
        self.register_buffer("inv_std", 1.0 / torch.tensor(std, dtype=torch.float32).view(1, -1, 1, 1))

    def forward(self, x: torch.Tensor, *rest: torch.Tensor):
        return self.model((x - self.mean) * self.inv_std, *rest)
