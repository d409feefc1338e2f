"""Test-only, independent reference implementations of the SurgeNet backbones.

Written from scratch in plain PyTorch from the published architecture
descriptions and the authors' checkpoint key layouts; they do not import
timm.  Used only to check that surgenet's timm-based loader reproduces the
authors' networks.
"""
import math

import torch
from torch import nn

_UNIT_NAMES = ("scale", "gamma")  # res-scales, layer-scales, GRN gamma
_TOKEN_NAMES = ("cls_token", "pos_embed", "register_tokens", "mask_token")


@torch.no_grad()
def randomize_(module: nn.Module, seed: int = 0) -> nn.Module:
    """Fill every parameter of ``module`` with seeded random values (in place).

    * matrices / conv kernels: normal(0, 1/sqrt(fan_in)) (keeps activations O(1));
    * 1-d ``weight`` (norm weights), ``scale`` and ``gamma``: 1 + 0.1 * normal;
    * ``bias`` / ``beta``: 0.05 * normal;
    * cls/pos/register/mask tokens: 0.1 * normal.
    No parameter keeps its default init, so a wrong mapping of any tensor shows.
    Returns ``module``.
    """
    gen = torch.Generator().manual_seed(seed)
    for name, p in module.named_parameters():
        leaf = name.rsplit(".", 1)[-1]
        r = torch.randn(p.shape, generator=gen, dtype=torch.float32)
        if leaf in _TOKEN_NAMES:
            v = 0.1 * r
        elif leaf in _UNIT_NAMES or (leaf == "weight" and p.dim() == 1):
            v = 1.0 + 0.1 * r
        elif leaf in ("bias", "beta"):
            v = 0.05 * r
        elif p.dim() >= 2:
            v = r / math.sqrt(max(1, p[0].numel()))
        else:
            v = 0.1 * r
        p.copy_(v.to(device=p.device, dtype=p.dtype))
    return module


def random_state_dict(model: nn.Module, seed: int = 0) -> dict:
    """Randomize ``model`` in place (see :func:`randomize_`) and return a copy of its state_dict."""
    randomize_(model, seed)
    return {k: v.detach().clone() for k, v in model.state_dict().items()}
