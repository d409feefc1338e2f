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
    assert nearest_measured(5) == 6 and nearest_measured(7) == 8 and nearest_measured(12) == 8
