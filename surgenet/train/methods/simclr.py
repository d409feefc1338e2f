"""SimCLR (Chen et al. 2020) as a plugin: one network with a projector MLP, the NT-Xent loss
over the two views of every image of the global batch.

Head and loss come from lightly: ``SimCLRProjectionHead`` and ``NTXentLoss`` with
``gather_distributed=True``, which gathers the projections of every process (with gradients)
so the negatives span the global batch, as the multi-GPU seed does. The views are ours (see
:meth:`SimCLR.views`)."""

from __future__ import annotations

import logging
from typing import Any, Sequence

import torch
import torch.nn as nn

from ..multicrop import MultiCrop
from .base import PretrainMethod, StepSchedules, build_backbone, embedding_std, initialise_backbone, view_specs

logger = logging.getLogger(__name__)


class SimCLRNet(nn.Module):
    """``forward(views)``: the projection of every view (one backbone pass for all)."""

    def __init__(self, backbone: nn.Module, head: nn.Module) -> None:
        super().__init__()
        self.backbone, self.head = backbone, head

    def forward(self, views: Sequence[torch.Tensor]) -> list[torch.Tensor]:
        z = self.head(self.backbone.forward_embedding(torch.cat(list(views))))
        return list(z.chunk(len(views)))


class SimCLR(PretrainMethod):
    name = "simclr"
    progress_keys = ("embedding_std",)

    def __init__(self, config: Any, entry) -> None:
        super().__init__(config, entry)
        from lightly.loss import NTXentLoss
        from lightly.models.modules import SimCLRProjectionHead

        c = config.simclr
        backbone = build_backbone(config, entry, config.model.drop_path_rate)
        initialise_backbone(backbone, config, entry)
        head = SimCLRProjectionHead(backbone.embed_dim, c.hidden_dim, c.projection_dim, c.num_layers, c.batch_norm)
        self.student = SimCLRNet(backbone, head)
        self.teacher = None
        self.loss_fn = NTXentLoss(temperature=c.temperature, gather_distributed=c.gather_distributed)

    def views(self) -> MultiCrop:
        """Two crops with SimCLR's colour distortion (strength 1) and blur, seeded (not lightly's
        ``SimCLRTransform``)."""
        c = self.config.simclr
        return self.seeded_views(view_specs(c.view_size, c.view_scale, 2, c))

    def schedules(self, epochs: int, steps_per_epoch: int, global_batch: int):
        return StepSchedules.common(self.config.optim, epochs, steps_per_epoch, global_batch, momentum=False)

    def prepare_distributed(self, device: torch.device) -> None:
        if not self.config.simclr.batch_norm:
            return
        if device.type == "cuda":  # global batch statistics, as SimCLR's multi-device runs
            self.student.head = nn.SyncBatchNorm.convert_sync_batchnorm(self.student.head)
        else:
            logger.warning("SimCLR on several CPU processes: the projector's BatchNorm sees each process's "
                           "share of the batch (SyncBatchNorm needs GPUs); set simclr.batch_norm=false for "
                           "results independent of the process count.")

    def forward(self, model: nn.Module, crops: list[torch.Tensor], values: dict[str, float]):
        return model(crops[:2])

    def compute_loss(self, outputs, values: dict[str, float], ncrops: int):
        z0, z1 = (z.float() for z in outputs)
        return self.loss_fn(z0, z1), {"embedding_std": embedding_std(torch.cat([z0, z1]))}


METHOD = SimCLR
