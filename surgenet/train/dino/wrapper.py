"""Backbone + DINO head over a list of crops, one backbone pass per crop resolution."""

from __future__ import annotations

from typing import Sequence

import torch
import torch.nn as nn


class MultiCropWrapper(nn.Module):
    """``forward(crops)`` concatenates the head outputs of all crops, crop after crop.

    Consecutive crops of the same size are batched into one backbone call (the 2 global crops,
    then the local crops), as DINO does. The head sees ``backbone.forward_embedding``: the pooled
    features of a CNN, the class token of a ViT.
    """

    def __init__(self, backbone: nn.Module, head: nn.Module) -> None:
        super().__init__()
        self.backbone = backbone
        self.head = head

    def forward(self, crops: Sequence[torch.Tensor] | torch.Tensor) -> torch.Tensor:
        if isinstance(crops, torch.Tensor):
            crops = [crops]
        embeddings = []
        start = 0
        while start < len(crops):
            end = start
            while end < len(crops) and crops[end].shape[-2:] == crops[start].shape[-2:]:
                end += 1
            embeddings.append(self.backbone.forward_embedding(torch.cat(list(crops[start:end]))))
            start = end
        return self.head(torch.cat(embeddings))
