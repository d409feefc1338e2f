"""Evaluation metrics of the three SurgeNet tasks, in numpy.

Conventions: a class absent from both prediction and target has an undefined score (NaN) and is
left out of the means; ``ignore_index`` pixels or frames count nowhere.

* Segmentation: per-class Dice and IoU from one confusion matrix; ASSD (average symmetric surface
  distance) per binary mask, boundaries from 4-connected erosion with the outside of the image as
  background (scipy's ``binary_erosion`` default), distances from SciPy's exact Euclidean distance
  transform (SciPy comes with the ``train`` extra; nothing else here needs it).
* Phase: accuracy, and macro precision, recall, F1 and Jaccard over the phases of a video.
* CVS: per-criterion balanced accuracy and average precision (sklearn's step-wise AP), and means.
* Multi-label presence (tools): per-label AP and mAP, as CVS.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

from ..tasks import MULTI_LABEL_TASKS


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


def _distance_to(surface: np.ndarray, spacing: np.ndarray) -> np.ndarray:
    """Exact Euclidean distance of every pixel to the nearest ``True`` pixel of ``surface``.

    One distance transform is O(H x W); comparing every pair of boundary pixels grows with the
    product of the two boundary lengths (seconds for one 200 x 200 pair).
    """
    try:
        from scipy.ndimage import distance_transform_edt
    except ImportError as exc:
        raise ImportError('ASSD needs SciPy (its exact distance transform): pip install "surgenet[train]".') from exc
    return distance_transform_edt(~surface, sampling=spacing)


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
    a, b = _boundary(pred_mask), _boundary(target_mask)
    total = _distance_to(b, scale)[a].sum() + _distance_to(a, scale)[b].sum()
    return float(total / (a.sum() + b.sum()))


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


def segmentation_metrics_from_confusion(cm: np.ndarray) -> dict[str, object]:
    """:func:`segmentation_metrics` from an accumulated confusion matrix (rows target, columns
    prediction): validation sums one matrix per frame instead of keeping every mask."""
    cm = np.asarray(cm)
    tp = np.diag(cm)
    dice = _ratio(2 * tp, cm.sum(0) + cm.sum(1))
    iou = _ratio(tp, cm.sum(0) + cm.sum(1) - tp)
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


def decision_agreement(ref: np.ndarray, out: np.ndarray, task: str) -> float:
    """Share of decisions on which two outputs of one model agree (e.g. an exported engine against
    PyTorch): each pixel's argmax over the class axis 1 (segmentation), each frame's argmax over
    the last axis (phase), each logit's sign (multi-label tasks such as CVS: independent sigmoids)."""
    ref, out = np.asarray(ref), np.asarray(out)
    if ref.shape != out.shape:
        raise ValueError(f"outputs of shapes {ref.shape} and {out.shape} cannot be compared.")
    if task in MULTI_LABEL_TASKS:
        return float(np.mean((ref > 0) == (out > 0)))
    axis = 1 if task == "segmentation" else -1
    return float(np.mean(ref.argmax(axis) == out.argmax(axis)))


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


def precision_recall_curve(scores: np.ndarray, targets: np.ndarray) -> tuple[np.ndarray, np.ndarray] | None:
    """Recall and precision of one label at each distinct score taken as the threshold, highest first.

    Tied scores form one threshold (the last position of each run). None without positives.
    """
    s, t = np.asarray(scores, dtype=np.float64).ravel(), np.asarray(targets).astype(bool).ravel()
    if not t.any():
        return None
    order = np.argsort(-s, kind="mergesort")
    s, t = s[order], t[order]
    last = np.r_[np.nonzero(np.diff(s))[0], len(s) - 1]
    tp = np.cumsum(t)[last]
    return tp / t.sum(), tp / (last + 1)


def average_precision(scores: np.ndarray, targets: np.ndarray) -> np.ndarray:
    """Per criterion, AP = sum over score thresholds of (recall step) x precision; NaN without positives."""
    scores, targets = _as_2d(scores), _as_2d(targets)
    out = np.full(scores.shape[1], np.nan)
    for k in range(scores.shape[1]):
        curve = precision_recall_curve(scores[:, k], targets[:, k])
        if curve is not None:
            recall, precision = curve
            out[k] = float(np.sum(np.diff(np.r_[0.0, recall]) * precision))
    return out


