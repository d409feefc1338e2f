"""Original whai362 PVTv2 layout to timm's layout."""

from __future__ import annotations

import re

import torch

UNUSED = (r"head\.(weight|bias)",)


def is_timm(state_dict: dict[str, torch.Tensor]) -> bool:
    return "patch_embed.proj.weight" in state_dict


def convert(state_dict: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """``patch_embedN``/``blockN.M``/``normN`` -> ``patch_embed``, ``stages.N-1.{downsample,blocks.M,norm}``."""
    if is_timm(state_dict):
        return dict(state_dict)
    out = {}
    for key, value in state_dict.items():
        new = key.replace("patch_embed1.", "patch_embed.")
        new = re.sub(r"^patch_embed([234])\.", lambda m: f"stages.{int(m.group(1)) - 1}.downsample.", new)
        new = re.sub(r"^block(\d+)\.(\d+)\.", lambda m: f"stages.{int(m.group(1)) - 1}.blocks.{m.group(2)}.", new)
        new = re.sub(r"^norm(\d+)\.", lambda m: f"stages.{int(m.group(1)) - 1}.norm.", new)
        new = new.replace(".dwconv.dwconv.", ".dwconv.")
        out[new] = value
    return out
