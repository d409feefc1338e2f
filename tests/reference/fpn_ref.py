"""Test-only independent reference of the FPN segmentation decoder used by SurgeNet.

Written from the published description (segmentation_models_pytorch-style FPN,
pyramid 256, segmentation 128, "cat" merge, 3x3 head + x4 bilinear upsampling);
keys match the authors' ``FPN.*`` checkpoint layout.
"""
import torch
import torch.nn.functional as F
from torch import nn


class Conv3x3GNReLU(nn.Module):
    """conv3x3 (no bias) -> GroupNorm(32) -> ReLU, optionally followed by bilinear x2 (align_corners)."""

    def __init__(self, cin, cout, upsample=False):
        super().__init__()
        self.upsample = upsample
        self.block = nn.Sequential(nn.Conv2d(cin, cout, 3, padding=1, bias=False), nn.GroupNorm(32, cout), nn.ReLU())

    def forward(self, x):
        conv, gn, _ = self.block
        x = F.relu(F.group_norm(conv(x), gn.num_groups, gn.weight, gn.bias, gn.eps))
        if self.upsample:
            x = F.interpolate(x, scale_factor=2, mode="bilinear", align_corners=True)
        return x


class FPNBlock(nn.Module):
    """Top-down step: nearest x2 of the coarser level + 1x1 lateral conv of the skip."""

    def __init__(self, pyramid_channels, skip_channels):
        super().__init__()
        self.skip_conv = nn.Conv2d(skip_channels, pyramid_channels, 1)

    def forward(self, x, skip):
        return F.interpolate(x, scale_factor=2, mode="nearest") + self.skip_conv(skip)


class SegmentationBlock(nn.Module):
    """max(1, n_upsamples) Conv3x3GNReLU modules, each upsampling x2 when n_upsamples > 0."""

    def __init__(self, cin, cout, n_upsamples):
        super().__init__()
        up = n_upsamples > 0
        mods = [Conv3x3GNReLU(cin, cout, up)] + [Conv3x3GNReLU(cout, cout, True) for _ in range(1, n_upsamples)]
        self.block = nn.Sequential(*mods)

    def forward(self, x):
        return self.block(x)


class FPNRef(nn.Module):
    """FPN decoder: features (strides 4, 8, 16, 32) -> logits at 4x the stride-4 resolution."""

    def __init__(self, encoder_channels, num_classes, pyramid_channels=256, segmentation_channels=128):
        super().__init__()
        c2, c3, c4, c5 = encoder_channels
        self.p5 = nn.Conv2d(c5, pyramid_channels, 1)
        self.p4 = FPNBlock(pyramid_channels, c4)
        self.p3 = FPNBlock(pyramid_channels, c3)
        self.p2 = FPNBlock(pyramid_channels, c2)
        self.seg_blocks = nn.ModuleList(
            SegmentationBlock(pyramid_channels, segmentation_channels, n) for n in (3, 2, 1, 0)
        )
        self.segmentation_head = nn.Sequential(
            nn.Conv2d(4 * segmentation_channels, num_classes, 3, padding=1),
            nn.UpsamplingBilinear2d(scale_factor=4),
            nn.Identity(),
        )

    def forward(self, *features):
        c2, c3, c4, c5 = features[-4:]
        p5 = self.p5(c5)
        p4 = self.p4(p5, c4)
        p3 = self.p3(p4, c3)
        p2 = self.p2(p3, c2)
        x = torch.cat([blk(p) for blk, p in zip(self.seg_blocks, (p5, p4, p3, p2))], dim=1)
        conv = self.segmentation_head[0]
        x = conv(x)
        # UpsamplingBilinear2d == bilinear with align_corners=True
        return F.interpolate(x, scale_factor=4, mode="bilinear", align_corners=True)
