"""DINO (v1) self-distillation: head, loss, schedules and the multi-crop wrapper."""

from .head import DINOHead, WeightNormLinear
from .loss import DINOLoss, LossOutput
from .schedules import Schedules, build_schedules, cosine_schedule, teacher_temp_schedule
from .wrapper import MultiCropWrapper

__all__ = [
    "DINOHead", "DINOLoss", "LossOutput", "MultiCropWrapper", "Schedules", "WeightNormLinear",
    "build_schedules", "cosine_schedule", "teacher_temp_schedule",
]
