"""The optimisation pieces of DINO: parameter groups, gradient clipping, last-layer freezing, EMA."""

from __future__ import annotations

from typing import Iterable

import torch
import torch.nn as nn


def param_groups(model: nn.Module) -> list[dict]:
    """Two AdamW groups: weights decay; biases and norm parameters (``ndim <= 1``) do not.

    The first group's weight decay follows the schedule; the second stays at 0.
    """
    decay, no_decay = [], []
    for name, param in model.named_parameters():
        if not param.requires_grad:
            continue
        (no_decay if param.ndim <= 1 or name.endswith(".bias") else decay).append(param)
    return [{"params": decay}, {"params": no_decay, "weight_decay": 0.0}]


def set_hyperparameters(optimizer: torch.optim.Optimizer, lr: float, weight_decay: float) -> None:
    for i, group in enumerate(optimizer.param_groups):
        group["lr"] = lr
        if i == 0:
            group["weight_decay"] = weight_decay


@torch.no_grad()
def clip_gradients(model: nn.Module, max_norm: float) -> list[float]:
    """Clip each parameter's gradient to norm ``max_norm`` on its own, as DINO does.

    DINO clips per parameter, not the global norm: one exploding tensor does not shrink the
    updates of all the others. Returns the norms before clipping.
    """
    norms = []
    for param in model.parameters():
        if param.grad is None:
            continue
        norm = param.grad.norm(2)
        norms.append(float(norm))
        coef = max_norm / (norm + 1e-6)
        if coef < 1:
            param.grad.mul_(coef)
    return norms


def cancel_last_layer_gradients(model: nn.Module, epoch: int, freeze_last_layer: int) -> None:
    """Drop the prototype layer's gradients during the first ``freeze_last_layer`` epochs.

    Keeping the prototypes fixed while the rest settles avoids an early collapse (DINO).
    """
    if epoch >= freeze_last_layer:
        return
    for name, param in model.named_parameters():
        if "last_layer" in name:
            param.grad = None


@torch.no_grad()
def ema_update(teacher: Iterable[torch.Tensor], student: Iterable[torch.Tensor], momentum: float) -> None:
    """``teacher = momentum * teacher + (1 - momentum) * student``, parameter by parameter."""
    teacher, student = list(teacher), list(student)
    torch._foreach_mul_(teacher, momentum)
    torch._foreach_add_(teacher, [s.detach() for s in student], alpha=1 - momentum)