def cvs_metrics(scores: np.ndarray, targets: np.ndarray, threshold: float = 0.5) -> dict[str, object]:
    """Per-criterion and mean AP (mAP) and balanced accuracy of CVS probabilities ``(N, 3)``."""
    ap = average_precision(scores, targets)
    bacc = balanced_accuracy(scores, targets, threshold)
    return {"ap": ap, "mAP": _nanmean(ap), "balanced_accuracy": bacc, "mean_balanced_accuracy": _nanmean(bacc)}


def multilabel_metrics(scores: np.ndarray, targets: np.ndarray, threshold: float = 0.5) -> dict[str, object]:
    """Multi-label presence (e.g. surgical tools, ``(N, K)`` probabilities): per-label AP and their
    mean over the labels that occur (mAP, as the Cholec80 / CholecT50 tool-presence challenges), and
    per-label balanced accuracy at ``threshold``."""
    ap = average_precision(scores, targets)
    bacc = balanced_accuracy(scores, targets, threshold)
    return {"ap": ap, "mAP": _nanmean(ap), "balanced_accuracy": bacc, "mean_balanced_accuracy": _nanmean(bacc)}


# ----------------------------------------------------------------------------- video object segmentation
# The DAVIS measures as davis2017-evaluation defines them: J = region IoU, F = boundary F-measure
# with boundaries from ``_seg2bmap`` matched within ``bound_th`` (a share of the image diagonal);
# per object the mean, the recall (share of frames above 0.5) and the decay (first quarter of the
# frames minus the last quarter). The semi-supervised protocol scores every frame but the first
# (given) and the last.

DAVIS_BOUND_TH = 0.008


def davis_j(pred_mask: np.ndarray, target_mask: np.ndarray, void: np.ndarray | None = None) -> float:
    """Region similarity J: IoU of two binary masks outside ``void``; 1 when both are empty."""
    pred_mask, target_mask = _binary_pair(pred_mask, target_mask)
    keep = np.ones(target_mask.shape, bool) if void is None else ~np.asarray(void, bool)
    union = ((pred_mask | target_mask) & keep).sum()
    if union == 0:
        return 1.0
    return float(((pred_mask & target_mask) & keep).sum() / union)


def boundary_map(mask: np.ndarray) -> np.ndarray:
    """One-pixel boundaries of a binary mask, as DAVIS's ``_seg2bmap``: a pixel is on the boundary
    when it differs from its east, south or south-east neighbour (the last row compares east only,
    the last column south only, the bottom-right corner never), so boundaries sit half a pixel
    towards the origin."""
    seg = np.asarray(mask, bool)
    east, south, south_east = np.zeros_like(seg), np.zeros_like(seg), np.zeros_like(seg)
    east[:, :-1] = seg[:, 1:]
    south[:-1, :] = seg[1:, :]
    south_east[:-1, :-1] = seg[1:, 1:]
    b = (seg ^ east) | (seg ^ south) | (seg ^ south_east)
    b[-1, :] = seg[-1, :] ^ east[-1, :]
    b[:, -1] = seg[:, -1] ^ south[:, -1]
    b[-1, -1] = False
    return b


def _disk_offsets(radius: int) -> np.ndarray:
    """Offsets (dy, dx) of skimage's ``disk(radius)``: dy^2 + dx^2 <= radius^2."""
    r = np.arange(-radius, radius + 1)
    dy, dx = np.meshgrid(r, r, indexing="ij")
    inside = dy ** 2 + dx ** 2 <= radius ** 2
    return np.stack([dy[inside], dx[inside]], axis=1)


def _dilate(mask: np.ndarray, offsets: np.ndarray) -> np.ndarray:
    """Binary dilation by a set of offsets (pixels outside the image count as empty)."""
    h, w = mask.shape
    out = np.zeros_like(mask)
    for dy, dx in offsets:
        ys, yd = (slice(0, h - dy), slice(dy, h)) if dy >= 0 else (slice(-dy, h), slice(0, h + dy))
        xs, xd = (slice(0, w - dx), slice(dx, w)) if dx >= 0 else (slice(-dx, w), slice(0, w + dx))
        out[yd, xd] |= mask[ys, xs]
    return out


