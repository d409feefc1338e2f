"""benchmarks/keyframes.py's pure helpers against hand-computed values."""

from __future__ import annotations

import numpy as np
import pytest
from tests.helpers.scripts import load_script

keyframes = load_script("benchmarks/keyframes.py")
nearest_measured, sequence_miou, settled_interval = (keyframes.nearest_measured, keyframes.sequence_miou,
                                                     keyframes.settled_interval)


def test_sequence_miou_against_hand_computed_value():
    ref = [np.array([[0, 0], [1, 1]]), np.array([[0, 0], [0, 0]])]
    masks = [np.array([[0, 1], [1, 1]]),  # class 0: 1/2, class 1: 2/3, class 2 in neither -> (1/2 + 2/3) / 2
             np.array([[0, 0], [0, 2]])]  # class 0: 3/4, class 2: 0/1 -> 3/8
    expected = ((1 / 2 + 2 / 3) / 2 + 3 / 8) / 2
    assert sequence_miou(masks, ref, num_classes=3) == pytest.approx(expected)
    assert sequence_miou(ref, ref, num_classes=3) == 1.0


def test_sequence_miou_rejects_unequal_sequences():
    with pytest.raises(ValueError):
        sequence_miou([np.zeros((2, 2), int)], [], num_classes=2)


def test_settled_and_nearest_interval():
    assert settled_interval([2, 5, 5, 3, 3]) == 5  # tie between 3 and 5: the larger
    assert settled_interval([]) == 1
    assert keyframes.INTERVALS == tuple(range(1, 9))  # every interval up to the adaptive bound is measured
    assert nearest_measured(5) == 5 and nearest_measured(12) == 8 and nearest_measured(0) == 1


class _Stub:
    """What keyframe_masks reads of a Predictor: its config (input size) and model (unused by flow)."""

    config = {"input_size": [3, 32, 32]}
    model = None


@pytest.mark.parametrize("mode", keyframes.MODES)
def test_the_offline_replay_masks_every_frame_and_is_exact_where_nothing_moves(mode):
    """A still textured frame and one set of logits for every frame: whatever the interval and the
    mode, every frame's mask must be the reference; at interval 1 every frame is a keyframe."""
    import torch

    rng = np.random.default_rng(0)
    image = np.ascontiguousarray(np.repeat(np.repeat((rng.random((12, 16, 3)) * 255).astype(np.uint8), 4, 0), 4, 1))
    blocks = rng.normal(size=(3, 3, 4)).astype(np.float32) * 4  # regions of 16x16 pixels, as masks have
    logits = torch.from_numpy(np.ascontiguousarray(np.repeat(np.repeat(blocks, 16, 1), 16, 2)))
    reference = logits.argmax(0).numpy().astype(np.uint8)
    images, logit_list, refs = [image] * 9, [logits] * 9, [reference] * 9
    for k in (1, 3, 4):
        masks, count, cuts = keyframes.keyframe_masks(_Stub(), images, logit_list, refs, k, None,
                                                      lookahead=mode == "lookahead")
        assert count == -(-9 // k) and cuts == 0 and len(masks) == 9
        agree = [float((m == reference).mean()) for m in masks]
        assert min(agree) > 0.9, (k, agree)  # region borders move by the work size's rounding
        assert sequence_miou(masks[::k], refs[::k], 3) == 1.0  # keyframes: the reference itself
