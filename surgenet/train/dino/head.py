"""The DINO projection head: an MLP, L2 normalisation, and a weight-normalised prototype layer."""

from __future__ import annotations

import math

import torch
import torch.nn as nn
import torch.nn.functional as F


class WeightNormLinear(nn.Module):
    """A bias-free linear layer ``W = g * v / ||v||`` (row-wise), as ``weight_norm`` gives.

    With ``learn_norm=False`` (DINO's ``norm_last_layer``) ``g`` stays fixed at 1, so every
    prototype has unit norm; this keeps training stable. The keys ``weight_g``/``weight_v`` are
    those of DINO checkpoints.
    """

    def __init__(self, in_features: int, out_features: int, learn_norm: bool = False) -> None:
        super().__init__()
        v = torch.empty(out_features, in_features)
        nn.init.kaiming_uniform_(v, a=math.sqrt(5))  # nn.Linear's default, as in DINO
        self.weight_v = nn.Parameter(v)
        g = torch.ones(out_features, 1) if not learn_norm else v.norm(dim=1, keepdim=True)
        self.weight_g = nn.Parameter(g, requires_grad=learn_norm)

    @property
    def weight(self) -> torch.Tensor:
        return self.weight_g * self.weight_v / self.weight_v.norm(dim=1, keepdim=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.linear(x, self.weight)


class DINOHead(nn.Module):
    """MLP (``nlayers`` Linear + GELU, hidden ``hidden_dim``) to ``bottleneck_dim``, L2 norm,
    then ``out_dim`` prototypes."""

    def __init__(self, in_dim: int, out_dim: int = 65536, hidden_dim: int = 2048, bottleneck_dim: int = 256,
                 nlayers: int = 3, norm_last_layer: bool = True) -> None:
        super().__init__()
        nlayers = max(nlayers, 1)
        if nlayers == 1:
            self.mlp = nn.Linear(in_dim, bottleneck_dim)
        else:
            layers: list[nn.Module] = [nn.Linear(in_dim, hidden_dim), nn.GELU()]
            for _ in range(nlayers - 2):
                layers += [nn.Linear(hidden_dim, hidden_dim), nn.GELU()]
            layers.append(nn.Linear(hidden_dim, bottleneck_dim))
            self.mlp = nn.Sequential(*layers)
        self.mlp.apply(self._init)
        self.last_layer = WeightNormLinear(bottleneck_dim, out_dim, learn_norm=not norm_last_layer)

    @staticmethod
    def _init(module: nn.Module) -> None:
        if isinstance(module, nn.Linear):
            nn.init.trunc_normal_(module.weight, std=0.02)
            nn.init.zeros_(module.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.normalize(self.mlp(x), dim=-1, p=2)
        return self.last_layer(x)