def davis_f(pred_mask: np.ndarray, target_mask: np.ndarray, void: np.ndarray | None = None,
            bound_th: float = DAVIS_BOUND_TH) -> float:
    """Boundary F-measure F: precision and recall of boundary pixels matched within a disk of
    radius ``ceil(bound_th * diagonal)`` pixels (``bound_th >= 1``: that many pixels)."""
    pred_mask, target_mask = _binary_pair(pred_mask, target_mask)
    keep = np.ones(target_mask.shape, bool) if void is None else ~np.asarray(void, bool)
    radius = int(bound_th if bound_th >= 1 else np.ceil(bound_th * np.linalg.norm(target_mask.shape)))
    pred_b, target_b = boundary_map(pred_mask & keep), boundary_map(target_mask & keep)
    n_pred, n_target = int(pred_b.sum()), int(target_b.sum())
    if n_pred == 0 and n_target == 0:
        return 1.0
    if n_pred == 0 or n_target == 0:  # precision 1, recall 0 (or the reverse): F = 0
        return 0.0
    offsets = _disk_offsets(radius)
    precision = (pred_b & _dilate(target_b, offsets)).sum() / n_pred
    recall = (target_b & _dilate(pred_b, offsets)).sum() / n_target
    if precision + recall == 0:
        return 0.0
    return float(2 * precision * recall / (precision + recall))


def _binary_pair(pred_mask: np.ndarray, target_mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    pred_mask, target_mask = np.asarray(pred_mask, bool), np.asarray(target_mask, bool)
    if pred_mask.shape != target_mask.shape or pred_mask.ndim != 2:
        raise ValueError(f"need two 2-D masks of one shape, got {pred_mask.shape} and {target_mask.shape}.")
    return pred_mask, target_mask


def davis_statistics(per_frame: Sequence[float]) -> dict[str, float]:
    """Mean, recall (share of frames > 0.5) and decay (mean of the first quarter of the frames minus
    the last quarter; the four bins share their edge frames, as in davis2017-evaluation)."""
    values = np.asarray(per_frame, dtype=np.float64)
    if values.size == 0:
        return {"mean": float("nan"), "recall": float("nan"), "decay": float("nan")}
    edges = (np.round(np.linspace(1, len(values), 5) + 1e-10) - 1).astype(int)
    bins = [values[edges[i]:edges[i + 1] + 1] for i in range(4)]
    return {"mean": _nanmean(values), "recall": float(np.mean(values[~np.isnan(values)] > 0.5)),
            "decay": _nanmean(bins[0]) - _nanmean(bins[3])}


def davis_scores(preds: Sequence[np.ndarray], targets: Sequence[np.ndarray], object_ids: Sequence[int] | None = None,
                 void_label: int | None = 255, skip_first_last: bool = True,
                 bound_th: float = DAVIS_BOUND_TH) -> dict[str, object]:
    """J and F statistics of a label-map sequence, per object id and averaged (J&F mean).

    ``preds``/``targets``: one (H, W) integer map per frame, object ids > 0, ``void_label`` ignored.
    ``object_ids`` default: the ids in the first target. ``skip_first_last`` drops the first (given)
    and last frames as the DAVIS semi-supervised evaluation does.
    """
    if len(preds) != len(targets):
        raise ValueError(f"{len(preds)} predicted frames for {len(targets)} target frames.")
    if object_ids is None:
        object_ids = [int(v) for v in np.unique(targets[0]) if v != 0 and v != void_label]
    frames = range(1, len(targets) - 1) if skip_first_last else range(len(targets))
    per_object: dict[int, dict[str, dict[str, float]]] = {}
    for obj in object_ids:
        j_values, f_values = [], []
        for t in frames:
            target, pred = np.asarray(targets[t]), np.asarray(preds[t])
            void = None if void_label is None else target == void_label
            j_values.append(davis_j(pred == obj, target == obj, void))
            f_values.append(davis_f(pred == obj, target == obj, void, bound_th))
        per_object[int(obj)] = {"J": davis_statistics(j_values), "F": davis_statistics(f_values)}
    j_mean = _nanmean(np.array([o["J"]["mean"] for o in per_object.values()]))
    f_mean = _nanmean(np.array([o["F"]["mean"] for o in per_object.values()]))
    return {"per_object": per_object, "J_mean": j_mean, "F_mean": f_mean, "JF_mean": (j_mean + f_mean) / 2}
