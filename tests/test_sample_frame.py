"""The shipped sample frame is what tests/helpers/sample_frame.py generates, and looks as it says."""

from __future__ import annotations


import numpy as np
import pytest
from PIL import Image
from tests.helpers.paths import REPO

ROOT = REPO
SHIPPED = ROOT / "surgenet" / "assets" / "sample_frame.png"


@pytest.fixture(scope="module")
def generator():
    from tests.helpers import sample_frame

    return sample_frame


@pytest.fixture(scope="module")
def shipped() -> np.ndarray:
    return np.asarray(Image.open(SHIPPED))


def test_sample_frame_is_shipped_and_reproducible(generator, shipped):
    assert shipped.shape == (360, 640, 3) and shipped.dtype == np.uint8
    np.testing.assert_array_equal(generator.make_frame(), shipped)  # the asset comes from its script
    assert not np.array_equal(generator.make_frame(seed=1), shipped)  # and the seed decides the scene


def test_sample_frame_has_the_scene_its_script_describes(shipped):
    rgb = shipped.astype(np.float64)
    yy, xx = np.mgrid[:360, :640]
    r = np.hypot((yy - 180) / 180, (xx - 320) / 180)  # radius in half frame heights
    # A circular field of view: black corners (sensor noise only), a lit centre.
    assert rgb[r > 1.95].mean() < 3 and rgb[r < 0.5].mean() > 80
    # Tissue is red: in the lit centre, away from the instrument, red dominates green and blue.
    centre = rgb[(r < 0.8) & (xx < 300)]
    assert centre[:, 0].mean() > 1.5 * centre[:, 1].mean() and centre[:, 0].mean() > 1.5 * centre[:, 2].mean()
    # The instrument shaft enters from the lower right: grey metal (channels within 15 % of each other).
    tip, direction = np.array([200.0, 330.0]), np.array([0.62, 0.785])
    along = (yy - tip[0]) * direction[0] + (xx - tip[1]) * direction[1]
    across = -(yy - tip[0]) * direction[1] + (xx - tip[1]) * direction[0]
    shaft = rgb[(along > 20) & (along < 100) & (np.abs(across) < 15)]
    assert shaft.mean() > 60
    assert np.all(np.abs(shaft.mean(0) / shaft.mean() - 1) < 0.15)
    assert shipped.std() > 20  # a textured scene, not a flat image
