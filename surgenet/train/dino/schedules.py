"""Per-iteration schedules, precomputed as arrays and indexed by the global step.

Because a schedule value depends only on the step, resuming needs nothing but the step counter.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..schedules import warmup_cosine


def cosine_schedule(base: float, final: float, epochs: int, steps_per_epoch: int,
                    warmup_epochs: int = 0, warmup_start: float = 0.0) -> np.ndarray:
    """Linear warm-up from ``warmup_start`` to ``base`` over ``warmup_epochs``, then a half cosine
    from ``base`` to ``final``; one value per step, ``epochs * steps_per_epoch`` values."""
    # DINO's warm-up reaches ``base`` on its last step (linspace with the endpoint).
    return warmup_cosine(epochs * steps_per_epoch, warmup_epochs * steps_per_epoch, base, final, warmup_start)


def teacher_temp_schedule(temp: float, warmup_temp: float, warmup_epochs: int, epochs: int,
                          steps_per_epoch: int) -> np.ndarray:
    """Teacher temperature per step: linear from ``warmup_temp`` to ``temp`` over
    ``warmup_epochs`` (DINO changes it once per epoch; so do we), then constant."""
    per_epoch = np.concatenate([np.linspace(warmup_temp, temp, warmup_epochs),
                                np.full(max(epochs - warmup_epochs, 0), temp)])[:epochs]
    return np.repeat(per_epoch, steps_per_epoch)


@dataclass(frozen=True)
class Schedules:
    lr: np.ndarray
    weight_decay: np.ndarray
    momentum: np.ndarray
    teacher_temp: np.ndarray

    def __len__(self) -> int:
        return len(self.lr)

    def at(self, step: int) -> dict[str, float]:
        return {"lr": float(self.lr[step]), "weight_decay": float(self.weight_decay[step]),
                "momentum": float(self.momentum[step]), "teacher_temp": float(self.teacher_temp[step])}


def build_schedules(optim, loss, epochs: int, steps_per_epoch: int, global_batch: int) -> Schedules:
    """DINO's schedules from an :class:`OptimConfig` and a :class:`LossConfig`.

    The peak learning rate is ``optim.lr * global_batch / 256`` (the linear scaling rule).
    """
    peak = optim.lr * global_batch / 256.0
    return Schedules(
        lr=cosine_schedule(peak, optim.min_lr, epochs, steps_per_epoch, optim.warmup_epochs),
        weight_decay=cosine_schedule(optim.weight_decay, optim.weight_decay_end, epochs, steps_per_epoch),
        momentum=cosine_schedule(optim.momentum_teacher, 1.0, epochs, steps_per_epoch),
        teacher_temp=teacher_temp_schedule(loss.teacher_temp, loss.warmup_teacher_temp,
                                           loss.warmup_teacher_temp_epochs, epochs, steps_per_epoch),
    )
