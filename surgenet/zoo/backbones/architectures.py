"""Architecture ids of the registry mapped to timm constructors with the right arguments.

The SurgeNet CAFormer-S18 differs from timm's default: ReLU replaces StarReLU in the SepConv
token mixer and in every MLP, so the network has no StarReLU scale/bias parameters.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import partial
from typing import Any

import timm
import torch.nn as nn
from timm.layers import LayerNorm

from .dinov3 import keep_stored_rope_periods, make_key_bias_a_weight


@dataclass(frozen=True)
class Architecture:
    """A timm model name and the keyword arguments that make it the released network."""

    timm_name: str
    kwargs: dict[str, Any] = field(default_factory=dict)
    # How features come out (not the registry's ``family``, which names the model family):
    # cnn: hierarchical feature maps; vit: plain ViT blocks.
    structure: str = "cnn"
    # None (timm architecture names): the last four stages, or four evenly spaced ViT blocks
    default_out_indices: tuple[int, ...] | None = (0, 1, 2, 3)
    native_size: int | None = None  # image size the ViT position embeddings were trained at
    learned_key_bias: bool = False  # attention key bias is a weight (timm's Eva fixes it at zero)
    stored_rope_periods: bool = False  # DINOv3 RoPE periods are state loaded from the file (dinov3.py)


_VIT = {"dynamic_img_size": True}
# The embedding a DINO head sees is the class token, not timm's default average of patch tokens.
_DINOV3 = {**_VIT, "num_reg_tokens": 0, "norm_layer": partial(LayerNorm, eps=1e-6), "global_pool": "token"}

ARCHITECTURES: dict[str, Architecture] = {
    "caformer_s18_surgenet": Architecture("caformer_s18", {"mlp_act": nn.ReLU, "act1_layer": nn.ReLU}),
    "convnextv2_tiny": Architecture("convnextv2_tiny"),
    "pvt_v2_b2": Architecture("pvt_v2_b2"),
    # DINO v1 ViTs: qkv bias, LayerNorm eps 1e-6, class token with position embedding.
    "vit_small_patch16_dinov1": Architecture("vit_small_patch16_224", _VIT, "vit", (2, 5, 8, 11), 224),
    "vit_base_patch16_dinov1": Architecture("vit_base_patch16_224", _VIT, "vit", (2, 5, 8, 11), 224),
    # MSN ViT-S/16 (facebook/vit-msn-small): qkv bias, LayerNorm eps 1e-6, class token with position.
    "vit_small_patch16_msn": Architecture("vit_small_patch16_224", _VIT, "vit", (2, 5, 8, 11), 224),
    # DINOv2 with 4 registers; patch 14 pads inputs that are not a multiple of 14.
    "vit_small_patch14_reg4_dinov2": Architecture(
        "vit_small_patch14_reg4_dinov2", {**_VIT, "dynamic_img_pad": True}, "vit", (2, 5, 8, 11), 336),
    "vit_base_patch14_reg4_dinov2": Architecture(
        "vit_base_patch14_reg4_dinov2", {**_VIT, "dynamic_img_pad": True}, "vit", (2, 5, 8, 11), 336),
    "vit_large_patch14_reg4_dinov2": Architecture(
        "vit_large_patch14_reg4_dinov2", {**_VIT, "dynamic_img_pad": True}, "vit", (4, 11, 17, 23), 336),
    # DINOv3 as SurgeNetDINO pretrained it (its configs: n_storage_tokens 0, mask_k_bias false,
    # norm_layer layernorm): RoPE (base 100), layer scale, no storage tokens, LayerNorm eps 1e-6 and
    # a learned key bias, which timm's DINOv3 keeps as a fixed zero buffer (see dinov3.py), and
    # RoPE periods held in the file in bf16, which timm would recompute in fp32 (see dinov3.py).
    "vit_small_patch16_dinov3_surgenet": Architecture(
        "vit_small_patch16_dinov3_qkvb", _DINOV3, "vit", (2, 5, 8, 11), 336, learned_key_bias=True,
        stored_rope_periods=True),
    "vit_base_patch16_dinov3_surgenet": Architecture(
        "vit_base_patch16_dinov3_qkvb", _DINOV3, "vit", (2, 5, 8, 11), 336, learned_key_bias=True,
        stored_rope_periods=True),
    "vit_large_patch16_dinov3_surgenet": Architecture(
        "vit_large_patch16_dinov3_qkvb", _DINOV3, "vit", (4, 11, 17, 23), 336, learned_key_bias=True,
        stored_rope_periods=True),
}


def is_timm_architecture(name: str) -> bool:
    """Whether ``name`` is a timm architecture (``resnet50``, ``efficientnet_b0``, ...)."""
    return name not in ARCHITECTURES and timm.is_model(name)


def _timm_architecture(name: str) -> Architecture:
    """Any timm architecture as a backbone: ViTs get dynamic input sizes, as the zoo's ViTs."""
    module = timm.models.model_entrypoint(name).__module__.rsplit(".", 1)[-1]
    if module in ("vision_transformer", "deit", "eva"):
        return Architecture(name, dict(_VIT), "vit", None)
    return Architecture(name, {}, "cnn", None)


def architecture(arch: str) -> Architecture:
    """The :class:`Architecture` of a zoo architecture id or of a timm architecture name."""
    if arch in ARCHITECTURES:
        return ARCHITECTURES[arch]
    if timm.is_model(arch):
        return _timm_architecture(arch)
    raise KeyError(f"unknown architecture {arch!r}: neither a zoo architecture nor a timm model name")


def create_network(arch: str, **overrides: Any) -> nn.Module:
    """The full timm network of ``arch`` (no classifier, random weights); ``arch`` is a zoo
    architecture id or any timm architecture name."""
    spec = architecture(arch)
    kwargs = dict(spec.kwargs)
    if spec.native_size is not None:
        kwargs.setdefault("img_size", spec.native_size)
    kwargs.update(overrides)
    network = timm.create_model(spec.timm_name, pretrained=False, num_classes=0, **kwargs)
    if spec.learned_key_bias:
        make_key_bias_a_weight(network)
    if spec.stored_rope_periods:
        keep_stored_rope_periods(network)
    return network
