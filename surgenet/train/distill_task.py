"""Distillation as a fine-tuning task: batches from the teacher cache, the KL (+ labels) loss, validation.

It offers what :func:`surgenet.train.finetune.run_epochs` needs (``train_batches``, ``loss``,
``validate``, ``val_set``), so the epochs, the schedule, resume, the log, the curves and the
best-model choice are the fine-tuning ones. Training views are the cached frames flipped
left-right half of the time (the teacher's logits and the mask flipped alike) with colour jitter
on the student's input only: the teacher's answer for the plain frame is the target for a
recoloured one, a consistency signal that costs no teacher call.
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
from .seg_augment import colour_jitter


class CachedFrames(torch.utils.data.Dataset):
    """``(student input, teacher logits, target, labelled)`` from the cache's memmaps.

    The arrays are opened in each process on first use (a memmap does not cross into a worker
    by pickling; its path does). Randomness comes from ``default_rng([seed, epoch, index])``, so
    a resumed run sees the same views.
    """

    def __init__(self, folder: Path, task: str, mean, std, seed: int = 0, augment: bool = True) -> None:
        self.folder, self.task, self.seed, self.augment = Path(folder), task, seed, augment
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
            if self.task == "segmentation" and rng.random() < 0.5:
                x, logits, target_t = x.flip(-1), logits.flip(-1), target_t.flip(-1)
            b, c, s = rng.uniform(0.8, 1.2, size=3)
            x = colour_jitter(x, float(b), float(c), float(s))
        return (x - self.mean) / self.std, logits, target_t, labelled


class DistillTask:
    """KL to the cached teacher (weight ``kd_weight``) plus the task's label loss (``gt_weight``)."""

    def __init__(self, cfg, task: str, cache_folder: Path, val_source=None) -> None:
        self.cfg, self.name, self.cache_folder = cfg, task, Path(cache_folder)
        self.val_source = val_source
        self.val_set = None

    def bind(self, model, transform) -> None:
        from .data.labelled import LabelSamples, SegmentationSamples

        self.train_set = CachedFrames(self.cache_folder, self.name, transform.mean, transform.std, seed=self.cfg.seed)
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
                gt = dice_ce_loss(out[chosen], target[chosen], IGNORE_INDEX, dice_weight=self.cfg.dice_weight)
            loss = loss + self.cfg.gt_weight * gt
        return loss

    @torch.no_grad()
    def validate(self, model) -> dict[str, Any]:
        if self.name == "segmentation":
            return segmentation_scores(model, self.val_set, self.cfg.batch_size, self.cfg.num_workers)
        return multilabel_scores(model, self.val_set, self.name, self.cfg.batch_size, self.cfg.num_workers)
