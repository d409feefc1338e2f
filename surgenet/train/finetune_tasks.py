"""What differs between the fine-tuning tasks: data, loss, and validation metrics.

Each task object opens its datasets when built (the readers validate every label then, before
any training), offers ``class_names`` (from the training set), ``bind(model, transform)``,
``train_batches(epoch)`` (an iterable of batches), ``loss(model, batch)`` and
``validate(model) -> dict`` whose ``score`` (higher is better) picks the best checkpoint and
drives early stopping: mean IoU (segmentation), mean per-video accuracy (phase), mAP (CVS, tools).
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

from ..evaluation import metrics
from ..exceptions import InputError
from ..io.masks import IGNORE_INDEX
from .data.labelled import LabelSamples, PhaseClips, SegmentationSamples, collate_masks
from .losses import class_weights_from_pixels, dice_ce_loss
from .seg_augment import SegmentationAugment

logger = logging.getLogger(__name__)


def open_labelled(spec: str, task: str, class_names: list[str] | None = None):
    """The reader of ``spec`` (``FORMAT:PATH`` or a path whose format is detected) for ``task``."""
    from .formats import open_dataset

    return open_dataset(spec, task, class_names=class_names)


def _loader(dataset, batch_size: int, shuffle: bool, workers: int, seed: int, epoch: int, collate=None):
    generator = torch.Generator().manual_seed(seed * 1000 + epoch)  # a fixed order per epoch: resumable
    return torch.utils.data.DataLoader(dataset, batch_size=batch_size, shuffle=shuffle, num_workers=workers,
                                       generator=generator, drop_last=False, collate_fn=collate)


def _device(model) -> torch.device:
    return next(model.parameters()).device


def _progress(iterable, desc: str):
    from tqdm.auto import tqdm

    return tqdm(iterable, desc=desc, leave=False, unit="batch")


class SegmentationTask:
    """Dice + cross-entropy on augmented views; validation at each frame's full resolution,
    summing one confusion matrix (no mask is kept)."""

    def __init__(self, cfg) -> None:
        self.cfg = cfg
        # Formats without class names (folder): --num-classes fixes the classes, higher ids become 255.
        names = cfg.class_names or ([f"class_{i}" for i in range(cfg.num_classes)] if cfg.num_classes else None)
        self.train_source = open_labelled(cfg.train, "segmentation", names)
        self.val_source = open_labelled(cfg.val, "segmentation", names) if cfg.val else None
        self.class_names = list(self.train_source.class_names)
        self.val_set = None
        self.class_weight = segmentation_class_weight(self.train_source, cfg.class_weighting)

    def bind(self, model, transform) -> None:
        augment = SegmentationAugment(tuple(transform.size), scale=tuple(self.cfg.crop_scale))
        self.train_set = SegmentationSamples(self.train_source, transform, augment, seed=self.cfg.seed)
        if self.val_source is not None:
            self.val_set = SegmentationSamples(self.val_source, transform)

    def train_batches(self, epoch: int) -> Iterable:
        self.train_set.epoch = epoch
        return _loader(self.train_set, self.cfg.batch_size, True, self.cfg.num_workers, self.cfg.seed, epoch)

    def loss(self, model, batch) -> torch.Tensor:
        images, masks = (t.to(_device(model)) for t in batch)
        return dice_ce_loss(model(images), masks, IGNORE_INDEX, dice_weight=self.cfg.dice_weight,
                            class_weight=self.class_weight)

    @torch.no_grad()
    def validate(self, model) -> dict[str, Any]:
        return segmentation_scores(model, self.val_set, self.cfg.batch_size, self.cfg.num_workers)


def segmentation_class_weight(source, scheme: str) -> torch.Tensor | None:
    """Cross-entropy class weights from the training masks' pixel counts (read when the masks were
    checked, so free), or None for ``none``; logged so a run records what it weighed."""
    if scheme == "none":  # other names are checked by finetune() before any data is read
        return None
    pixels = np.asarray(getattr(source, "class_pixels", []), dtype=np.int64)
    if pixels.size != len(source.class_names) or pixels.sum() == 0:
        raise InputError(f"class weighting {scheme!r} needs the pixel counts of the training masks, which "
                         f"this reader does not give; use --class-weighting none.")
    weights = class_weights_from_pixels(pixels, scheme)
    logger.info("class weights (%s): %s", scheme,
                ", ".join(f"{n} {w:.3g}" for n, w in zip(source.class_names, weights)))
    return torch.tensor(weights, dtype=torch.float32)


@torch.no_grad()
def segmentation_scores(model, samples, batch_size: int, workers: int, on_frame=None) -> dict[str, Any]:
    """Per-class and mean IoU / Dice of ``model`` on ``samples`` (whole frames), at each mask's size.

    Logits are resized bilinearly to the mask's size before the argmax, as the Predictor does, and
    every frame adds its confusion matrix to one running sum. ``on_frame(index, pred, mask)``, when
    given, sees each prediction (e.g. to draw a contact sheet).
    """
    n = model.num_classes
    cm = np.zeros((n, n), dtype=np.int64)
    index = 0
    for images, masks in _progress(_loader(samples, batch_size, False, workers, 0, 0, collate_masks), "validation"):
        logits = model(images.to(_device(model))).float()
        for i, mask in enumerate(masks):
            full = F.interpolate(logits[i:i + 1], size=tuple(mask.shape), mode="bilinear", align_corners=False)
            pred = full[0].argmax(0).cpu().numpy()
            target = mask.numpy()
            cm += metrics.confusion_matrix(pred, target, n, ignore_index=IGNORE_INDEX)
            if on_frame is not None:
                on_frame(index, pred, target)
            index += 1
    m = metrics.segmentation_metrics_from_confusion(cm)
    return {"score": m["mean_iou"], "mean_iou": m["mean_iou"], "mean_dice": m["mean_dice"],
            "iou": [float(x) for x in m["iou"]], "dice": [float(x) for x in m["dice"]],
            "confusion": cm.tolist()}


class MultiLabelTask:
    """Independent sigmoids (binary cross-entropy per label): CVS criteria or tools in view."""

    name = ""

    def __init__(self, cfg) -> None:
        self.cfg = cfg
        self.train_source = open_labelled(cfg.train, self.name, cfg.class_names)
        self.val_source = open_labelled(cfg.val, self.name, cfg.class_names) if cfg.val else None
        self.class_names = list(self.train_source.class_names)
        self.val_set = None
        self.pos_weight = label_pos_weight(self.train_source, cfg.label_weighting)

    def bind(self, model, transform) -> None:
        self.train_set = LabelSamples(self.train_source, transform, train=True, seed=self.cfg.seed)
        if self.val_source is not None:
            self.val_set = LabelSamples(self.val_source, transform)

    def train_batches(self, epoch: int) -> Iterable:
        self.train_set.epoch = epoch
        return _loader(self.train_set, self.cfg.batch_size, True, self.cfg.num_workers, self.cfg.seed, epoch)

    def loss(self, model, batch) -> torch.Tensor:
        images, targets = (t.to(_device(model)) for t in batch)
        pos_weight = None if self.pos_weight is None else self.pos_weight.to(targets.device)
        return F.binary_cross_entropy_with_logits(model(images).float(), targets, pos_weight=pos_weight)

    @torch.no_grad()
    def validate(self, model) -> dict[str, Any]:
        return multilabel_scores(model, self.val_set, self.name, self.cfg.batch_size, self.cfg.num_workers)


LABEL_WEIGHTINGS = ("none", "balanced")


def label_pos_weight(source, scheme: str) -> torch.Tensor | None:
    """``pos_weight`` of the binary cross-entropy per label, from the training labels' prevalence.

    ``balanced``: ``(1 - p) / p`` with ``p`` the mean (soft) target of the label, so positives and
    negatives weigh the same in total. The loss's minimiser then puts the 0.5 decision threshold
    where balanced accuracy wants it rather than where a rare criterion (CVS) is never predicted;
    ranking metrics (AP) do not depend on the threshold. A label that is never (or always) positive
    keeps weight 1. ``none`` returns None.
    """
    if scheme == "none":  # other names are checked by finetune() before any data is read
        return None
    if scheme not in LABEL_WEIGHTINGS:
        raise ValueError(f"unknown label weighting {scheme!r}; valid: {', '.join(LABEL_WEIGHTINGS)}.")
    labels = np.asarray(source.labels, dtype=np.float64).reshape(len(source.labels), -1)
    prevalence = labels.mean(0)
    weights = np.ones_like(prevalence)
    informative = (prevalence > 0) & (prevalence < 1)
    weights[informative] = (1 - prevalence[informative]) / prevalence[informative]
    logger.info("positive weights (%s): %s", scheme,
                ", ".join(f"{n} {w:.3g}" for n, w in zip(source.class_names, weights)))
    return torch.tensor(weights, dtype=torch.float32)


@torch.no_grad()
def multilabel_scores(model, samples, task: str, batch_size: int, workers: int,
                      with_predictions: bool = False) -> dict[str, Any]:
    """mAP, per-label AP and balanced accuracy (targets binarised at 0.5, e.g. CVS votes); with
    ``with_predictions`` also the ``probabilities`` and boolean ``targets`` they were computed from."""
    scores, targets = [], []
    for images, target in _progress(_loader(samples, batch_size, False, workers, 0, 0), "validation"):
        scores.append(torch.sigmoid(model(images.to(_device(model))).float()).cpu().numpy())
        targets.append(target.numpy())
    s, t = np.concatenate(scores), np.concatenate(targets) >= 0.5
    m = metrics.cvs_metrics(s, t) if task == "cvs" else metrics.multilabel_metrics(s, t)
    out = {"score": m["mAP"], "mAP": m["mAP"], "mean_balanced_accuracy": m["mean_balanced_accuracy"],
           "ap": [float(x) for x in m["ap"]], "balanced_accuracy": [float(x) for x in m["balanced_accuracy"]]}
    if with_predictions:
        out.update(probabilities=s, targets=t)
    return out


class CVSTask(MultiLabelTask):
    name = "cvs"


class ToolsTask(MultiLabelTask):
    name = "tools"


class PhaseTask:
    """Cached features (default): embed every frame once with the frozen backbone, then train the
    temporal model on whole videos. End to end: clips of ``clip_length`` frames through both."""

    def __init__(self, cfg) -> None:
        self.cfg = cfg
        train = open_labelled(cfg.train, "phase", cfg.class_names)
        self.class_names = list(train.class_names)
        self.train_videos = list(train.videos)
        self.val_videos = list(open_labelled(cfg.val, "phase", cfg.class_names).videos) if cfg.val else []
        self.cached = cfg.cache_features
        self._features: dict[str, torch.Tensor] = {}

    def bind(self, model, transform) -> None:
        self.transform = transform

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


TASKS = {"segmentation": SegmentationTask, "phase": PhaseTask, "cvs": CVSTask, "tools": ToolsTask}
