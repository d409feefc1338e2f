"""DIS flow propagation without the forward-backward check (real-time keyframes): one flow per
step, the forward one only when pull_back asks, and masks that follow motion as the checked ones do."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("cv2")

from surgenet.video.flow import DISFlowPropagator  # noqa: E402
from surgenet.video.propagate import labels_of  # noqa: E402

H, W, SIZE, SPEED = 48, 80, 12, 3


PATTERN = 150 + (np.random.default_rng(4).random((SIZE // 2, SIZE // 2)) * 100).astype(np.uint8)
PATTERN = np.repeat(np.repeat(PATTERN, 2, 0), 2, 1)  # the square carries its own texture as it moves


def _frame(i, background):
    img = np.stack([background] * 3, -1).copy()
    img[18:18 + SIZE, 10 + SPEED * i:10 + SPEED * i + SIZE] = PATTERN[..., None]
    return np.ascontiguousarray(img)


def _truth(i):
    m = np.zeros((H, W), np.uint8)
    m[18:18 + SIZE, 10 + SPEED * i:10 + SPEED * i + SIZE] = 1
    return m


@pytest.fixture()
def background():
    rng = np.random.default_rng(3)
    return np.repeat(np.repeat((rng.random((H // 4, W // 4)) * 60).astype(np.uint8), 4, 0), 4, 1)


class CountingDIS:
    """Wraps OpenCV's DIS object and counts its flow computations."""

    def __init__(self, dis):
        self.dis, self.calls = dis, 0

    def calc(self, *args):
        self.calls += 1
        return self.dis.calc(*args)


def test_without_the_check_one_flow_a_step_and_the_forward_one_only_on_demand(background):
    propagator = DISFlowPropagator(scale=1.0, consistency=False)
    propagator._dis = counter = CountingDIS(propagator._dis)
    propagator.start(_frame(0, background), np.eye(2, dtype=np.float32)[_truth(0)])
    step = propagator.step(_frame(1, background))
    assert counter.calls == 1
    step.pull_back(step.probs)
    assert counter.calls == 2

    checked = DISFlowPropagator(scale=1.0)
    checked._dis = counter = CountingDIS(checked._dis)
    checked.start(_frame(0, background), np.eye(2, dtype=np.float32)[_truth(0)])
    checked.step(_frame(1, background))
    assert counter.calls == 2  # forward and backward for the check


def test_both_follow_the_moving_square(background):
    """The square moves its own width in 4 frames, so a mask left in place scores IoU 0; carried
    along the flow it lands on the true square with either variant, and skipping the check costs
    no accuracy here (the fill of "occluded" pixels is what erodes the checked mask)."""
    def iou(a, b):
        return np.logical_and(a == 1, b == 1).sum() / np.logical_or(a == 1, b == 1).sum()

    masks, scores = {}, {}
    assert iou(_truth(0), _truth(4)) == 0
    for consistency in (True, False):
        propagator = DISFlowPropagator(scale=1.0, consistency=consistency)
        propagator.start(_frame(0, background), np.eye(2, dtype=np.float32)[_truth(0)])
        for i in range(1, 5):
            step = propagator.step(_frame(i, background))
        masks[consistency] = labels_of(step.probs)
        scores[consistency] = iou(masks[consistency], _truth(4))
        assert scores[consistency] > 0.6, (consistency, scores)
        if not consistency:  # the confidence is the share pulled from inside the frame
            assert 0.9 < step.score <= 1.0
    assert scores[False] >= scores[True] - 0.05, scores
