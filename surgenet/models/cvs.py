"""Critical view of safety (Endoscapes): three independent criteria, one sigmoid each."""

from __future__ import annotations

from typing import Any, Sequence

import torch
import torch.nn as nn

from .. import label_sets
from .base import SurgeNetModel, register_task

CVS_CRITERIA = list(label_sets.CVS_CRITERIA)


@register_task
class CVSModel(SurgeNetModel):
    """Pooled backbone embedding -> MLP -> one logit per criterion (multi-label).

    ``forward(x)`` returns logits ``(N, num_classes)``; ``predict_proba`` the sigmoid
    probabilities. The criteria are scored independently, so the loss is a per-criterion binary
    cross-entropy, not a softmax.
    """

    task = "cvs"

    def __init__(self, backbone: str, num_classes: int = 3, class_names: Sequence[str] | None = None, *,
                 pretrained: bool = True, normalization: str = "default",
                 input_size: Sequence[int] | None = None, out_indices: Sequence[int] | None = None,
                 backbone_kwargs: dict[str, Any] | None = None,
                 hidden_dim: int = 512, dropout: float = 0.1) -> None:
        head = {"hidden_dim": int(hidden_dim), "dropout": float(dropout)}
        super().__init__(backbone, num_classes, class_names, normalization, input_size, head, pretrained,
                         out_indices, backbone_kwargs)
        self.head = nn.Sequential(
            nn.Linear(self.backbone.embed_dim, hidden_dim), nn.GELU(), nn.Dropout(dropout),
            nn.Linear(hidden_dim, self.num_classes))

    @staticmethod
    def default_class_names(num_classes: int) -> list[str]:
        return list(CVS_CRITERIA) if num_classes == 3 else [f"criterion_{i + 1}" for i in range(num_classes)]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.embed(x))

    def predict_proba(self, x: torch.Tensor) -> torch.Tensor:
        """Per-criterion probabilities ``(N, num_classes)``."""
        return torch.sigmoid(self.forward(x))
