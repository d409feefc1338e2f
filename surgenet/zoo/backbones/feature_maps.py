"""A backbone that returns a list of NCHW feature maps, as segmentation decoders want them."""

from __future__ import annotations

import math
from typing import Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F
from timm.models import FeatureInfo

from ...exceptions import InputError
from .architectures import architecture

PYRAMID_REDUCTIONS = (4, 8, 16, 32)


class FeatureBackbone(nn.Module):
    """Wraps a timm network; ``forward(x)`` returns the feature maps at ``out_indices``.

    Hierarchical networks (CAFormer, ConvNeXtV2, PVTv2): ``out_indices`` are stages, the maps
    have strides 4, 8, 16, 32. ViTs: ``out_indices`` are blocks, each map is the block's patch
    tokens after the final norm (as DINOv2's ``get_intermediate_layers``), at the patch stride;
    ``vit_pyramid=True`` resamples four of them to strides 4, 8, 16, 32 (parameter-free, as
    ViTDet's simple pyramid without its learned layers). ``feature_info`` reports channels and
    reductions as timm does.
    """

    def __init__(self, network: nn.Module, arch: str, out_indices: Sequence[int] | None = None,
                 vit_pyramid: bool = False) -> None:
        super().__init__()
        spec = architecture(arch)
        self.model = network
        self.arch = arch
        self.layout_kwargs: dict = {}  # network arguments read off the weights (set by load_backbone)
        self.is_vit = spec.structure == "vit"
        self.vit_pyramid = vit_pyramid
        n_levels = len(network.blocks) if self.is_vit else len(network.feature_info)
        default = spec.default_out_indices
        if default is not None and max(default) >= n_levels:
            default = None  # a shallower network than the released one (e.g. a smaller depth in training)
        if default is None:  # a timm architecture: four evenly spaced ViT blocks, the last four CNN stages
            default = (tuple(sorted({max(0, round((i + 1) * n_levels / 4) - 1) for i in range(4)})) if self.is_vit
                       else tuple(range(max(0, n_levels - 4), n_levels)))
        indices = tuple(default if out_indices is None else out_indices)
        bad = [i for i in indices if not -n_levels <= i < n_levels]
        if bad or not indices:
            raise ValueError(f"out_indices {indices} out of range for {arch}, which has {n_levels} "
                             f"{'blocks' if self.is_vit else 'stages'} (valid: 0..{n_levels - 1}).")
        self.out_indices = tuple(i % n_levels for i in indices)
        if vit_pyramid and (not self.is_vit or len(self.out_indices) != len(PYRAMID_REDUCTIONS)):
            raise ValueError("vit_pyramid=True needs a ViT backbone and exactly four out_indices.")
        if self.is_vit:
            patch = network.patch_embed.patch_size[0]
            reductions = PYRAMID_REDUCTIONS if vit_pyramid else (patch,) * len(self.out_indices)
            info = [dict(num_chs=network.embed_dim, reduction=r, module=f"blocks.{i}")
                    for i, r in zip(self.out_indices, reductions)]
        else:
            info = [dict(network.feature_info[i]) for i in self.out_indices]
        self.feature_info = FeatureInfo(info, out_indices=tuple(range(len(info))))

    @property
    def out_channels(self) -> list[int]:
        return self.feature_info.channels()

    @property
    def reductions(self) -> list[int]:
        return self.feature_info.reduction()

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        if x.ndim != 4 or x.shape[1] != 3:
            raise InputError(f"expected a normalised float tensor of shape (N, 3, H, W), got {tuple(x.shape)}.")
        if self.is_vit:
            feats = self.model.forward_intermediates(
                x, indices=list(self.out_indices), norm=True, stop_early=True,
                output_fmt="NCHW", intermediates_only=True)
            if self.vit_pyramid:
                feats = [self._resample(f, x.shape[-2:], r) for f, r in zip(feats, PYRAMID_REDUCTIONS)]
            return list(feats)
        return list(self.model.forward_intermediates(
            x, indices=list(self.out_indices), stop_early=True, intermediates_only=True))

    @staticmethod
    def _resample(feat: torch.Tensor, image_hw: Sequence[int], reduction: int) -> torch.Tensor:
        size = (math.ceil(image_hw[0] / reduction), math.ceil(image_hw[1] / reduction))
        if tuple(feat.shape[-2:]) == size:
            return feat
        return F.interpolate(feat, size=size, mode="bilinear", align_corners=False)

    def forward_embedding(self, x: torch.Tensor) -> torch.Tensor:
        """The pooled image embedding the DINO head saw during pretraining (N, C)."""
        return self.model.forward_head(self.model.forward_features(x), pre_logits=True)

    @property
    def embed_dim(self) -> int:
        return int(self.model.num_features)
