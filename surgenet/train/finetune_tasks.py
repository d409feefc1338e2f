"""What differs between the three fine-tuning tasks: data, loss, and validation metrics.

Each task object offers ``train_batches(epoch)`` (an iterable of batches), ``loss(model, batch)``
and ``validate(model) -> dict`` whose ``score`` (higher is better) picks the best checkpoint:
mean Dice (segmentation), mean per-video accuracy (phase), mAP (CVS).
"""

from __future__ import annotations

import hashlib
import json
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
        """Embed the frames of every video (cached on disk in ``cache_dir``) when training on features.

        A cache file is reused only when its key (backbone, a digest of its weights, preprocessing,
        frame files) equals this run's; otherwise, e.g. for other ``--weights`` into the same
        ``--out``, the temporal model would learn on another backbone's features, so it is rebuilt.
        """
        if not self.cached:
            return
        for p in model.backbone.parameters():
            p.requires_grad_(False)
        cache_dir.mkdir(parents=True, exist_ok=True)
        model.eval()
        key = feature_cache_key(model, self.transform)
        for split, videos in (("train", self.train_videos), ("val", self.val_videos)):
            if videos:
                split_key = {**key, "frames": frames_digest(videos)}
                feats = self._cached_split(model, cache_dir / f"{split}.safetensors", videos, split_key)
                self._features.update({f"{split}/{k}": v for k, v in feats.items()})

    def _cached_split(self, model, path: Path, videos: list, key: dict[str, Any]) -> dict[str, torch.Tensor]:
        """The features of ``videos`` from ``path`` when its key matches ``key``, else computed and saved."""
        from safetensors.torch import save_file

        from ..io.atomic import atomic_target

        stale = _stale_fields(path, key)
        if not stale:
            logger.info("phase features: reusing %s (same backbone weights, preprocessing and frames)", path)
            return _load_features(path)
        logger.info("phase features: computing %s (%s)", path,
                    "no cache yet" if stale == ["file"] else f"the cache differs in {', '.join(stale)}")
        feats = {v.name: self._embed(model, v.frames) for v in videos}
        with atomic_target(path) as tmp:
            save_file(feats, str(tmp), metadata={CACHE_KEY: json.dumps(key, sort_keys=True)})
        return feats

    @torch.no_grad()
    def _embed(self, model, frames, batch: int = 32) -> torch.Tensor:
        out = []
        for i in range(0, len(frames), batch):
            x = torch.stack([self.transform(p) for p in frames[i:i + batch]]).to(_device(model))
            out.append(model.embed(x).float().cpu())  # as the model embeds frames at inference
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


CACHE_KEY = "surgenet_feature_cache"
CACHE_FORMAT = "phase-features/2"  # bump when what a cached feature means changes


def feature_cache_key(model, transform) -> dict[str, Any]:
    """What fixes the cached per-frame features besides the frames, as JSON-safe values."""
    return {"format": CACHE_FORMAT, "backbone": model.config["backbone"], "arch": model.config["arch"],
            "backbone_kwargs": model.config.get("backbone_kwargs", {}), "weights": weights_digest(model.backbone),
            "image_size": list(transform.size), "mean": list(transform.mean), "std": list(transform.std)}


def weights_digest(module: torch.nn.Module) -> str:
    """SHA-256 of a module's state dict (names, dtypes, shapes and values): equal only for equal weights."""
    h = hashlib.sha256()
    for name, tensor in sorted(module.state_dict().items()):
        t = tensor.detach().to("cpu").contiguous()
        h.update(f"{name}|{t.dtype}|{tuple(t.shape)}|".encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return h.hexdigest()


def frames_digest(videos) -> str:
    """SHA-256 of each video's name and frame files (path, size, modification time), in order."""
    h = hashlib.sha256()
    for video in videos:
        h.update(f"video|{video.name}|{len(video.frames)}\n".encode())
        for frame in video.frames:
            st = Path(frame).stat()
            h.update(f"{Path(frame).resolve()}|{st.st_size}|{st.st_mtime_ns}\n".encode())
    return h.hexdigest()


def _stale_fields(path: Path, key: dict[str, Any]) -> list[str]:
    """The key fields in which the cache at ``path`` differs from ``key``; ``["file"]`` if none is readable."""
    from safetensors import safe_open

    if not path.is_file():
        return ["file"]
    try:
        with safe_open(str(path), framework="pt") as f:
            saved = json.loads((f.metadata() or {}).get(CACHE_KEY, "{}"))
    except Exception as exc:  # a damaged or foreign file: rebuild it
        logger.warning("phase features: %s is unreadable (%s); rebuilding it", path, exc)
        return ["file"]
    return sorted(k for k in set(key) | set(saved) if saved.get(k) != key.get(k))


def _load_features(path: Path) -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    return load_file(str(path))


TASKS = {"segmentation": SegmentationTask, "phase": PhaseTask, "cvs": CVSTask}
