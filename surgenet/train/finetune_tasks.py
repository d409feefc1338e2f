"""What differs between the three fine-tuning tasks: data, loss, and validation metrics.

Each task object offers ``train_batches(epoch)`` (an iterable of batches), ``loss(model, batch)``
and ``validate(model) -> dict`` whose ``score`` (higher is better) picks the best checkpoint:
mean Dice (segmentation), mean per-video accuracy (phase), mAP (CVS).
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, Iterable

import numpy as np
import torch
import torch.nn.functional as F

from .. import metrics
from ..exceptions import InputError
from .data.labelled import IGNORE_INDEX, CVSFrames, PhaseClips, SegmentationFrames, read_phase_videos

logger = logging.getLogger(__name__)


def _loader(dataset, batch_size: int, shuffle: bool, workers: int, seed: int, epoch: int):
    generator = torch.Generator().manual_seed(seed * 1000 + epoch)  # a fixed order per epoch: resumable
    return torch.utils.data.DataLoader(dataset, batch_size=batch_size, shuffle=shuffle, num_workers=workers,
                                       generator=generator, drop_last=False)


def _device(model) -> torch.device:
    return next(model.parameters()).device


class SegmentationTask:
    def __init__(self, cfg, transform, size) -> None:
        self.cfg = cfg
        self.train_set = SegmentationFrames(cfg.train, transform, size, flip=True, seed=cfg.seed)
        self.val_set = SegmentationFrames(cfg.val, transform, size) if cfg.val else None

    def train_batches(self, epoch: int) -> Iterable:
        self.train_set.epoch = epoch
        return _loader(self.train_set, self.cfg.batch_size, True, self.cfg.num_workers, self.cfg.seed, epoch)

    def loss(self, model, batch) -> torch.Tensor:
        images, masks = (t.to(_device(model)) for t in batch)
        return F.cross_entropy(model(images).float(), masks, ignore_index=IGNORE_INDEX)

    @torch.no_grad()
    def validate(self, model) -> dict[str, Any]:
        preds, targets = [], []
        for images, masks in _loader(self.val_set, self.cfg.batch_size, False, self.cfg.num_workers, 0, 0):
            preds.append(model(images.to(_device(model))).argmax(1).cpu().numpy().astype(np.uint8))
            targets.append(masks.numpy().astype(np.uint8))
        m = metrics.segmentation_metrics(np.concatenate(preds), np.concatenate(targets), model.num_classes,
                                         ignore_index=IGNORE_INDEX)
        return {"score": m["mean_dice"], "mean_dice": m["mean_dice"], "mean_iou": m["mean_iou"],
                "dice": [float(x) for x in m["dice"]]}


class CVSTask:
    def __init__(self, cfg, transform, size) -> None:
        self.cfg = cfg
        self.train_set = CVSFrames(cfg.train, transform, flip=True, seed=cfg.seed)
        self.val_set = CVSFrames(cfg.val, transform) if cfg.val else None

    def train_batches(self, epoch: int) -> Iterable:
        self.train_set.epoch = epoch
        return _loader(self.train_set, self.cfg.batch_size, True, self.cfg.num_workers, self.cfg.seed, epoch)

    def loss(self, model, batch) -> torch.Tensor:
        images, targets = (t.to(_device(model)) for t in batch)
        return F.binary_cross_entropy_with_logits(model(images).float(), targets)

    @torch.no_grad()
    def validate(self, model) -> dict[str, Any]:
        scores, targets = [], []
        for images, target in _loader(self.val_set, self.cfg.batch_size, False, self.cfg.num_workers, 0, 0):
            scores.append(torch.sigmoid(model(images.to(_device(model))).float()).cpu().numpy())
            targets.append(target.numpy())
        m = metrics.cvs_metrics(np.concatenate(scores), np.concatenate(targets) >= 0.5)
        return {"score": m["mAP"], "mAP": m["mAP"], "mean_balanced_accuracy": m["mean_balanced_accuracy"]}


class PhaseTask:
    """Cached features (default): embed every frame once with the frozen backbone, then train the
    temporal model on whole videos. End to end: clips of ``clip_length`` frames through both."""

    def __init__(self, cfg, transform, size) -> None:
        self.cfg, self.transform = cfg, transform
        self.train_videos = read_phase_videos(cfg.train, cfg.class_names)
        self.val_videos = read_phase_videos(cfg.val, cfg.class_names) if cfg.val else []
        self.cached = cfg.cache_features
        self._features: dict[str, torch.Tensor] = {}

    def prepare(self, model, cache_dir: Path) -> None:
        """Embed the frames of every video (cached on disk in ``cache_dir``) when training on features."""
        if not self.cached:
            return
        from safetensors.torch import load_file, save_file

        for p in model.backbone.parameters():
            p.requires_grad_(False)
        cache_dir.mkdir(parents=True, exist_ok=True)
        model.eval()
        for split, videos in (("train", self.train_videos), ("val", self.val_videos)):
            path = cache_dir / f"{split}.safetensors"
            if path.is_file():
                self._features.update({f"{split}/{k}": v for k, v in load_file(str(path)).items()})
                continue
            feats = {v.name: self._embed(model, v.frames) for v in videos}
            if feats:
                tmp = path.with_name(f".{path.name}.tmp")
                save_file(feats, str(tmp))
                tmp.replace(path)
            self._features.update({f"{split}/{k}": v for k, v in feats.items()})

    @torch.no_grad()
    def _embed(self, model, frames, batch: int = 32) -> torch.Tensor:
        out = []
        for i in range(0, len(frames), batch):
            x = torch.stack([self.transform(p) for p in frames[i:i + batch]]).to(_device(model))
            out.append(model.backbone.forward_embedding(x).float().cpu())
        return torch.cat(out).contiguous()

    def train_batches(self, epoch: int) -> Iterable:
        if self.cached:
            order = np.random.default_rng([self.cfg.seed, epoch]).permutation(len(self.train_videos))
            return [(self._features[f"train/{self.train_videos[i].name}"][None],
                     torch.from_numpy(self.train_videos[i].phases)[None]) for i in order]
        length = min(self.cfg.clip_length, min(len(v.frames) for v in self.train_videos))
        clips = PhaseClips(self.train_videos, self.transform, length)
        return _loader(clips, self.cfg.batch_size, True, self.cfg.num_workers, self.cfg.seed, epoch)

    def loss(self, model, batch) -> torch.Tensor:
        x, target = (t.to(_device(model)) for t in batch)
        if target.min() < 0 or target.max() >= model.num_classes:
            raise InputError(f"phase labels must lie in 0..{model.num_classes - 1}; found {int(target.max())}.")
        features = x if self.cached else model.forward_features(x)
        # Every TCN stage is supervised, as in TeCNO / MS-TCN.
        stages = model.temporal.forward_stages(features)
        return sum(F.cross_entropy(s.float().reshape(-1, s.shape[-1]), target.reshape(-1)) for s in stages) / len(stages)

    @torch.no_grad()
    def validate(self, model) -> dict[str, Any]:
        accs, f1s = [], []
        for video in self.val_videos:
            feats = self._features.get(f"val/{video.name}")
            if feats is None:
                feats = self._embed(model, video.frames)
            pred = model.forward_temporal(feats.to(_device(model))[None])[0].argmax(-1).cpu().numpy()
            m = metrics.phase_metrics(pred, video.phases, model.num_classes)
            accs.append(m["accuracy"])
            f1s.append(m["macro_f1"])
        return {"score": float(np.mean(accs)), "accuracy": float(np.mean(accs)), "macro_f1": float(np.nanmean(f1s))}


TASKS = {"segmentation": SegmentationTask, "phase": PhaseTask, "cvs": CVSTask}
