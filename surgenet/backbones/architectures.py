"""Architecture ids of the registry mapped to timm constructors with the right arguments.

The SurgeNet CAFormer-S18 differs from timm's default: ReLU replaces StarReLU in the SepConv
token mixer and in every MLP, so the network has no StarReLU scale/bias parameters.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import timm
import torch.nn as nn


@dataclass(frozen=True)
class Architecture:
    """A timm model name and the keyword arguments that make it the released network."""

    timm_name: str
    kwargs: dict[str, Any] = field(default_factory=dict)
    family: str = "cnn"  # cnn: hierarchical feature maps; vit: plain ViT blocks
    default_out_indices: tuple[int, ...] = (0, 1, 2, 3)
    native_size: int | None = None  # image size the ViT position embeddings were trained at


_VIT = {"dynamic_img_size": True}

ARCHITECTURES: dict[str, Architecture] = {
    "caformer_s18_surgenet": Architecture("caformer_s18", {"mlp_act": nn.ReLU, "act1_layer": nn.ReLU}),
    "convnextv2_tiny": Architecture("convnextv2_tiny"),
    "pvt_v2_b2": Architecture("pvt_v2_b2"),
    # DINO v1 ViTs: qkv bias, LayerNorm eps 1e-6, class token with position embedding.
    "vit_small_patch16_dinov1": Architecture("vit_small_patch16_224", _VIT, "vit", (2, 5, 8, 11), 224),
    "vit_base_patch16_dinov1": Architecture("vit_base_patch16_224", _VIT, "vit", (2, 5, 8, 11), 224),
    # DINOv2 with 4 registers; patch 14 pads inputs that are not a multiple of 14.
    "vit_small_patch14_reg4_dinov2": Architecture(
        "vit_small_patch14_reg4_dinov2", {**_VIT, "dynamic_img_pad": True}, "vit", (2, 5, 8, 11), 336),
    "vit_base_patch14_reg4_dinov2": Architecture(
        "vit_base_patch14_reg4_dinov2", {**_VIT, "dynamic_img_pad": True}, "vit", (2, 5, 8, 11), 336),
    "vit_large_patch14_reg4_dinov2": Architecture(
        "vit_large_patch14_reg4_dinov2", {**_VIT, "dynamic_img_pad": True}, "vit", (4, 11, 17, 23), 336),
    # DINOv3: RoPE, 4 storage tokens, layer scale, q/v biases.
    "vit_small_patch16_dinov3_qkvb": Architecture("vit_small_patch16_dinov3_qkvb", _VIT, "vit", (2, 5, 8, 11), 336),
    "vit_base_patch16_dinov3_qkvb": Architecture("vit_base_patch16_dinov3_qkvb", _VIT, "vit", (2, 5, 8, 11), 336),
    "vit_large_patch16_dinov3_qkvb": Architecture("vit_large_patch16_dinov3_qkvb", _VIT, "vit", (4, 11, 17, 23), 336),
}


def create_network(arch: str, **overrides: Any) -> nn.Module:
    """The full timm network of ``arch`` (no classifier, random weights)."""
    spec = ARCHITECTURES[arch]
    kwargs = dict(spec.kwargs)
    if spec.native_size is not None:
        kwargs.setdefault("img_size", spec.native_size)
    kwargs.update(overrides)
    return timm.create_model(spec.timm_name, pretrained=False, num_classes=0, **kwargs)
