"""BYOL (Grill et al. 2020) as a plugin: an online network (backbone, projector, predictor)
predicts the EMA target's projection of the other view; no negatives.

Heads and loss come from lightly: ``BYOLProjectionHead``/``BYOLPredictionHead`` (Linear-BN-ReLU-
Linear, the paper's MLPs) and ``NegativeCosineSimilarity`` (the paper's ``2 - 2 cos`` is
``2 +`` it, on L2-normalised outputs). The views are ours (see :func:`views`)."""

from __future__ import annotations

from typing import Any, Sequence

import torch
import torch.nn as nn

from ..multicrop import MultiCrop
from .base import PretrainMethod, build_backbone, ema_copy, embedding_std, initialise_backbone, view_specs


class BYOLHead(nn.Module):
    """Projector, then predictor (online network only)."""

    def __init__(self, in_dim: int, hidden_dim: int, out_dim: int) -> None:
        super().__init__()
        from lightly.models.modules import BYOLPredictionHead, BYOLProjectionHead

        self.projector = BYOLProjectionHead(in_dim, hidden_dim, out_dim)
        self.predictor = BYOLPredictionHead(out_dim, hidden_dim, out_dim)


class BYOLNet(nn.Module):
    """``forward(views)``: per view, the predictor output (online) or the projection (target,
    whose head has no predictor)."""

    def __init__(self, backbone: nn.Module, head: nn.Module) -> None:
        super().__init__()
        self.backbone, self.head = backbone, head

    def forward(self, views: Sequence[torch.Tensor]) -> list[torch.Tensor]:
        x = torch.cat(list(views))  # the views of BYOL share one size: one backbone pass
        z = self.head.projector(self.backbone.forward_embedding(x))
        if hasattr(self.head, "predictor"):
            z = self.head.predictor(z)
        return list(z.chunk(len(views)))


def byol_loss(p0: torch.Tensor, p1: torch.Tensor, z0: torch.Tensor, z1: torch.Tensor) -> torch.Tensor:
    """Symmetric BYOL loss, mean of ``2 - 2 cos(p_i, sg(z_j))`` over both directions, in [0, 4]."""
    from lightly.loss import NegativeCosineSimilarity

    neg_cos = NegativeCosineSimilarity()
    # mean over the two directions of (2 - 2 cos) = 2 - cos_a - cos_b = 2 + neg_a + neg_b
    return 2 + neg_cos(p0.float(), z1.float().detach()) + neg_cos(p1.float(), z0.float().detach())


class _Loss(nn.Module):
    """Stateless: kept so every method's checkpoint has the same ``loss`` entry."""


class BYOL(PretrainMethod):
    name = "byol"
    progress_keys = ("embedding_std",)

    def __init__(self, config: Any, entry) -> None:
        super().__init__(config, entry)
        c = config.byol
        backbone = build_backbone(config, entry, config.model.drop_path_rate)
        initialise_backbone(backbone, config, entry)
        self.student = BYOLNet(backbone, BYOLHead(backbone.embed_dim, c.hidden_dim, c.projection_dim))
        # The target: backbone and projector only, starting equal to the online ones.
        self.teacher = ema_copy(self.student, head=_projector_only(self.student.head),
                                backbone=build_backbone(config, entry, 0.0))
        self.teacher.train()  # batch statistics in the projector's BatchNorm, as the online network
        self.loss_fn = _Loss()

    def views(self) -> MultiCrop:
        """Two 224 crops with the recipe's colour jitter and blur (``config.byol``), seeded (not lightly's ``BYOLTransform``)."""
        c = self.config.byol
        return self.seeded_views(view_specs(c.view_size, c.view_scale, 2, c))

    def forward(self, model: nn.Module, crops: list[torch.Tensor], values: dict[str, float]):
        p0, p1 = model(crops[:2])
        with torch.no_grad():
            z0, z1 = self.teacher(crops[:2])
        return p0, p1, z0, z1

    def compute_loss(self, outputs, values: dict[str, float], ncrops: int):
        p0, p1, z0, z1 = outputs
        return byol_loss(p0, p1, z0, z1), {"embedding_std": embedding_std(torch.cat([z0, z1]))}


def _projector_only(head: BYOLHead) -> nn.Module:
    import copy

    target = nn.Module()
    target.projector = copy.deepcopy(head.projector)
    return target


METHOD = BYOL
