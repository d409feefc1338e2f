"""The FPN segmentation decoder of the SurgeNet papers, and a simple feature pyramid for ViTs.

The decoder computes exactly what the authors' ``FPN`` module computes (segmentation_models_pytorch
style: pyramid 256, segmentation 128, ``cat`` merge, no dropout) and keeps its module names, so an
authors' checkpoint maps onto it by renaming the ``FPN.`` prefix only.
"""

from __future__ import annotations

from typing import Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F
from timm.layers import LayerNorm2d


class Conv3x3GNReLU(nn.Module):
    """Conv3x3 (no bias) -> GroupNorm(32) -> ReLU, then bilinear x2 (align_corners=True) if ``upsample``."""

    def __init__(self, in_channels: int, out_channels: int, upsample: bool) -> None:
        super().__init__()
        self.upsample = upsample
        self.block = nn.Sequential(
            nn.Conv2d(in_channels, out_channels, 3, padding=1, bias=False),
            nn.GroupNorm(32, out_channels),
            nn.ReLU(inplace=True),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.block(x)
        if self.upsample:
            x = F.interpolate(x, scale_factor=2, mode="bilinear", align_corners=True)
        return x


class FPNBlock(nn.Module):
    """One top-down step: the coarser level upsampled (nearest x2) plus a 1x1 lateral of the skip."""

    def __init__(self, pyramid_channels: int, skip_channels: int) -> None:
        super().__init__()
        self.skip_conv = nn.Conv2d(skip_channels, pyramid_channels, 1)

    def forward(self, x: torch.Tensor, skip: torch.Tensor) -> torch.Tensor:
        return F.interpolate(x, scale_factor=2, mode="nearest") + self.skip_conv(skip)


class SegmentationBlock(nn.Module):
    """``n_upsamples`` conv blocks that each double the resolution; a level with none still has one conv."""

    def __init__(self, in_channels: int, out_channels: int, n_upsamples: int) -> None:
        super().__init__()
        blocks = [Conv3x3GNReLU(in_channels, out_channels, upsample=n_upsamples > 0)]
        blocks += [Conv3x3GNReLU(out_channels, out_channels, upsample=True) for _ in range(1, n_upsamples)]
        self.block = nn.Sequential(*blocks)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.block(x)


class FPNDecoder(nn.Module):
    """Four feature maps (strides 4, 8, 16, 32) -> class logits at stride 1.

    Each level of the pyramid is brought to stride 4 by its own conv stack, the four results are
    concatenated, a 3x3 conv gives the logits and a bilinear x4 (align_corners=True, as the authors'
    ``UpsamplingBilinear2d``) restores the input resolution. The maps must have sizes that halve
    exactly from level to level (the caller pads the image to a multiple of 32).
    """

    def __init__(self, encoder_channels: Sequence[int], num_classes: int, pyramid_channels: int = 256,
                 segmentation_channels: int = 128) -> None:
        super().__init__()
        if len(encoder_channels) != 4:
            raise ValueError(f"FPNDecoder needs four feature maps, got channels {list(encoder_channels)}.")
        c2, c3, c4, c5 = encoder_channels
        self.p5 = nn.Conv2d(c5, pyramid_channels, 1)
        self.p4 = FPNBlock(pyramid_channels, c4)
        self.p3 = FPNBlock(pyramid_channels, c3)
        self.p2 = FPNBlock(pyramid_channels, c2)
        self.seg_blocks = nn.ModuleList(
            SegmentationBlock(pyramid_channels, segmentation_channels, n) for n in (3, 2, 1, 0))
        # Index 0 holds the conv, as in the authors' ``segmentation_head`` Sequential (its other
        # entries hold no parameters), so checkpoint keys stay ``segmentation_head.0.*``.
        self.segmentation_head = nn.Sequential(nn.Conv2d(4 * segmentation_channels, num_classes, 3, padding=1))

    def forward(self, features: Sequence[torch.Tensor]) -> torch.Tensor:
        c2, c3, c4, c5 = features[-4:]
        p5 = self.p5(c5)
        p4 = self.p4(p5, c4)
        p3 = self.p3(p4, c3)
        p2 = self.p2(p3, c2)
        x = torch.cat([block(p) for block, p in zip(self.seg_blocks, (p5, p4, p3, p2))], dim=1)
        x = self.segmentation_head(x)
        return F.interpolate(x, scale_factor=4, mode="bilinear", align_corners=True)


class SimpleFeaturePyramid(nn.Module):
    """Strides 4/8/16/32 from four ViT block maps at the patch stride (ViTDet / BEiT style, learned).

    Block maps of increasing depth feed increasingly coarse levels: the shallowest is upsampled x4
    by two transposed convs, the next x2, the third is kept and the deepest max-pooled x2. Channels
    halve per upsampling step, as in ViTDet, which keeps the stride-4 level affordable for ViT-L.
    """

    def __init__(self, embed_dim: int) -> None:
        super().__init__()
        half, quarter = embed_dim // 2, embed_dim // 4
        self.levels = nn.ModuleList([
            nn.Sequential(nn.ConvTranspose2d(embed_dim, half, 2, stride=2), LayerNorm2d(half), nn.GELU(),
                          nn.ConvTranspose2d(half, quarter, 2, stride=2)),
            nn.ConvTranspose2d(embed_dim, half, 2, stride=2),
            nn.Identity(),
            nn.MaxPool2d(2),
        ])
        self.out_channels = [quarter, half, embed_dim, embed_dim]

    def forward(self, features: Sequence[torch.Tensor]) -> list[torch.Tensor]:
        if len(features) != 4:
            raise ValueError(f"SimpleFeaturePyramid needs four block maps, got {len(features)}.")
        return [level(f) for level, f in zip(self.levels, features)]


class ViTFPNDecoder(nn.Module):
    """:class:`SimpleFeaturePyramid` feeding the same :class:`FPNDecoder` as the CNN backbones."""

    def __init__(self, embed_dim: int, num_classes: int, pyramid_channels: int = 256,
                 segmentation_channels: int = 128) -> None:
        super().__init__()
        self.neck = SimpleFeaturePyramid(embed_dim)
        self.fpn = FPNDecoder(self.neck.out_channels, num_classes, pyramid_channels, segmentation_channels)

    def forward(self, features: Sequence[torch.Tensor]) -> torch.Tensor:
        return self.fpn(self.neck(features))
