"""DINO (v1) as a plugin: multi-crop views, projection head with prototypes, centred and
sharpened teacher, last layer frozen in the first epoch(s). The pieces live in ``train/dino``."""

from __future__ import annotations

from typing import Any

import torch
import torch.nn as nn

from ..multicrop import MultiCrop
from ..dino import DINOHead, DINOLoss, MultiCropWrapper, build_schedules
from ..dino.optim import cancel_last_layer_gradients, ema_update
from .base import PretrainMethod, build_backbone, initialise_backbone


def build_networks(config: Any, entry) -> tuple[MultiCropWrapper, MultiCropWrapper]:
    """Student (with drop path) and teacher (without), equal weights, each with its DINO head."""
    nets = []
    for drop_path in (config.model.drop_path_rate, 0.0):
        backbone = build_backbone(config, entry, drop_path)
        h = config.head
        head = DINOHead(backbone.embed_dim, h.out_dim, h.hidden_dim, h.bottleneck_dim, h.nlayers, h.norm_last_layer)
        nets.append(MultiCropWrapper(backbone, head))
    student, teacher = nets
    initialise_backbone(student.backbone, config, entry)
    teacher.load_state_dict(student.state_dict())
    for p in teacher.parameters():
        p.requires_grad_(False)
    return student, teacher


class DINO(PretrainMethod):
    name = "dino"
    progress_keys = ("teacher_entropy", "kl")

    def __init__(self, config: Any, entry) -> None:
        super().__init__(config, entry)
        self.student, self.teacher = build_networks(config, entry)
        self.teacher.eval()
        self.loss_fn = DINOLoss(config.head.out_dim, config.loss.student_temp, config.loss.center_momentum)

    def views(self) -> MultiCrop:
        c = self.config.crops
        return MultiCrop(c.global_size, c.local_size, c.global_scale, c.local_scale, c.local_crops,
                         c.mean or self.entry.mean, c.std or self.entry.std)

    def schedules(self, epochs: int, steps_per_epoch: int, global_batch: int):
        return build_schedules(self.config.optim, self.config.loss, epochs, steps_per_epoch, global_batch)

    def forward(self, model: nn.Module, crops: list[torch.Tensor], values: dict[str, float]):
        with torch.no_grad():
            teacher_out = self.teacher(crops[:2])  # only the 2 global views pass through the teacher
        student_out = model(crops)
        return student_out, teacher_out

    def compute_loss(self, outputs, values: dict[str, float], ncrops: int):
        student_out, teacher_out = outputs
        out = self.loss_fn(student_out, teacher_out, values["teacher_temp"], ncrops)
        return out.loss, {"teacher_entropy": out.teacher_entropy, "kl": out.kl}

    def after_backward(self, epoch: int) -> None:
        cancel_last_layer_gradients(self.student, epoch, self.config.optim.freeze_last_layer)

    @torch.no_grad()
    def after_step(self, values: dict[str, float]) -> None:
        ema_update(self.teacher.parameters(), self.student.parameters(), values["momentum"])


METHOD = DINO
