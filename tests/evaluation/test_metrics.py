"""Metrics of the three tasks against values worked out by hand and brute-force computations."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest

from surgenet.evaluation import metrics


# ----------------------------------------------------------------------------- segmentation
# Valid pixels (255 is void):   (pred, target)
#   (0,0) 0 0   (0,1) 0 1   (0,2) 1 1
#   (1,0) 1 1   (1,1) 2 2   (1,2) void (pred 2)
PRED = np.array([[0, 0, 1], [1, 2, 2]])
TARGET = np.array([[0, 1, 1], [1, 2, 255]])


def test_dice_and_iou_per_class_by_hand_with_ignore_index():
    dice = metrics.dice_per_class(PRED, TARGET, num_classes=4, ignore_index=255)
    iou = metrics.iou_per_class(PRED, TARGET, num_classes=4, ignore_index=255)
    # class 0: |P|=2 |T|=1 inter=1; class 1: |P|=2 |T|=3 inter=2; class 2: |P|=1 |T|=1 inter=1
    # (the void pixel predicted as 2 counts nowhere); class 3 occurs nowhere -> NaN.
    np.testing.assert_allclose(dice[:3], [2 / 3, 4 / 5, 1.0])
    np.testing.assert_allclose(iou[:3], [1 / 2, 2 / 3, 1.0])
    assert math.isnan(dice[3]) and math.isnan(iou[3])
    summary = metrics.segmentation_metrics(PRED, TARGET, num_classes=4, ignore_index=255)
    assert summary["mean_dice"] == pytest.approx((2 / 3 + 4 / 5 + 1) / 3)
    assert summary["mean_iou"] == pytest.approx((1 / 2 + 2 / 3 + 1) / 3)


def test_void_labels_without_ignore_index_are_an_error():
    with pytest.raises(ValueError, match="ignore_index"):
        metrics.dice_per_class(PRED, TARGET, num_classes=4)


def test_confusion_matrix_rows_are_targets():
    cm = metrics.confusion_matrix(PRED, TARGET, num_classes=3, ignore_index=255)
    expected = np.zeros((3, 3), int)
    for p, t in [(0, 0), (0, 1), (1, 1), (1, 1), (2, 2)]:
        expected[t, p] += 1
    np.testing.assert_array_equal(cm, expected)


def _brute_boundary(mask: np.ndarray) -> list[tuple[int, int]]:
    """Mask pixels with a 4-neighbour outside the mask or outside the image."""
    h, w = mask.shape
    points = []
    for i, j in itertools.product(range(h), range(w)):
        if not mask[i, j]:
            continue
        for di, dj in ((1, 0), (-1, 0), (0, 1), (0, -1)):
            y, x = i + di, j + dj
            if not (0 <= y < h and 0 <= x < w) or not mask[y, x]:
                points.append((i, j))
                break
    return points


def _brute_assd(a: np.ndarray, b: np.ndarray, spacing=(1.0, 1.0)) -> float:
    pa, pb = _brute_boundary(a), _brute_boundary(b)

    def dist(p, q):
        return math.hypot((p[0] - q[0]) * spacing[0], (p[1] - q[1]) * spacing[1])

    total = sum(min(dist(p, q) for q in pb) for p in pa) + sum(min(dist(q, p) for p in pa) for q in pb)
    return total / (len(pa) + len(pb))


def test_assd_of_two_points_by_hand():
    a, b = np.zeros((6, 6), bool), np.zeros((6, 6), bool)
    a[0, 0], b[3, 4] = True, True
    assert metrics.assd(a, b) == pytest.approx(5.0)  # 3-4-5 triangle, both directions
    assert metrics.assd(a, b, spacing=(2.0, 1.0)) == pytest.approx(math.sqrt(6 ** 2 + 4 ** 2))


@pytest.mark.parametrize("seed", range(4))
def test_assd_equals_brute_force_on_random_masks(seed):
    rng = np.random.default_rng(seed)
    a = rng.random((12, 15)) < 0.4
    b = np.zeros((12, 15), bool)
    b[2:9, 3:12] = True  # a block, so one mask has interior pixels that are not boundary
    b[5, 7] = False  # and a hole, whose rim is boundary too
    spacing = (1.0, 1.0) if seed % 2 else (0.5, 1.5)
    assert metrics.assd(a, b, spacing) == pytest.approx(_brute_assd(a, b, spacing), rel=1e-12)


@pytest.mark.parametrize("seed", range(3))
def test_assd_equals_brute_force_on_random_blobs_of_any_shape(seed):
    # Smooth blobs (thresholded smoothed noise) with holes and several parts, on non-square frames.
    rng = np.random.default_rng(10 + seed)
    h, w = rng.integers(9, 31, 2)
    noise = rng.random((2, h + 4, w + 4))
    smooth = sum(noise[:, i:i + h, j:j + w] for i in range(5) for j in range(5))
    a, b = smooth[0] > np.median(smooth[0]), smooth[1] > np.quantile(smooth[1], 0.7)
    spacing = tuple(rng.uniform(0.3, 3.0, 2))
    assert metrics.assd(a, b, spacing) == pytest.approx(_brute_assd(a, b, spacing), rel=1e-12)


def test_assd_without_scipy_names_the_extra(monkeypatch):
    import sys

    monkeypatch.setitem(sys.modules, "scipy.ndimage", None)  # as if SciPy were not installed
    a = np.zeros((4, 4), bool)
    a[1, 1] = True
    with pytest.raises(ImportError, match=r"surgenet\[train\]"):
        metrics.assd(a, a)


def test_assd_of_identical_masks_is_zero_and_empty_masks_are_flagged():
    mask = np.zeros((8, 8), bool)
    mask[2:6, 1:7] = True
    assert metrics.assd(mask, mask) == 0.0
    empty = np.zeros_like(mask)
    assert math.isnan(metrics.assd(empty, empty))
    assert metrics.assd(mask, empty) == math.inf


def test_assd_per_class_leaves_ignored_pixels_out():
    target = np.zeros((8, 8), int)
    target[2:5, 2:5] = 1
    target[:, 7] = 255  # void column
    pred = np.zeros((8, 8), int)
    pred[2:5, 3:6] = 1  # shifted one column right
    pred[:, 7] = 1  # predicted class 1 on the void column: must not count
    per_class = metrics.assd_per_class(pred, target, num_classes=2, ignore_index=255)
    valid = target != 255
    assert per_class[1] == pytest.approx(_brute_assd((pred == 1) & valid, (target == 1) & valid))
    assert per_class[0] == pytest.approx(_brute_assd((pred == 0) & valid, (target == 0) & valid))


# ----------------------------------------------------------------------------- phase
def test_phase_metrics_by_hand():
    pred = [0, 0, 1, 1, 2, 2]
    target = [0, 0, 0, 1, 1, 2]
    # tp = (2, 1, 1), fp = (0, 1, 1), fn = (1, 1, 0); phase 3 occurs nowhere.
    m = metrics.phase_metrics(pred, target, num_classes=4)
    assert m["accuracy"] == pytest.approx(4 / 6)
    np.testing.assert_allclose(m["precision"][:3], [1.0, 1 / 2, 1 / 2])
    np.testing.assert_allclose(m["recall"][:3], [2 / 3, 1 / 2, 1.0])
    np.testing.assert_allclose(m["f1"][:3], [4 / 5, 2 / 4, 2 / 3])
    np.testing.assert_allclose(m["jaccard"][:3], [2 / 3, 1 / 3, 1 / 2])
    assert all(math.isnan(m[k][3]) for k in ("precision", "recall", "f1", "jaccard"))
    assert m["macro_f1"] == pytest.approx((4 / 5 + 1 / 2 + 2 / 3) / 3)
    assert m["macro_jaccard"] == pytest.approx((2 / 3 + 1 / 3 + 1 / 2) / 3)
    assert m["macro_precision"] == pytest.approx((1 + 1 / 2 + 1 / 2) / 3)
    assert m["macro_recall"] == pytest.approx((2 / 3 + 1 / 2 + 1) / 3)


def test_phase_metrics_skip_ignored_frames():
    m = metrics.phase_metrics([0, 1, 1, 0], [0, 1, -1, -1], num_classes=2, ignore_index=-1)
    assert m["accuracy"] == 1.0
    assert m["macro_f1"] == 1.0


# ----------------------------------------------------------------------------- CVS
def test_balanced_accuracy_by_hand():
    scores = np.array([[0.9, 0.1], [0.4, 0.2], [0.6, 0.8], [0.2, 0.7], [0.7, 0.3]])
    targets = np.array([[1, 0], [1, 0], [0, 1], [0, 1], [1, 1]])
    # criterion 0: predicted (1, 0, 1, 0, 1); TPR = 2/3 (rows 0, 4 of 0, 1, 4), TNR = 1/2 (row 3 of 2, 3)
    # criterion 1: predicted (0, 0, 1, 1, 0); TPR = 2/3 (rows 2, 3 of 2, 3, 4), TNR = 1
    np.testing.assert_allclose(metrics.balanced_accuracy(scores, targets), [(2 / 3 + 1 / 2) / 2, (2 / 3 + 1) / 2])
    # at threshold 0.15 criterion 1 predicts rows 1-4 positive: TPR 1, TNR 1/2
    assert metrics.balanced_accuracy(scores, targets, threshold=0.15)[1] == pytest.approx(0.75)


def test_average_precision_by_hand():
    # Ranked targets 1 0 1 0 1: precision at each positive 1/1, 2/3, 3/5.
    ap = metrics.average_precision(np.array([0.9, 0.8, 0.7, 0.6, 0.5]), np.array([1, 0, 1, 0, 1]))
    assert ap[0] == pytest.approx((1 + 2 / 3 + 3 / 5) / 3)
    # Tied scores form one threshold: at 0.9 P=1 R=1/2; at 0.5 (two frames, one positive) P=2/3 R=1.
    ap = metrics.average_precision(np.array([0.9, 0.5, 0.5, 0.1]), np.array([1, 0, 1, 0]))
    assert ap[0] == pytest.approx(0.5 * 1 + 0.5 * 2 / 3)
    # The order in which tied frames are listed does not matter.
    ap_swapped = metrics.average_precision(np.array([0.9, 0.5, 0.5, 0.1]), np.array([1, 1, 0, 0]))
    assert ap_swapped[0] == pytest.approx(ap[0])


def test_cvs_metrics_mean_over_criteria_with_positives():
    scores = np.array([[0.9, 0.2, 0.3], [0.1, 0.8, 0.4], [0.8, 0.6, 0.1]])
    targets = np.array([[1, 0, 0], [0, 1, 0], [1, 0, 0]])
    m = metrics.cvs_metrics(scores, targets)
    # criterion 0 ranks both positives first (AP 1); criterion 1: ranked targets 1 0 0 (AP 1);
    # criterion 2 has no positive: NaN, left out of the mAP.
    np.testing.assert_allclose(m["ap"][:2], [1.0, 1.0])
    assert math.isnan(m["ap"][2])
    assert m["mAP"] == pytest.approx(1.0)
    # balanced accuracy: c0 perfect (1); c1 predicted (0, 1, 1): TPR 1, TNR 1/2; c2 only negatives, all
    # predicted negative: TNR 1 is the one defined rate.
    np.testing.assert_allclose(m["balanced_accuracy"], [1.0, 0.75, 1.0])
    assert m["mean_balanced_accuracy"] == pytest.approx((1 + 0.75 + 1) / 3)
