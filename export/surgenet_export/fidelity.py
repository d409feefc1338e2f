"""Segmentation quality of an exported model against ground-truth masks, for judging fast backends.

A backend is faithful when it segments as well as FP32, not when its logits round the same way:
on a trained model what matters is the mIoU against the annotation. Predictions made at the
graph's size are brought to the mask's size (nearest) and counted into one confusion matrix over
all frames with :func:`surgenet.evaluation.metrics.confusion_matrix`; mask values outside the model's
classes (255, or undocumented ids) are ignored.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

import numpy as np

from surgenet.exceptions import InputError

IGNORE = 255


def read_mask(path: str | Path) -> np.ndarray:
    """A single-channel class-id mask (PNG) as a 2-D uint8 array."""
    from PIL import Image

    try:
        with Image.open(path) as img:
            if img.mode not in ("L", "P"):
                raise InputError(f"{path} is a {img.mode} image; masks must be single-channel PNGs of class ids.")
            return np.asarray(img, dtype=np.uint8)
    except (FileNotFoundError, OSError) as exc:
        raise InputError(f"cannot read mask {path}: {exc}.") from exc


def to_mask_size(pred: np.ndarray, shape: Sequence[int]) -> np.ndarray:
    """A class map resized to ``shape`` by nearest neighbour (pixel centres), as PIL's NEAREST does."""
    h, w = pred.shape
    rows = np.minimum(((np.arange(shape[0]) + 0.5) * h / shape[0]).astype(np.int64), h - 1)
    cols = np.minimum(((np.arange(shape[1]) + 0.5) * w / shape[1]).astype(np.int64), w - 1)
    return pred[rows[:, None], cols[None, :]]


def confusion_against_masks(preds: Sequence[np.ndarray], masks: Sequence[str | Path | np.ndarray],
                            num_classes: int) -> np.ndarray:
    """One ``(C, C)`` confusion matrix (rows target) over all frames."""
    from surgenet.evaluation.metrics import confusion_matrix

    cm = np.zeros((num_classes, num_classes), np.int64)
    for pred, mask in zip(preds, masks, strict=True):
        target = read_mask(mask) if isinstance(mask, (str, Path)) else np.asarray(mask)
        target = np.where(target < num_classes, target, IGNORE)
        cm += confusion_matrix(to_mask_size(np.asarray(pred), target.shape), target, num_classes, ignore_index=IGNORE)
    return cm


def miou_against_masks(preds: Sequence[np.ndarray], masks: Sequence[str | Path | np.ndarray],
                       num_classes: int) -> dict[str, Any]:
    """``miou`` (0..1, the mean over classes present in prediction or target) and ``per_class_iou``
    (None for a class in neither) over all frames."""
    from surgenet.evaluation.metrics import segmentation_metrics_from_confusion

    scores = segmentation_metrics_from_confusion(confusion_against_masks(preds, masks, num_classes))
    iou = [None if np.isnan(v) else float(v) for v in scores["iou"]]
    return {"miou": float(scores["mean_iou"]), "per_class_iou": iou}


def eval_pairs(folder: str | Path) -> tuple[list[Path], list[Path]]:
    """``images/`` and ``masks/`` of a segmentation dataset folder, paired by file stem."""
    from .calibration_frames import image_files

    folder = Path(folder).expanduser()
    if not (folder / "images").is_dir() or not (folder / "masks").is_dir():
        raise InputError(f"{folder} must hold images/ and masks/ (PNG class ids, 255 = ignore), as an "
                         "Endoscapes split folder does.")
    images = image_files(folder / "images")
    masks = [folder / "masks" / (f.stem + ".png") for f in images]
    missing = [m.name for m in masks if not m.is_file()]
    if missing:
        raise InputError(f"{len(missing)} image(s) of {folder / 'images'} have no mask in masks/, e.g. {missing[0]}.")
    return images, masks
