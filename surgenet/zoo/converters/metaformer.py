"""Original sail-sg MetaFormer layout (the SurgeNet CAFormer release) to timm's layout."""

from __future__ import annotations

import re

import torch

# The authors' classification head (MlpHead: fc1, norm, fc2) is not part of the backbone.
UNUSED = (r"head\.fc1\.(weight|bias)", r"head\.fc2\.(weight|bias)", r"head\.norm\.(weight|bias)",
          r"head\.(weight|bias)")


def is_timm(state_dict: dict[str, torch.Tensor]) -> bool:
    return "stem.conv.weight" in state_dict


def convert(state_dict: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """``downsample_layers.N`` / ``stages.N.M`` / ``norm`` -> ``stem`` / ``stages.N.blocks.M`` / ``head.norm``.

    Linear weights of the original become 1x1 convolutions in timm's first two stages; that
    reshape is left to the loader, which reshapes any tensor whose element count matches.
    """
    if is_timm(state_dict):
        return dict(state_dict)
    out = {}
    for key, value in state_dict.items():
        new = key
        if new.startswith("downsample_layers.0."):
            new = "stem." + new[len("downsample_layers.0."):].replace("post_norm", "norm")
        else:
            new = re.sub(r"^downsample_layers\.(\d+)\.pre_norm\.", r"stages.\1.downsample.norm.", new)
            new = re.sub(r"^downsample_layers\.(\d+)\.conv\.", r"stages.\1.downsample.conv.", new)
            new = re.sub(r"^stages\.(\d+)\.(\d+)\.", r"stages.\1.blocks.\2.", new)
            new = re.sub(r"^norm\.", "head.norm.", new)
        out[new] = value
    return out
