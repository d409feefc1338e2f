"""Semantic segmentation: a zoo backbone and the authors' FPN decoder."""

from __future__ import annotations

from typing import Any, Sequence

import torch
import torch.nn.functional as F

from ..exceptions import InputError
from .base import SurgeNetModel, register_task
from .fpn import FPNDecoder, ViTFPNDecoder


@register_task
class SegmentationModel(SurgeNetModel):
    """Backbone + FPN; ``forward(x)`` returns class logits ``(N, num_classes, H, W)`` at the input size.

    CNN backbones feed their four stages (strides 4-32) to the FPN; ViT backbones feed four block
    maps through a learned simple feature pyramid first (:class:`ViTFPNDecoder`).

    Any input size works: the image is padded at the bottom and right to ``size_multiple`` (32
    for CNNs, where every stage halves; twice the patch size for ViTs, so that the max-pooled
    level is whole) and the logits are cropped back. Padding replicates the border pixels rather
    than inserting a flat colour, so no artificial edge appears next to the real border. At sizes
    that are already a multiple the network computes exactly the authors' ``*FPN`` modules.
    For patch-14 ViTs the pyramid sits at strides 3.5-28, so the logits are resized bilinearly
    from 16/14 of the padded size to the padded size before cropping.
    """

    task = "segmentation"

    def __init__(self, backbone: str, num_classes: int, class_names: Sequence[str] | None = None, *,
                 pretrained: bool = True, normalization: str = "default",
                 input_size: Sequence[int] | None = None, out_indices: Sequence[int] | None = None,
                 backbone_kwargs: dict[str, Any] | None = None,
                 pyramid_channels: int = 256, segmentation_channels: int = 128) -> None:
        head = {"pyramid_channels": int(pyramid_channels), "segmentation_channels": int(segmentation_channels)}
        super().__init__(backbone, num_classes, class_names, normalization, input_size, head, pretrained,
                         out_indices, backbone_kwargs)
        if len(self.backbone.out_indices) != 4:
            raise InputError(f"segmentation needs four feature maps; out_indices={out_indices} gives "
                             f"{len(self.backbone.out_indices)}.")
        if self.backbone.is_vit:
            self.decoder = ViTFPNDecoder(self.backbone.embed_dim, self.num_classes, **head)
        else:
            self.decoder = FPNDecoder(self.backbone.out_channels, self.num_classes, **head)

    @property
    def size_multiple(self) -> int:
        if self.backbone.is_vit:
            return 2 * int(self.backbone.model.patch_embed.patch_size[0])
        return 32

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.ndim != 4 or x.shape[1] != 3:
            raise InputError(f"expected a normalised float tensor (N, 3, H, W), got shape {tuple(x.shape)}. "
                             "Use surgenet.create_transform(model) to prepare images.")
        height, width = x.shape[-2:]
        x = self.pad_input(x)
        logits = self.decoder(self.backbone(x))
        if logits.shape[-2:] != x.shape[-2:]:
            logits = F.interpolate(logits, size=x.shape[-2:], mode="bilinear", align_corners=False)
        return logits[..., :height, :width]
