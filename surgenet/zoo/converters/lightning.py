"""PyTorch Lightning checkpoints of self-supervised runs (SimCLR, BYOL, ...): the backbone inside.

A Lightning ``.ckpt`` holds the LightningModule's ``state_dict`` with its attribute names as
prefixes: the backbone (``backbone.``, ``encoder.``, ...) next to projection and prediction
heads and, for EMA methods, momentum copies (``backbone_momentum.``, ``target_backbone.``). The
online backbone is kept; everything else is named as dropped. A backbone built as
``nn.Sequential(*list(torchvision_resnet.children())[:-1])`` has numbered keys (``0.weight``,
``4.0.conv1.weight``), mapped to the torchvision/timm ResNet names they stand for.
"""

from __future__ import annotations

import re
from typing import Any, Mapping

import torch

from ...exceptions import CheckpointError

# Attribute names of the online backbone in common Lightning modules (lightly's examples, the
# published SimCLR/BYOL training code, pl_bolts), tried in this order.
BACKBONE_PREFIXES = ("backbone.", "student_backbone.", "online_backbone.", "online_network.encoder.",
                     "encoder.", "online_encoder.", "convnet.", "model.backbone.", "model.encoder.", "model.")
_RESNET_CHILDREN = ("conv1", "bn1", "relu", "maxpool", "layer1", "layer2", "layer3", "layer4", "avgpool", "fc")


def is_lightning(obj: Any) -> bool:
    """A Lightning checkpoint: a ``state_dict`` beside Lightning's bookkeeping keys."""
    return (isinstance(obj, Mapping) and isinstance(obj.get("state_dict"), Mapping)
            and ("pytorch-lightning_version" in obj or "global_step" in obj))


def backbone_from_lightning(obj: Mapping[str, Any], source: str) -> tuple[dict[str, torch.Tensor], list[str]]:
    """The online backbone's flat state dict and the keys dropped (heads, momentum copies)."""
    sd = {k: v for k, v in obj["state_dict"].items() if isinstance(v, torch.Tensor)}
    prefix = next((p for p in BACKBONE_PREFIXES if any(k.startswith(p) for k in sd)), None)
    if prefix is None:
        roots = sorted({k.split(".")[0] for k in sd})
        raise CheckpointError(f"{source} is a Lightning checkpoint, but no backbone was found among its modules "
                              f"{roots[:10]} (looked for {', '.join(p.rstrip('.') for p in BACKBONE_PREFIXES)}). "
                              "Extract the backbone's state dict and pass that file as weights=.")
    kept = {k[len(prefix):]: v for k, v in sd.items() if k.startswith(prefix)}
    dropped = [k for k in sd if not k.startswith(prefix)]
    return sequential_resnet_to_names(kept), dropped


def sequential_resnet_to_names(sd: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """``nn.Sequential`` children of a torchvision ResNet (``0.``, ``1.``, ``4.0.conv1``) to the
    ResNet's names (``conv1``, ``bn1``, ``layer1.0.conv1``), which timm's ResNet shares."""
    if not sd or not all(re.match(r"^\d+\.", k) for k in sd) or not any(k.startswith("4.0.conv1.") for k in sd):
        return sd
    out = {}
    for key, value in sd.items():
        index, rest = key.split(".", 1)
        out[f"{_RESNET_CHILDREN[int(index)]}.{rest}"] = value
    return out
