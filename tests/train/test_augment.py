"""The pretraining augmentations switched on: each operation does what its parameters say, and the
multi-crop pipeline applies them at DINO's rates, reproducibly for a given seed.

Rates are counted over a few hundred seeded views (so the counts are fixed numbers, not flaky) and
checked against DINO's probabilities with a margin of about three binomial standard deviations.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from surgenet.train.multicrop import MultiCrop, color_jitter

MEAN, STD = np.array([0.485, 0.456, 0.406]) * 255, np.array([0.229, 0.224, 0.225]) * 255
N = 300  # views per rate


def _pixels(view: torch.Tensor) -> np.ndarray:
    """A normalised view back to 0..255 values, HWC."""
    return view.numpy().transpose(1, 2, 0).astype(np.float64) * STD + MEAN


def _views(image: Image.Image, index: int, crops: MultiCrop, n: int = N) -> list[np.ndarray]:
    """View ``index`` of ``crops`` for seeds 0..n-1."""
    return [_pixels(crops(image, np.random.default_rng([7, seed]))[index]) for seed in range(n)]


def _colourful(size: int = 32) -> Image.Image:
    rng = np.random.default_rng(0)
    rgb = np.stack([np.full((size, size), 200.0), np.full((size, size), 90.0), np.full((size, size), 40.0)], -1)
    return Image.fromarray((rgb + rng.normal(0, 10, rgb.shape)).clip(0, 255).astype(np.uint8))


CROPS = MultiCrop(16, 8, local_crops=2)


def test_jitter_scales_brightness_by_at_most_its_factor():
    image = Image.new("RGB", (16, 16), (100, 120, 140))
    ratios = []
    for seed in range(40):
        out = np.asarray(color_jitter(image, np.random.default_rng(seed), 0.4, 0.0, 0.0, 0.0), dtype=np.float64)
        ratios.append(out.mean((0, 1)) / np.array([100, 120, 140]))
    ratios = np.array(ratios)
    # Brightness multiplies every channel by one factor drawn from [0.6, 1.4] (up to 8-bit rounding).
    assert np.all(np.abs(ratios - ratios.mean(1, keepdims=True)) < 0.03)
    assert ratios.min() > 0.58 and ratios.max() < 1.42
    assert ratios.min() < 0.75 and ratios.max() > 1.25  # the range is used, not a constant


def test_jitter_contrast_keeps_the_grey_level_and_scales_the_spread():
    rng = np.random.default_rng(1)
    rgb = (128 + rng.normal(0, 20, (16, 16, 3))).clip(0, 255).astype(np.uint8)
    image = Image.fromarray(rgb)
    spreads = []
    for seed in range(40):
        out = np.asarray(color_jitter(image, np.random.default_rng(seed), 0.0, 0.4, 0.0, 0.0), dtype=np.float64)
        assert abs(out.mean() - rgb.mean()) < 3
        spreads.append(out.std() / rgb.std())
    assert min(spreads) > 0.55 and max(spreads) < 1.45 and min(spreads) < 0.75 and max(spreads) > 1.25


def test_jitter_saturation_and_hue_change_the_colour_not_the_grey_level():
    red = Image.new("RGB", (8, 8), (200, 30, 30))

    def jittered(seed: int, saturation: float, hue: float) -> np.ndarray:
        out = color_jitter(red, np.random.default_rng(seed), 0.0, 0.0, saturation, hue)
        return np.asarray(out, dtype=np.float64).mean((0, 1))

    # Saturation 1 draws factors from [0, 2]: some views come close to grey (channels alike).
    spreads = [np.ptp(jittered(s, 1.0, 0.0)) for s in range(40)]
    assert min(spreads) < 40 < 170 == np.ptp([200, 30, 30])
    # Hue 0.5 shifts by up to half the colour circle: some views turn green or blue.
    assert {int(jittered(s, 0.0, 0.5).argmax()) for s in range(40)} > {0}


def test_grey_views_at_dinos_rate():
    views = _views(_colourful(), 0, CROPS)
    grey = [np.ptp(v.mean((0, 1))) < 1.0 for v in views]  # equal channels
    assert 0.2 - 0.07 < np.mean(grey) < 0.2 + 0.07


def test_colour_jitter_at_dinos_rate_and_within_its_range():
    # A flat mid-grey frame: crops, flips, blur and grey conversion leave it as it is; only the
    # brightness jitter (p 0.8, factor 0.6 to 1.4) moves its level. The first global view is never solarised.
    views = _views(Image.new("RGB", (32, 32), (128, 128, 128)), 0, CROPS)
    levels = np.array([v.mean() for v in views]) / 128
    moved = np.abs(levels - 1) > 0.01
    assert 0.8 - 0.07 < moved.mean() < 0.8 + 0.07
    assert levels.min() > 0.58 and levels.max() < 1.42


def test_solarisation_only_on_the_second_global_view_at_dinos_rate():
    # A white frame stays at or above 153 (brightness 0.6 x 255) unless solarised, which maps v to 255 - v.
    white = Image.new("RGB", (32, 32), (255, 255, 255))
    rates = [np.mean([v.mean() < 128 for v in _views(white, index, CROPS, 200)]) for index in range(4)]
    assert rates[0] == 0 and rates[2] == 0 and rates[3] == 0  # first global and local views: never
    assert 0.2 - 0.085 < rates[1] < 0.2 + 0.085


def _roughness(v: np.ndarray) -> float:
    """Mean neighbour difference over the spread: blur lowers it, brightness and contrast do not."""
    return float(np.abs(np.diff(v, axis=1)).mean() / (v.std() + 1e-6))


def test_first_global_view_is_always_blurred_the_second_rarely():
    rng = np.random.default_rng(3)
    noise = Image.fromarray(rng.integers(0, 256, (64, 64, 3), dtype=np.uint8))
    crops = MultiCrop(32, 16, global_scale=(0.9, 1.0), local_crops=0)
    first = np.mean([_roughness(v) for v in _views(noise, 0, crops, 100)])
    second = np.mean([_roughness(v) for v in _views(noise, 1, crops, 100)])
    assert first < 0.75 * second  # blur p 1.0 against 0.1


def test_augmented_views_are_deterministic_per_seed():
    image = _colourful()
    a = CROPS(image, np.random.default_rng([1, 2]))
    b = CROPS(image, np.random.default_rng([1, 2]))
    c = CROPS(image, np.random.default_rng([1, 3]))
    assert all(torch.equal(x, y) for x, y in zip(a, b))
    assert not all(torch.equal(x, y) for x, y in zip(a, c))


@pytest.mark.parametrize("index, size", [(0, 16), (1, 16), (2, 8), (3, 8)])
def test_view_sizes(index, size):
    assert tuple(CROPS(_colourful(), np.random.default_rng(0))[index].shape) == (3, size, size)
