"""DAVIS measures (J, F, recall, decay, J&F) against values worked out by hand."""

from __future__ import annotations

import numpy as np
import pytest

from surgenet.evaluation.metrics import boundary_map, davis_f, davis_j, davis_scores, davis_statistics


def _box(shape, rows, cols) -> np.ndarray:
    mask = np.zeros(shape, bool)
    mask[rows, cols] = True
    return mask


def test_j_is_the_iou_outside_void_pixels():
    pred = _box((4, 4), slice(0, 2), slice(0, 2))
    target = _box((4, 4), slice(0, 2), slice(1, 3))
    assert davis_j(pred, target) == pytest.approx(2 / 6)  # 2 shared of 6 pixels in either
    void = _box((4, 4), slice(None), slice(2, 3))  # hides the 2 target-only pixels
    assert davis_j(pred, target, void) == pytest.approx(2 / 4)
    assert davis_j(np.zeros((4, 4)), np.zeros((4, 4))) == 1.0  # nothing to find, nothing found


def test_boundary_map_sits_half_a_pixel_towards_the_origin():
    square = _box((10, 10), slice(2, 5), slice(2, 5))
    expected = np.zeros((10, 10), bool)
    expected[1, 1:5] = expected[4, 1:5] = True  # rows 1 and 4, columns 1..4
    expected[1:5, 1] = expected[1:5, 4] = True  # columns 1 and 4, rows 1..4
    np.testing.assert_array_equal(boundary_map(square), expected)


def test_f_matches_boundaries_within_the_davis_tolerance():
    # 10x10: the diagonal is 14.1 px, 0.008 of it rounds up to a 1-pixel disk (the pixel and its 4 neighbours).
    pred = _box((10, 10), slice(2, 5), slice(2, 5))
    target = _box((10, 10), slice(2, 5), slice(5, 8))  # 3 columns to the right
    # Each 12-pixel boundary ring has 6 pixels within 1 px (4-neighbourhood) of the other ring:
    # precision 6/12, recall 6/12, F 0.5.
    assert davis_f(pred, target) == pytest.approx(0.5)
    assert davis_f(pred, pred) == 1.0
    assert davis_f(np.zeros((10, 10)), target) == 0.0  # precision 1, recall 0
    assert davis_f(np.zeros((10, 10)), np.zeros((10, 10))) == 1.0
    # bound_th >= 1 is a radius in pixels: 3 px reaches every pixel of the other ring here
    assert davis_f(pred, target, bound_th=3) == 1.0


def test_f_tolerance_scales_with_the_image_diagonal():
    # 480x854: ceil(0.008 * 979.6) = 8 px. Full-height bands have only vertical boundaries: the band
    # over columns 400..599 has them at columns 399 and 599; shifted by 8 px they all match, by 9 none.
    target = _box((480, 854), slice(None), slice(400, 600))
    near = _box((480, 854), slice(None), slice(408, 608))
    far = _box((480, 854), slice(None), slice(409, 609))
    assert davis_f(near, target) == 1.0
    assert davis_f(far, target) == 0.0


def test_statistics_mean_recall_and_decay():
    stats = davis_statistics([1.0, 0.8, 0.6, 0.4, 0.2])
    assert stats["mean"] == pytest.approx(0.6)
    assert stats["recall"] == pytest.approx(3 / 5)  # frames above 0.5
    # bins of 5 frames: [0, 1], [1, 2], [2, 3], [3, 4] (shared edges): 0.9 - 0.3
    assert stats["decay"] == pytest.approx(0.6)


def test_scores_skip_the_first_and_last_frame_and_average_objects():
    target = np.zeros((3, 4, 4), np.uint8)
    target[:, 0:2, 0:2] = 1
    target[:, 2:4, 2:4] = 2
    pred = target.copy()
    pred[1, 2:4, 2:4] = 0  # object 2 missed in the middle frame: J 0 there, F 0
    pred[0] = 0  # the first and last frames do not count
    pred[2] = 0
    result = davis_scores(list(pred), list(target))
    assert result["per_object"][1]["J"]["mean"] == 1.0
    assert result["per_object"][2]["J"]["mean"] == 0.0
    assert result["J_mean"] == pytest.approx(0.5)
    assert result["JF_mean"] == pytest.approx(0.5)
