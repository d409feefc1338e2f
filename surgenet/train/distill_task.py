"""Distillation as a fine-tuning task: batches from the teacher cache, the KL (+ labels) loss, validation.

It offers what :func:`surgenet.train.finetune.run_epochs` needs (``train_batches``, ``loss``,
``validate``, ``val_set``), so the epochs, the schedule, resume, the log, the curves and the
best-model choice are the fine-tuning ones. Training views are fine-tuning's: for segmentation a
random scale-crop (``crop_scale`` of the frame's area, as ``finetune --task segmentation``) and a
left-right flip, applied alike to the frame, the teacher's logits and the mask; then colour jitter
on the student's input only: the teacher's answer for the plain frame is the target for a
recoloured one, a consistency signal that costs no teacher call. The label term is fine-tuning's
loss, class weights included (``class_weighting``, from the labelled set's masks), so that the
student trained on labels alone differs from the distilled one only by the teacher.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Iterable

import numpy as np
import torch
import torch.nn.functional as F

from ..io.masks import IGNORE_INDEX
from ..tasks import MULTI_LABEL_TASKS
from .distill_loss import soft_kl
from .finetune_tasks import _device, _loader, multilabel_scores, segmentation_scores
from .losses import dice_ce_loss
from .seg_augment import SegmentationAugment, colour_jitter, resize_image, resize_mask


class CachedFrames(torch.utils.data.Dataset):
    """``(student input, teacher logits, target, labelled)`` from the cache's memmaps.

    The arrays are opened in each process on first use (a memmap does not cross into a worker
    by pickling; its path does). Randomness comes from ``default_rng([seed, epoch, index])``, so
    a resumed run sees the same views.
    """

    def __init__(self, folder: Path, task: str, mean, std, seed: int = 0, augment: bool = True,
                 crop_scale: tuple[float, float] = (0.5, 1.0)) -> None:
        self.folder, self.task, self.seed, self.augment = Path(folder), task, seed, augment
        self.crop_scale = (float(crop_scale[0]), float(crop_scale[1]))
        self.mean = torch.tensor(list(mean), dtype=torch.float32).view(3, 1, 1)
        self.std = torch.tensor(list(std), dtype=torch.float32).view(3, 1, 1)
        self.epoch = 0
        self._arrays: dict[str, np.ndarray] | None = None
        self._len = int(np.lib.format.open_memmap(self.folder / "done.npy", mode="r").shape[0])

    def _get(self) -> dict[str, np.ndarray]:
        if self._arrays is None:
            self._arrays = {n: np.lib.format.open_memmap(self.folder / f"{n}.npy", mode="r")
                            for n in ("images", "logits", "targets")}
        return self._arrays

    def __getstate__(self) -> dict:
        return {**self.__dict__, "_arrays": None}

    def __len__(self) -> int:
        return self._len

    def __getitem__(self, index: int):
        a = self._get()
        x = torch.from_numpy(np.array(a["images"][index])).permute(2, 0, 1).float().div_(255.0)
        logits = torch.from_numpy(np.array(a["logits"][index], dtype=np.float32))
        target = np.array(a["targets"][index])
        if self.task == "segmentation":
            labelled = bool((target != IGNORE_INDEX).any())
            target_t = torch.from_numpy(target.astype(np.int64))
        else:
            labelled = bool(np.isfinite(target).all())
            target_t = torch.from_numpy(np.nan_to_num(target, nan=0.0).astype(np.float32))
        if self.augment:
            rng = np.random.default_rng([self.seed, self.epoch, index])
            if self.task == "segmentation":
                x, logits, target_t = self._view(x, logits, target_t, rng)
            b, c, s = rng.uniform(0.8, 1.2, size=3)
            x = colour_jitter(x, float(b), float(c), float(s))
        return (x - self.mean) / self.std, logits, target_t, labelled


    def _view(self, x: torch.Tensor, logits: torch.Tensor, target: torch.Tensor, rng: np.random.Generator):
        """One scale-crop and flip of the frame, its (reduced) teacher logits and its mask, aligned.

        The logits are resized bilinearly to the frame's size, cropped with it, and resized back to
        the cache's resolution; the mask takes the crop by nearest neighbour (255 stays ignore).
        """
        size = tuple(x.shape[-2:])
        view = SegmentationAugment(size, scale=self.crop_scale, jitter=0.0).sample(*size, rng)
        if (view.height, view.width) != size:
            box = (slice(view.top, view.top + view.height), slice(view.left, view.left + view.width))
            x = resize_image(x[:, box[0], box[1]], size)
            full = F.interpolate(logits[None], size=size, mode="bilinear", align_corners=False)[0]
            logits = F.interpolate(full[None, :, box[0], box[1]], size=tuple(logits.shape[-2:]), mode="bilinear",
                                   align_corners=False)[0]
            target = torch.from_numpy(resize_mask(target[box[0], box[1]].numpy(), size))
        if view.flip:
            x, logits, target = x.flip(-1), logits.flip(-1), target.flip(-1)
        return x, logits, target


class DistillTask:
    """KL to the cached teacher (weight ``kd_weight``) plus the task's label loss (``gt_weight``)."""

    def __init__(self, cfg, task: str, cache_folder: Path, val_source=None,
                 class_weight: torch.Tensor | None = None) -> None:
        self.cfg, self.name, self.cache_folder = cfg, task, Path(cache_folder)
        self.val_source = val_source
        self.class_weight = class_weight  # segmentation cross-entropy weights (fine-tuning's), or None
        self.val_set = None

    def bind(self, model, transform) -> None:
        from .data.labelled import LabelSamples, SegmentationSamples

        self.train_set = CachedFrames(self.cache_folder, self.name, transform.mean, transform.std, seed=self.cfg.seed,
                                      crop_scale=tuple(getattr(self.cfg, "crop_scale", (0.5, 1.0))))
        if self.val_source is not None:
            self.val_set = (SegmentationSamples(self.val_source, transform) if self.name == "segmentation"
                            else LabelSamples(self.val_source, transform))

    def train_batches(self, epoch: int) -> Iterable:
        self.train_set.epoch = epoch
        return _loader(self.train_set, self.cfg.batch_size, True, self.cfg.num_workers, self.cfg.seed, epoch)

    def loss(self, model, batch) -> torch.Tensor:
        device = _device(model)
        x, teacher, target, labelled = batch
        out = model(x.to(device))
        multilabel = self.name in MULTI_LABEL_TASKS
        loss = self.cfg.kd_weight * soft_kl(out, teacher.to(device), self.cfg.temperature, multilabel=multilabel)
        if self.cfg.gt_weight > 0 and bool(labelled.any()):
            chosen = labelled.to(device)
            target = target.to(device)
            if multilabel:
                gt = F.binary_cross_entropy_with_logits(out[chosen].float(), target[chosen])
            else:
                gt = dice_ce_loss(out[chosen], target[chosen], IGNORE_INDEX, dice_weight=self.cfg.dice_weight,
                                  class_weight=self.class_weight)
            loss = loss + self.cfg.gt_weight * gt
        return loss

    @torch.no_grad()
    def validate(self, model) -> dict[str, Any]:
        if self.name == "segmentation":
            return segmentation_scores(model, self.val_set, self.cfg.batch_size, self.cfg.num_workers)
        return multilabel_scores(model, self.val_set, self.name, self.cfg.batch_size, self.cfg.num_workers)
