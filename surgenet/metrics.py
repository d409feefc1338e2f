"""Evaluation metrics of the three SurgeNet tasks, in numpy.

Conventions: a class absent from both prediction and target has an undefined score (NaN) and is
left out of the means; ``ignore_index`` pixels or frames count nowhere.

* Segmentation: per-class Dice and IoU from one confusion matrix; ASSD (average symmetric surface
  distance) per binary mask, boundaries from 4-connected erosion with the outside of the image as
  background (scipy's ``binary_erosion`` default).
* Phase: accuracy, and macro precision, recall, F1 and Jaccard over the phases of a video.
* CVS: per-criterion balanced accuracy and average precision (sklearn's step-wise AP), and means.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np


def _labels(pred: np.ndarray, target: np.ndarray, ignore_index: int | None) -> tuple[np.ndarray, np.ndarray]:
    pred, target = np.asarray(pred), np.asarray(target)
    if pred.shape != target.shape:
        raise ValueError(f"prediction shape {pred.shape} differs from target shape {target.shape}.")
    keep = np.ones(target.shape, bool) if ignore_index is None else target != ignore_index
    return pred[keep].astype(np.int64).ravel(), target[keep].astype(np.int64).ravel()


def confusion_matrix(pred: np.ndarray, target: np.ndarray, num_classes: int,
                     ignore_index: int | None = None) -> np.ndarray:
    """``(num_classes, num_classes)`` counts, rows = target class, columns = predicted class."""
    p, t = _labels(pred, target, ignore_index)
    bad = (p < 0) | (p >= num_classes) | (t < 0) | (t >= num_classes)
    if bad.any():
        raise ValueError(f"labels outside 0..{num_classes - 1} (set ignore_index for void labels).")
    return np.bincount(t * num_classes + p, minlength=num_classes ** 2).reshape(num_classes, num_classes)


def _ratio(num: np.ndarray, den: np.ndarray) -> np.ndarray:
    num, den = num.astype(np.float64), den.astype(np.float64)
    return np.divide(num, den, out=np.full(num.shape, np.nan), where=den > 0)


def dice_per_class(pred: np.ndarray, target: np.ndarray, num_classes: int,
                   ignore_index: int | None = None) -> np.ndarray:
    """2|P∩T| / (|P| + |T|) per class; NaN where the class is in neither."""
    cm = confusion_matrix(pred, target, num_classes, ignore_index)
    tp = np.diag(cm)
    return _ratio(2 * tp, cm.sum(0) + cm.sum(1))


def iou_per_class(pred: np.ndarray, target: np.ndarray, num_classes: int,
                  ignore_index: int | None = None) -> np.ndarray:
    """|P∩T| / |P∪T| per class; NaN where the class is in neither."""
    cm = confusion_matrix(pred, target, num_classes, ignore_index)
    tp = np.diag(cm)
    return _ratio(tp, cm.sum(0) + cm.sum(1) - tp)


def _boundary(mask: np.ndarray) -> np.ndarray:
    padded = np.pad(mask, 1, constant_values=False)
    eroded = (padded[1:-1, 1:-1] & padded[:-2, 1:-1] & padded[2:, 1:-1]
              & padded[1:-1, :-2] & padded[1:-1, 2:])
    return mask & ~eroded


def _nearest(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Distance from each point of ``a`` to the nearest point of ``b``, in chunks of bounded memory."""
    out = np.empty(len(a))
    step = max(1, 4_000_000 // max(1, len(b)))
    for start in range(0, len(a), step):
        diff = a[start:start + step, None, :] - b[None, :, :]
        out[start:start + step] = np.sqrt((diff ** 2).sum(-1).min(1))
    return out


def assd(pred_mask: np.ndarray, target_mask: np.ndarray, spacing: Sequence[float] = (1.0, 1.0)) -> float:
    """Average symmetric surface distance between two 2-D binary masks, in units of ``spacing``.

    NaN if both masks are empty, inf if only one is (no surface to measure to).
    """
    pred_mask, target_mask = np.asarray(pred_mask, bool), np.asarray(target_mask, bool)
    if pred_mask.shape != target_mask.shape or pred_mask.ndim != 2:
        raise ValueError(f"assd needs two 2-D masks of one shape, got {pred_mask.shape} and {target_mask.shape}.")
    if not pred_mask.any() and not target_mask.any():
        return float("nan")
    if not pred_mask.any() or not target_mask.any():
        return float("inf")
    scale = np.asarray(spacing, dtype=np.float64)
    a = np.argwhere(_boundary(pred_mask)) * scale
    b = np.argwhere(_boundary(target_mask)) * scale
    return float((_nearest(a, b).sum() + _nearest(b, a).sum()) / (len(a) + len(b)))


def assd_per_class(pred: np.ndarray, target: np.ndarray, num_classes: int, ignore_index: int | None = None,
                   spacing: Sequence[float] = (1.0, 1.0)) -> np.ndarray:
    """:func:`assd` of each class's masks; ``ignore_index`` pixels belong to neither mask."""
    pred, target = np.asarray(pred), np.asarray(target)
    valid = np.ones(target.shape, bool) if ignore_index is None else target != ignore_index
    return np.array([assd((pred == c) & valid, (target == c) & valid, spacing) for c in range(num_classes)])


def segmentation_metrics(pred: np.ndarray, target: np.ndarray, num_classes: int,
                         ignore_index: int | None = None) -> dict[str, object]:
    """Per-class and mean Dice and IoU (means over the classes that occur)."""
    dice = dice_per_class(pred, target, num_classes, ignore_index)
    iou = iou_per_class(pred, target, num_classes, ignore_index)
    return {"dice": dice, "iou": iou, "mean_dice": _nanmean(dice), "mean_iou": _nanmean(iou)}


def _nanmean(values: np.ndarray) -> float:
    values = np.asarray(values, dtype=np.float64)
    return float(values[~np.isnan(values)].mean()) if (~np.isnan(values)).any() else float("nan")


def phase_metrics(pred: Sequence[int], target: Sequence[int], num_classes: int,
                  ignore_index: int | None = None) -> dict[str, object]:
    """Frame accuracy and per-phase / macro precision, recall, F1 and Jaccard of one video."""
    cm = confusion_matrix(np.asarray(pred), np.asarray(target), num_classes, ignore_index)
    tp, fp, fn = np.diag(cm), cm.sum(0) - np.diag(cm), cm.sum(1) - np.diag(cm)
    present = (tp + fp + fn) > 0
    precision = np.where(present, _ratio(tp, tp + fp), np.nan)
    recall = np.where(present, _ratio(tp, tp + fn), np.nan)
    # A phase that is predicted but never occurs has recall 0/0; it counts as 0 in the macro recall.
    precision = np.where(present & np.isnan(precision), 0.0, precision)
    recall = np.where(present & np.isnan(recall), 0.0, recall)
    f1 = _ratio(2 * tp, 2 * tp + fp + fn)
    jaccard = _ratio(tp, tp + fp + fn)
    total = cm.sum()
    return {
        "accuracy": float(tp.sum() / total) if total else float("nan"),
        "precision": precision, "recall": recall, "f1": f1, "jaccard": jaccard,
        "macro_precision": _nanmean(precision), "macro_recall": _nanmean(recall),
        "macro_f1": _nanmean(f1), "macro_jaccard": _nanmean(jaccard),
    }


def _as_2d(values: np.ndarray) -> np.ndarray:
    values = np.asarray(values)
    return values[:, None] if values.ndim == 1 else values


def balanced_accuracy(scores: np.ndarray, targets: np.ndarray, threshold: float = 0.5) -> np.ndarray:
    """Per criterion (columns), the mean of sensitivity and specificity of ``scores >= threshold``.

    A criterion whose targets hold only one class gets the rate that is defined.
    """
    scores, targets = _as_2d(scores), _as_2d(targets).astype(bool)
    pred = scores >= threshold
    tpr = _ratio((pred & targets).sum(0), targets.sum(0))
    tnr = _ratio((~pred & ~targets).sum(0), (~targets).sum(0))
    return np.array([_nanmean(np.array([a, b])) for a, b in zip(tpr, tnr)])


def average_precision(scores: np.ndarray, targets: np.ndarray) -> np.ndarray:
    """Per criterion, AP = sum over score thresholds of (recall step) x precision; NaN without positives."""
    scores, targets = _as_2d(scores).astype(np.float64), _as_2d(targets).astype(bool)
    out = np.full(scores.shape[1], np.nan)
    for k in range(scores.shape[1]):
        s, t = scores[:, k], targets[:, k]
        if not t.any():
            continue
        order = np.argsort(-s, kind="mergesort")
        s, t = s[order], t[order]
        # Evaluate only at the last position of each run of tied scores: ties form one threshold.
        last = np.r_[np.nonzero(np.diff(s))[0], len(s) - 1]
        tp = np.cumsum(t)[last]
        precision = tp / (last + 1)
        recall = tp / t.sum()
        out[k] = float(np.sum(np.diff(np.r_[0.0, recall]) * precision))
    return out


def cvs_metrics(scores: np.ndarray, targets: np.ndarray, threshold: float = 0.5) -> dict[str, object]:
    """Per-criterion and mean AP (mAP) and balanced accuracy of CVS probabilities ``(N, 3)``."""
    ap = average_precision(scores, targets)
    bacc = balanced_accuracy(scores, targets, threshold)
    return {"ap": ap, "mAP": _nanmean(ap), "balanced_accuracy": bacc, "mean_balanced_accuracy": _nanmean(bacc)}
