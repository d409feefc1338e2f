"""Original facebookresearch ConvNeXt-V2 layout to timm's layout."""

from __future__ import annotations

import re

import torch

# The ImageNet classifier of the original (``head``) is not part of the backbone.
UNUSED = (r"head\.(weight|bias)",)


def is_timm(state_dict: dict[str, torch.Tensor]) -> bool:
    return "stem.0.weight" in state_dict


def convert(state_dict: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """``downsample_layers``/``dwconv``/``pwconvN``/``grn.gamma,beta`` -> timm's ``stem``/``conv_dw``/``mlp``."""
    if is_timm(state_dict):
        return dict(state_dict)
    out = {}
    for key, value in state_dict.items():
        new = key.replace("downsample_layers.0.", "stem.")
        new = re.sub(r"^downsample_layers\.(\d+)\.", r"stages.\1.downsample.", new)
        new = re.sub(r"^stages\.(\d+)\.(\d+)\.", r"stages.\1.blocks.\2.", new)
        new = new.replace(".dwconv.", ".conv_dw.").replace(".pwconv1.", ".mlp.fc1.").replace(".pwconv2.", ".mlp.fc2.")
        if ".grn." in new:
            new = new.replace(".grn.gamma", ".mlp.grn.weight").replace(".grn.beta", ".mlp.grn.bias")
            value = value.reshape(-1)
        new = re.sub(r"^norm\.", "head.norm.", new)
        out[new] = value
    return out
