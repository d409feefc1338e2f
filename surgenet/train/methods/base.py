"""What every pretraining method provides to the engine, and the pieces they share."""

from __future__ import annotations

import abc

import copy
from typing import Any, Sequence

import numpy as np
import torch
import torch.nn as nn

from ...zoo.backbones import FeatureBackbone, create_network
from ...zoo.registry import ModelEntry
from ..multicrop import CropSpec, MultiCrop
from ..dino.optim import param_groups
from ..dino.schedules import cosine_schedule


class PretrainMethod(abc.ABC):
    """One self-supervised method: networks, views, loss and target update.

    ``student`` holds every trained parameter (the engine wraps it in DDP and optimises it);
    ``teacher`` is its EMA copy or None; ``loss_fn`` a module whose state (e.g. DINO's centre)
    goes into checkpoints. ``progress_keys`` are the metrics shown beside the loss.
    """

    name = ""
    progress_keys: tuple[str, ...] = ()
    student: nn.Module
    teacher: nn.Module | None = None
    loss_fn: nn.Module

    def __init__(self, config: Any, entry: ModelEntry) -> None:
        self.config, self.entry = config, entry

    # ------------------------------------------------------------ set-up
    @abc.abstractmethod
    def views(self) -> MultiCrop:
        """The augmentation: ``views()(image, rng)`` gives the list of views of one image."""

    def seeded_views(self, specs: Sequence[CropSpec]) -> MultiCrop:
        """``specs`` on the engine's seeded augmentation, normalised with the run's statistics (or
        the model's).

        Used instead of lightly's transforms: lightly draws from the global torch/numpy random
        state, so crops would depend on the worker count and would not repeat after a resume;
        these are a pure function of (seed, epoch, slot).
        """
        crops = self.config.crops
        return MultiCrop(specs=list(specs), mean=crops.mean or self.entry.mean, std=crops.std or self.entry.std)

    def schedules(self, epochs: int, steps_per_epoch: int, global_batch: int) -> Any:
        """Per-step values (``.at(step)`` gives a dict with at least ``lr`` and ``weight_decay``)."""
        return StepSchedules.common(self.config.optim, epochs, steps_per_epoch, global_batch)

    def param_groups(self) -> list[dict]:
        return param_groups(self.student)

    def to(self, device: torch.device) -> None:
        self.student.to(device)
        if self.teacher is not None:
            self.teacher.to(device)
        self.loss_fn.to(device)

    def prepare_distributed(self, device: torch.device) -> None:
        """Called before the student is wrapped in DDP (e.g. global batch norm on GPUs)."""

    # ------------------------------------------------------------ a step
    @abc.abstractmethod
    def forward(self, model: nn.Module, crops: list[torch.Tensor], values: dict[str, float]) -> Any:
        """The networks' outputs for one batch (run under autocast); ``model`` is the (DDP-wrapped)
        student, through which every trained computation must go."""

    @abc.abstractmethod
    def compute_loss(self, outputs: Any, values: dict[str, float],
                     ncrops: int) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """The loss (in float32, outside autocast) and the metrics to log."""

    def after_backward(self, epoch: int) -> None:
        """Between backward and the optimiser step (gradients may be edited here)."""

    @torch.no_grad()
    def after_step(self, values: dict[str, float]) -> None:
        """After the optimiser step: the EMA target follows the student."""
        if self.teacher is None:
            return
        student = dict(self.student.named_parameters())
        pairs = [(t, student[name]) for name, t in self.teacher.named_parameters()]
        teacher_params = [t for t, _ in pairs]
        m = values["momentum"]
        torch._foreach_mul_(teacher_params, m)
        torch._foreach_add_(teacher_params, [s.detach() for _, s in pairs], alpha=1 - m)

    # ------------------------------------------------------------ results
    def result_backbone(self) -> FeatureBackbone:
        """The backbone a run delivers: the EMA teacher's where there is one, else the student's."""
        return (self.teacher if self.teacher is not None else self.student).backbone


class StepSchedules:
    """Named per-step arrays; ``at(step)`` reads them all (resuming needs only the step)."""

    def __init__(self, **arrays: np.ndarray) -> None:
        self.arrays = arrays

    def __len__(self) -> int:
        return len(next(iter(self.arrays.values())))

    def at(self, step: int) -> dict[str, float]:
        return {k: float(v[step]) for k, v in self.arrays.items()}

    @classmethod
    def common(cls, optim: Any, epochs: int, steps_per_epoch: int, global_batch: int,
               momentum: bool = True) -> "StepSchedules":
        """Warm-up then cosine learning rate (``optim.lr`` per 256 images), cosine weight decay
        and, for EMA methods, the target momentum from ``optim.momentum_teacher`` to 1."""
        peak = optim.lr * global_batch / 256.0
        arrays = {"lr": cosine_schedule(peak, optim.min_lr, epochs, steps_per_epoch, optim.warmup_epochs),
                  "weight_decay": cosine_schedule(optim.weight_decay, optim.weight_decay_end, epochs,
                                                  steps_per_epoch)}
        if momentum:
            arrays["momentum"] = cosine_schedule(optim.momentum_teacher, 1.0, epochs, steps_per_epoch)
        return cls(**arrays)


def build_backbone(config: Any, entry: ModelEntry, drop_path: float) -> FeatureBackbone:
    """A backbone of ``entry``'s architecture with the run's network arguments."""
    network = create_network(entry.arch, drop_path_rate=drop_path, **config.model.network_kwargs)
    return FeatureBackbone(network, entry.arch)


def initialise_backbone(backbone: FeatureBackbone, config: Any, entry: ModelEntry) -> None:
    """``model.init``: random (null), the released weights ("pretrained") or a file/folder."""
    if config.model.init is None:
        return
    from ...zoo.factory import load_backbone

    weights = None if config.model.init == "pretrained" else config.model.init
    init = load_backbone(entry.name, pretrained=weights is None, weights=weights, **config.model.network_kwargs)
    backbone.model.load_state_dict(init.model.state_dict())


def ema_copy(student: nn.Module, **replace: nn.Module) -> nn.Module:
    """A frozen copy of ``student`` (attributes in ``replace`` swapped, e.g. a head without
    predictor, or a backbone built without drop path: the target is never regularised)."""
    teacher = copy.deepcopy(student)
    for name, module in replace.items():
        if hasattr(student, name) and name != "head":
            module.load_state_dict(getattr(student, name).state_dict())
        setattr(teacher, name, module)
    for p in teacher.parameters():
        p.requires_grad_(False)
    return teacher


def view_specs(size: int, scale: Sequence[float], count: int, section: Any) -> list[CropSpec]:
    """``count`` alike views with the photometric settings of a method's config section."""
    spec = CropSpec(size, (float(scale[0]), float(scale[1])), section.blur_p, 0.0, tuple(section.jitter),
                    section.jitter_p, section.gray_p)
    return [spec] * count


def embedding_std(z: torch.Tensor) -> torch.Tensor:
    """Mean per-dimension standard deviation of the L2-normalised outputs, times sqrt(dim):
    about 1 for spread-out embeddings, 0 at collapse (one point for every image)."""
    z = nn.functional.normalize(z.detach().float(), dim=1)
    return z.std(dim=0).mean() * z.shape[1] ** 0.5
