"""Preprocessing: image kinds accepted, errors that say the fix, normalisation computed independently."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch
from PIL import Image

import surgenet
from surgenet.exceptions import InputError
from surgenet.zoo.registry import get_entry

NAME = "surgenet-caformer"


def _frame(h: int = 24, w: int = 40, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)


def _expected(rgb: np.ndarray, mean, std) -> np.ndarray:
    """(x / 255 - mean) / std per channel, CHW, computed in float64 numpy."""
    x = rgb.astype(np.float64) / 255.0
    return ((x - np.asarray(mean)) / np.asarray(std)).transpose(2, 0, 1)


def test_normalisation_matches_the_formula_at_the_frame_size():
    entry = get_entry(NAME)
    rgb = _frame()
    transform = surgenet.create_transform(NAME, size=rgb.shape[:2])  # no resize: values only
    out = transform(rgb)
    assert out.dtype == torch.float32 and tuple(out.shape) == (3, 24, 40)
    np.testing.assert_allclose(out.numpy(), _expected(rgb, entry.mean, entry.std), atol=1e-5)


def _unnormalise(out: torch.Tensor, mean, std) -> np.ndarray:
    """Back to 0..255 values, HWC, float64."""
    x = out.numpy().astype(np.float64).transpose(1, 2, 0)
    return (x * np.asarray(std) + np.asarray(mean)) * 255.0


def test_default_size_is_the_models_input_size():
    entry = get_entry(NAME)
    out = surgenet.create_transform(NAME)(_frame(50, 70))
    assert tuple(out.shape) == tuple(entry.input_size)


@pytest.mark.parametrize("src, dst", [(120, 40), (20, 50)], ids=["down x3", "up x2.5"])
def test_resizing_a_linear_ramp_gives_the_ramp_at_the_output_pixel_centres(src, dst):
    # A linear filter that sums to one leaves a linear image linear: output pixel i (centre i + 0.5
    # in output units) takes the input's value at x = (i + 0.5) * src / dst - 0.5 (pixel centres,
    # align_corners=False). Away from the borders, where the filter is cut, that holds exactly.
    ramp = 2.0 * np.arange(src)  # 0, 2, 4, ... exact in uint8
    rgb = np.zeros((src, src, 3), np.uint8)
    rgb[..., 0] = ramp[None, :]  # red grows along x
    rgb[..., 1] = ramp[:, None]  # green along y
    rgb[..., 2] = 100
    entry = get_entry(NAME)
    out = _unnormalise(surgenet.create_transform(NAME, size=dst)(rgb), entry.mean, entry.std)
    centres = 2.0 * ((np.arange(dst) + 0.5) * src / dst - 0.5)
    inner = slice(2, dst - 2)
    np.testing.assert_allclose(out[5, inner, 0], centres[inner], atol=1e-3)
    np.testing.assert_allclose(out[inner, 5, 1], centres[inner], atol=1e-3)
    np.testing.assert_allclose(out[..., 2], 100.0, atol=1e-3)


@pytest.mark.parametrize("hw", [(24, 40), (100, 90)], ids=["down", "up"])
def test_resizing_matches_pils_bilinear_filter(hw):
    # PIL's BILINEAR is a triangle filter widened by the scale when shrinking (antialiased), the
    # filter the transform documents; PIL rounds to uint8, so agreement is to half a level.
    rgb = _frame(60, 80, seed=6)
    entry = get_entry(NAME)
    out = _unnormalise(surgenet.create_transform(NAME, size=hw)(rgb), entry.mean, entry.std)
    expected = np.asarray(Image.fromarray(rgb).resize(hw[::-1], Image.Resampling.BILINEAR), dtype=np.float64)
    assert np.abs(out - expected).max() <= 1.0
    assert np.abs(out - expected).mean() < 0.35  # rounding alone averages 0.25; bicubic differs by up to 40


@pytest.mark.parametrize("size, hw", [(32, (32, 32)), ((20, 30), (20, 30))])
def test_size_argument(size, hw):
    assert tuple(surgenet.create_transform(NAME, size=size)(_frame()).shape) == (3, *hw)


def test_surgical_normalisation_uses_the_authors_statistics():
    entry = get_entry(NAME)
    mean, std = entry.alt_normalization["surgical"]
    assert tuple(mean) != tuple(entry.mean)  # otherwise this test could not tell them apart
    rgb = _frame(seed=1)
    out = surgenet.create_transform(NAME, normalization="surgical", size=rgb.shape[:2])(rgb)
    np.testing.assert_allclose(out.numpy(), _expected(rgb, mean, std), atol=1e-5)


def test_unknown_normalisation_lists_the_valid_ones():
    with pytest.raises(InputError, match="surgical"):
        surgenet.create_transform(NAME, normalization="imagenet21k")


def test_pil_images_grayscale_and_rgba_are_converted_without_warnings():
    rgb = _frame(seed=2)
    gray = rgb[..., 0].copy()
    transform = surgenet.create_transform(NAME, size=rgb.shape[:2])
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # e.g. torch's "NumPy array is not writable" on PIL buffers
        from_rgb = transform(Image.fromarray(rgb))
        from_rgba = transform(Image.fromarray(np.dstack([rgb, np.full(rgb.shape[:2], 7, np.uint8)])))
        from_gray = transform(Image.fromarray(gray))
    expected = _expected(rgb, get_entry(NAME).mean, get_entry(NAME).std)
    np.testing.assert_allclose(from_rgb.numpy(), expected, atol=1e-5)
    np.testing.assert_allclose(from_rgba.numpy(), expected, atol=1e-5)  # alpha dropped
    np.testing.assert_allclose(from_gray.numpy(), _expected(np.dstack([gray] * 3), get_entry(NAME).mean,
                                                             get_entry(NAME).std), atol=1e-5)


def test_palette_png_file_is_read_as_rgb(tmp_path):
    rgb = np.zeros((10, 12, 3), np.uint8)
    rgb[:, :6] = (255, 0, 0)
    rgb[:, 6:] = (0, 0, 255)
    path = tmp_path / "palette.png"
    Image.fromarray(rgb).convert("P", palette=Image.Palette.ADAPTIVE, colors=4).save(path)
    out = surgenet.create_transform(NAME, size=(10, 12))(path)
    entry = get_entry(NAME)
    np.testing.assert_allclose(out.numpy(), _expected(rgb, entry.mean, entry.std), atol=1e-5)


@pytest.mark.parametrize("make", [lambda g: g, lambda g: g[..., None]], ids=["HW", "HW1"])
def test_numpy_grayscale_is_repeated_to_three_channels(make):
    gray = _frame(seed=3)[..., 1].copy()
    entry = get_entry(NAME)
    out = surgenet.create_transform(NAME, size=gray.shape)(make(gray))
    np.testing.assert_allclose(out.numpy(), _expected(np.dstack([gray] * 3), entry.mean, entry.std), atol=1e-5)


def test_numpy_views_that_are_not_contiguous_work():
    rgb = _frame(40, 60, seed=4)
    view = rgb[::2, ::2]  # strided view, not C-contiguous
    entry = get_entry(NAME)
    out = surgenet.create_transform(NAME, size=view.shape[:2])(view)
    np.testing.assert_allclose(out.numpy(), _expected(np.ascontiguousarray(view), entry.mean, entry.std),
                               atol=1e-5)
    # the caller's array is never written to
    assert np.array_equal(rgb, _frame(40, 60, seed=4))


def test_float_arrays_are_refused_with_the_conversion_to_use():
    with pytest.raises(InputError, match=r"astype\(np.uint8\)"):
        surgenet.create_transform(NAME)(np.random.rand(16, 16, 3).astype(np.float32))


def test_channels_first_arrays_are_refused_with_the_transpose_to_use():
    with pytest.raises(InputError, match=r"transpose\(1, 2, 0\)"):
        surgenet.create_transform(NAME)(np.zeros((3, 16, 16), np.uint8))


@pytest.mark.parametrize("bad", [np.zeros((16, 16, 2), np.uint8), np.zeros((2, 16, 16, 3), np.uint8)])
def test_other_shapes_are_refused(bad):
    with pytest.raises(InputError, match=r"\(H, W, 3\)"):
        surgenet.create_transform(NAME)(bad)


def test_tensors_and_16_bit_images_are_refused_with_a_hint():
    transform = surgenet.create_transform(NAME)
    with pytest.raises(InputError, match="model\\(x\\)"):
        transform(torch.zeros(3, 16, 16))
    with pytest.raises(InputError, match="8-bit"):
        transform(Image.fromarray(np.zeros((8, 8), np.uint16)))
    with pytest.raises(InputError, match="does not exist"):
        transform("/nonexistent/frame.png")


def test_16_bit_image_file_is_refused_as_such_not_as_a_broken_file(tmp_path):
    path = tmp_path / "depth.png"
    Image.fromarray(np.full((8, 8), 1000, np.uint16)).save(path)
    with pytest.raises(InputError, match="8-bit") as info:
        surgenet.create_transform(NAME)(path)
    assert "complete PNG" not in str(info.value)


def test_batch_stacks_frames():
    transform = surgenet.create_transform(NAME, size=16)
    assert tuple(transform.batch([_frame(), _frame(30, 20)]).shape) == (2, 3, 16, 16)


def test_config_dict_as_exported_runners_carry():
    config = {"mean": [0.5, 0.5, 0.5], "std": [0.25, 0.25, 0.25], "input_size": [3, 8, 12]}
    rgb = _frame(8, 12, seed=5)
    out = surgenet.create_transform(config)(rgb)
    np.testing.assert_allclose(out.numpy(), _expected(rgb, [0.5] * 3, [0.25] * 3), atol=1e-5)
    with pytest.raises(InputError, match="std"):
        surgenet.create_transform({"mean": [0.5] * 3, "input_size": [3, 8, 8]})
    with pytest.raises(InputError, match="create_transform takes"):
        surgenet.create_transform(3.5)
